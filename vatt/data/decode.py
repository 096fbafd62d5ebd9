"""Media decoding with PyAV (bundled FFmpeg): video frames at a target fps and mono audio.

Used by the dataset builders at build time only (never inside the tf.data pipeline). Every
failure is turned into a `DecodeError` carrying a short machine-readable `reason`, so that a
builder can skip the file, count it and list it in its build summary instead of dying.

What real collections contain, and how it is read:
- Any container FFmpeg can demux, whatever the file is called: FFmpeg probes the content, the
  extension is only a hint (an MPEG-TS named .mp4 is read as MPEG-TS).
- Time 0 is the start of the file as a player shows it (FFmpeg's container start time): MPEG-PS
  (.mpg) and MPEG-TS files carry timestamps that begin at 0.5-1.4 s, which would otherwise shift
  every clip window and the frames against the captions.
- The main video and audio streams are FFmpeg's own choice (`av_find_best_stream`) among streams
  that are not cover art (an mp3/m4a's attached picture is not a video) and have a decoder;
  subtitle, data and attachment streams are ignored.
- Frames are sampled by timestamp: target time start + k/fps shows the latest source frame not
  after it, so variable frame rates and 120/240 fps sources give frames at exactly `fps`.
- Audio of any sample format (u8, s16, float, planar...), codec, rate and channel count becomes
  float32 mono at the requested rate: resampled by FFmpeg, then the mean over channels (the
  librosa/torchaudio convention; for stereo it equals `ffmpeg -ac 1`). A digitally silent track
  is a real track (`audio_status` "ok", all zeros); a file without one is `absent`.
- A packet that fails to decode costs its frames, not the file; reading stops at the first
  demuxing error (a truncated download keeps what came before it).
- Non-square pixels (anamorphic MPEG-2/DV) are resized to their display aspect ratio.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Iterator

import av
import numpy as np

# Reasons reported in build summaries (stable strings: tests and users grep for them).
MISSING = "missing_file"
EMPTY = "empty_file"
UNREADABLE = "unreadable_file"  # the operating system refused to read it (permissions, I/O)
CORRUPT = "corrupt_file"  # FFmpeg cannot read it as media: damaged, truncated or not media at all
NO_VIDEO = "no_video_stream"  # no video stream (cover art does not count as one)
NO_AUDIO_STREAM = "no_audio_stream"  # audio-only decode of a file without an audio stream
UNSUPPORTED_CODEC = "unsupported_codec"  # the stream's codec has no decoder in this FFmpeg build
NO_FRAMES = "no_decodable_frames"

# Clip.audio_status values.
AUDIO_OK = "ok"
AUDIO_ABSENT = "absent"  # the file has no audio stream
AUDIO_EMPTY = "empty"  # an audio stream whose packets gave no samples (none, or all broken)
AUDIO_UNSUPPORTED = "unsupported"  # an audio stream whose codec has no decoder here

_EPS = 1e-6
_ATTACHED_PIC = av.stream.Disposition.attached_pic


class DecodeError(Exception):
    """A media file could not be decoded; `reason` is one of the module constants."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class Clip:
    """A decoded clip.

    frames: uint8 [T, H, W, 3] sampled at `fps` from `start` (None when video was not requested).
    audio: float32 [S] mono waveform at `sample_rate`, aligned with the first frame time `start`;
      zeros when the file has no usable audio track (`has_audio` False) and zero-padded to the
      window; `audio_padded` when more than one video frame's worth of it was missing.
    duration: length of the media file in seconds (best effort from the container).
    audio_status: one of AUDIO_OK / AUDIO_ABSENT / AUDIO_EMPTY / AUDIO_UNSUPPORTED (why
      `has_audio` is False); AUDIO_ABSENT as well when audio was not requested.
    """

    frames: np.ndarray | None
    audio: np.ndarray | None
    has_audio: bool
    duration: float
    audio_padded: bool = False
    audio_status: str = AUDIO_OK


@dataclasses.dataclass
class _Layout:
    """What one look at the file's header says: time origin, length and the chosen streams."""

    zero: float  # container start time (seconds): time 0 of every window
    duration: float
    video: int | None  # index of the main video stream
    video_problem: tuple[str, str]  # (reason, detail) when `video` is None
    video_rate: float  # average frame rate (0 when unknown)
    pixel_aspect: float
    audio: int | None  # index of the main audio stream
    audio_status: str  # AUDIO_OK when `audio` is set, else AUDIO_ABSENT / AUDIO_UNSUPPORTED


def _open(path: str) -> av.container.InputContainer:
    """The opened file, or DecodeError: missing, empty, unreadable, or not media FFmpeg reads."""
    if not os.path.exists(path):
        raise DecodeError(MISSING, path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DecodeError(UNREADABLE, f"{path}: {e}") from None
    if size == 0:
        raise DecodeError(EMPTY, path)
    try:
        return av.open(path, mode="r")
    except PermissionError as e:  # av.error.PermissionError is one too
        raise DecodeError(UNREADABLE, f"{path}: {e}") from None
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise DecodeError(CORRUPT, f"{path}: {e}") from None


def probe_duration(path: str) -> float:
    """Duration in seconds of a media file (raises DecodeError when unreadable)."""
    with _open(path) as c:
        return _duration(c)


def _duration(c) -> float:
    """Seconds: the container's duration, else the longest stream's (0 when unknown)."""
    if c.duration is not None and c.duration > 0:
        return c.duration / av.time_base
    best = 0.0
    for s in c.streams:
        if s.duration is not None and s.time_base is not None:
            best = max(best, float(s.duration * s.time_base))
    return best


def _main_stream(c, kind: str) -> tuple[int | None, str]:
    """(index of the main `kind` stream, AUDIO_OK), or (None, AUDIO_ABSENT) when there is none
    (cover art does not count), or (None, AUDIO_UNSUPPORTED) when none has a decoder here (the
    statuses of `Clip.audio_status`, used for video streams too)."""
    streams = [s for s in getattr(c.streams, kind) if not s.disposition & _ATTACHED_PIC]
    usable = [s.index for s in streams if s.codec_context is not None]  # None: no decoder
    if not usable:
        return None, AUDIO_UNSUPPORTED if streams else AUDIO_ABSENT
    try:
        best = c.streams.best(kind)  # FFmpeg's choice: default disposition, most frames, ...
    except (av.error.FFmpegError, ValueError):
        best = None
    return (best.index if best is not None and best.index in usable else usable[0]), AUDIO_OK


def _video_problem(c, status: str) -> tuple[str, str]:
    """(reason, detail) of a file without a usable video stream."""
    if status == AUDIO_UNSUPPORTED:
        return UNSUPPORTED_CODEC, "no decoder for the video stream in this FFmpeg build"
    covers = any(s.disposition & _ATTACHED_PIC for s in c.streams.video)
    return NO_VIDEO, "only cover art (an attached picture)" if covers else ""


def _layout(path: str) -> _Layout:
    """Time origin, duration and main streams of `path` (raises DecodeError when unreadable)."""
    with _open(path) as c:
        video, v_status = _main_stream(c, "video")
        audio, a_status = _main_stream(c, "audio")
        rate, aspect = 0.0, 1.0
        if video is not None:
            vs = c.streams[video]
            rate = float(vs.average_rate or vs.guessed_rate or 0)
            aspect = _pixel_aspect(vs)
        return _Layout(
            zero=c.start_time / av.time_base if c.start_time is not None else 0.0,
            duration=_duration(c), video=video,
            video_problem=_video_problem(c, v_status) if video is None else ("", ""),
            video_rate=rate, pixel_aspect=aspect, audio=audio, audio_status=a_status)


def _even(x: float) -> int:
    """Nearest even size, at least 2."""
    return max(2, int(round(x / 2.0)) * 2)


def output_size(width: int, height: int, short_side: int, pixel_aspect: float = 1.0) -> tuple[int, int]:
    """(width, height) of the displayed picture (storage width x `pixel_aspect`) resized so the
    shorter side is `short_side` (<= 0 keeps the displayed size)."""
    width = width * pixel_aspect
    if short_side <= 0:
        return _even(width), _even(height)
    scale = short_side / min(width, height)
    return _even(width * scale), _even(height * scale)


def _pixel_aspect(stream) -> float:
    """Sample aspect ratio of a video stream (1 when unset or implausible)."""
    for sar in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if sar is not None and sar.denominator and 0.25 <= float(sar) <= 4.0:
            return float(sar)
    return 1.0


def _decoded(c, stream, bad: list[int]) -> Iterator:
    """Frames of `stream` in presentation order. A packet that fails to decode is skipped and
    counted in bad[0] (a damaged region costs its frames, not the file); a demuxing error ends
    the stream (a truncated file keeps what came before the cut)."""
    try:
        for packet in c.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                bad[0] += 1
                continue
            yield from frames
    except (av.error.FFmpegError, OSError):
        return


def _timed_frames(path: str, index: int, zero: float, start: float, step: float,
                  bad: list[int]) -> Iterator[tuple[float, object]]:
    """(time from `zero`, frame) of stream `index` from about `start` on.

    Seeks to the key frame before `start`. When the seek gives nothing usable (MPEG-TS, MPEG-PS
    and mp3 seek by byte estimate and may land after `start`, or past the end; frames without
    timestamps cannot be placed after a seek), the stream is read again from its beginning.
    Frames without a timestamp are placed `step` seconds after the previous one.
    """
    for seek in ((True, False) if start > 0 else (False,)):
        with _open(path) as c:
            stream = c.streams[index]
            stream.thread_type = "AUTO"
            if seek and stream.time_base is not None:
                try:
                    c.seek(int((zero + start) / stream.time_base), stream=stream, backward=True)
                except av.error.FFmpegError:
                    continue
            t_prev = None
            for frame in _decoded(c, stream, bad):
                if frame.time is not None:
                    t = frame.time - zero
                elif seek and t_prev is None:
                    break  # untimed frames can only be placed by counting from the beginning
                else:
                    t = 0.0 if t_prev is None else t_prev + step
                if seek and t_prev is None and t > start + _EPS:
                    break  # the seek landed after `start`
                t_prev = t
                yield t, frame
            if t_prev is not None or not seek:
                return


def _decode_frames(path: str, lay: _Layout, start: float, end: float, fps: float,
                   short_side: int) -> np.ndarray:
    """Frames at times start + k/fps (k >= 0, < end), each the latest source frame not after it
    (the first frame for targets before it); the last frame lasts one source-frame duration."""
    if lay.video is None:
        raise DecodeError(*lay.video_problem)
    rate = lay.video_rate or fps
    n_target = max(1, int(math.floor((end - start) * fps + _EPS)))
    out: list[np.ndarray] = []
    prev = None  # [time, frame, rgb array or None] of the last source frame
    size = None
    bad = [0]

    def rgb(p) -> np.ndarray:
        if p[2] is None:  # convert each source frame once, however often it is repeated
            p[2] = p[1].to_ndarray(format="rgb24", width=size[0], height=size[1])
        return p[2]

    for t, frame in _timed_frames(path, lay.video, lay.zero, start, 1.0 / rate, bad):
        if size is None:
            size = output_size(frame.width, frame.height, short_side, lay.pixel_aspect)
        # The previous frame is shown for every target time in [its time, t).
        while prev is not None and len(out) < n_target and start + len(out) / fps < t - _EPS:
            out.append(rgb(prev))
        if len(out) >= n_target:
            break
        prev = [t, frame, None]
    if prev is not None and len(out) < n_target:
        last_end = min(end, prev[0] + 1.0 / max(rate, 1e-3))
        while len(out) < n_target and start + len(out) / fps < last_end - _EPS:
            out.append(rgb(prev))
        if not out:
            out.append(rgb(prev))
    if not out:
        raise DecodeError(NO_FRAMES, f"{bad[0]} packets failed to decode" if bad[0] else "")
    return np.stack(out)


class _MonoWaveform:
    """Collects decoded audio frames as float32 mono at `rate`: FFmpeg resamples each frame (any
    sample format, channel layout and rate, which may change mid-stream) to planar float at
    `rate`, then the channels are averaged."""

    def __init__(self, rate: int):
        self.rate = rate
        self.chunks: list[np.ndarray] = []
        self.samples = 0
        self._resampler = None
        self._key = None

    def _take(self, frames) -> None:
        for f in frames:
            x = f.to_ndarray().reshape(f.layout.nb_channels, -1).mean(axis=0, dtype=np.float32)
            self.chunks.append(x)
            self.samples += x.size

    def _flush(self) -> None:
        if self._resampler is not None:
            self._take(self._resampler.resample(None))

    def add(self, frame) -> None:
        key = (frame.format.name, frame.layout.name, frame.layout.nb_channels, frame.sample_rate)
        if key != self._key:
            self._flush()
            self._resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=self.rate)
            self._key = key
        self._take(self._resampler.resample(frame))

    def finish(self) -> np.ndarray:
        self._flush()
        return np.concatenate(self.chunks).astype(np.float32) if self.chunks else np.zeros([0], np.float32)


def _decode_audio(path: str, lay: _Layout, start: float, end: float | None,
                  sample_rate: int) -> tuple[np.ndarray, bool]:
    """(mono float32 waveform of [start, end) (end=None: to the end of the stream), not padded;
    whether the stream gave any samples at all: a track that ends before `start` did)."""
    mono = _MonoWaveform(sample_rate)
    t_first = None
    bad = [0]
    try:
        for t, frame in _timed_frames(path, lay.audio, lay.zero, start, 0.0, bad):
            if t_first is None:
                t_first = t
            mono.add(frame)
            if end is not None and t_first + mono.samples / sample_rate > end + 0.1:
                break
    except (av.error.FFmpegError, ValueError):
        pass  # a frame the resampler refuses: keep what came before it, the caller pads
    wave = mono.finish()
    decoded = wave.size > 0
    # Sample i of `wave` is at time t_first + i / sample_rate.
    offset = int(round((start - (t_first or 0.0)) * sample_rate))
    if offset > 0:
        wave = wave[offset:]
    elif offset < 0 and wave.size:
        wave = np.concatenate([np.zeros([-offset], np.float32), wave])
    if end is not None:
        wave = wave[: int(round((end - start) * sample_rate))]
    return wave, decoded


def decode_clip(
    path: str,
    *,
    start: float = 0.0,
    end: float | None = None,
    fps: float = 10.0,
    short_side: int = 256,
    sample_rate: int = 48000,
    video: bool = True,
    audio: bool = True,
) -> Clip:
    """Decode [start, end) seconds of `path` (end=None: to the end of the file).

    Returns frames uint8 [T, H, W, 3] with T = floor((end - start) * fps) (fewer when the file is
    shorter) resized to `short_side`, and audio float32 [S] with S = (end - start) * sample_rate
    (zero-padded when the track is shorter or absent; see `Clip.audio_padded` / `has_audio` /
    `audio_status`). Raises DecodeError: missing, empty, unreadable or corrupt file; no video
    stream or an unsupported video codec (when video is requested); no usable audio when only
    audio is requested; nothing decodable.
    """
    lay = _layout(path)
    if end is None:
        end = lay.duration if lay.duration > 0 else 1e9
    bounded = end < 1e8
    frames = _decode_frames(path, lay, start, end, fps, short_side) if video else None
    if not audio:
        return Clip(frames=frames, audio=None, has_audio=False, duration=lay.duration,
                    audio_status=AUDIO_ABSENT)
    wave = np.zeros([0], np.float32)
    status = lay.audio_status
    if lay.audio is not None:
        wave, decoded = _decode_audio(path, lay, start, end if bounded else None, sample_rate)
        status = AUDIO_OK if decoded else AUDIO_EMPTY
    if not video and status != AUDIO_OK:
        raise DecodeError(NO_AUDIO_STREAM if status == AUDIO_ABSENT else
                          UNSUPPORTED_CODEC if status == AUDIO_UNSUPPORTED else NO_FRAMES,
                          f"{path}: audio {status}")
    if frames is not None:
        # Keep audio exactly as long as the frames cover, so the two stay synchronised.
        want = int(round(frames.shape[0] / fps * sample_rate))
    else:
        want = int(round((end - start) * sample_rate)) if bounded else wave.size
    # Less than one video frame of audio missing at the end is A/V rounding (an encoder's last
    # frame, a track ending with the last picture), not a shorter track: padded, not reported.
    slack = int(sample_rate / fps) if frames is not None else 0
    padded = status == AUDIO_OK and want - wave.size > slack
    wave = np.concatenate([wave, np.zeros([max(0, want - wave.size)], np.float32)])[:want]
    return Clip(frames=frames, audio=wave, has_audio=status == AUDIO_OK, duration=lay.duration,
                audio_padded=padded, audio_status=status)


def encode_jpeg(frames: np.ndarray, quality: int = 90) -> list[bytes]:
    """JPEG-encode uint8 frames [T, H, W, 3] (as DMVR stores them) -> list of T byte strings."""
    from PIL import Image  # Pillow is a TF / matplotlib dependency; imported lazily.

    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out
