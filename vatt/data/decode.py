"""Media decoding with PyAV (bundled FFmpeg): video frames at a target fps and mono audio.

Used by the dataset builders at build time only (never inside the tf.data pipeline). Every
failure is turned into a `DecodeError` carrying a short machine-readable `reason`, so that a
builder can skip the file, count it and list it in its build summary instead of dying.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os

import av
import numpy as np

# Reasons reported in build summaries (stable strings: tests and users grep for them).
MISSING = "missing_file"
EMPTY = "empty_file"
CORRUPT = "corrupt_file"
NO_VIDEO = "no_video_stream"
NO_FRAMES = "no_decodable_frames"


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
      zeros when the file has no audio track (`has_audio` False) and zero-padded to the window.
    duration: length of the media file in seconds (best effort from the container).
    """

    frames: np.ndarray | None
    audio: np.ndarray | None
    has_audio: bool
    duration: float
    audio_padded: bool = False


def _open(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise DecodeError(MISSING, path)
    if os.path.getsize(path) == 0:
        raise DecodeError(EMPTY, path)
    try:
        return av.open(path, mode="r")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise DecodeError(CORRUPT, f"{path}: {e}") from None


def probe_duration(path: str) -> float:
    """Duration in seconds of a media file (raises DecodeError when unreadable)."""
    with _open(path) as c:
        return _duration(c)


def _duration(c) -> float:
    if c.duration is not None and c.duration > 0:
        return c.duration / av.time_base
    best = 0.0
    for s in c.streams:
        if s.duration is not None and s.time_base is not None:
            best = max(best, float(s.duration * s.time_base))
    return best


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) resized so the shorter side is `short_side` (<= 0 keeps the size)."""
    if short_side <= 0:
        return _even(width), _even(height)
    scale = short_side / min(width, height)
    return _even(width * scale), _even(height * scale)


def _decode_frames(c, start: float, end: float, fps: float, short_side: int) -> np.ndarray:
    """Frames at times start + k/fps (k >= 0, < end), each the latest source frame not after it."""
    if not c.streams.video:
        raise DecodeError(NO_VIDEO)
    stream = c.streams.video[0]
    stream.thread_type = "AUTO"
    if start > 0 and stream.time_base is not None:
        try:
            c.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            c.seek(0)
    n_target = max(1, int(math.floor((end - start) * fps + 1e-6)))
    out: list[np.ndarray] = []
    prev = None  # (time, ndarray) of the last decoded frame
    size = None
    try:
        for frame in c.decode(stream):
            t = frame.time if frame.time is not None else 0.0
            if size is None:
                size = output_size(frame.width, frame.height, short_side)
            if t <= start + 1e-6:
                prev = (t, frame)
                continue
            # The previous frame is shown for every target time in [prev.time, t).
            while prev is not None and len(out) < n_target and start + len(out) / fps < t - 1e-6:
                out.append(prev[1].to_ndarray(format="rgb24", width=size[0], height=size[1]))
            prev = (t, frame)
            if len(out) >= n_target:
                break
    except (av.error.FFmpegError, ValueError) as e:
        # Truncated files: keep what decoded so far; fail only if nothing did.
        if prev is None and not out:
            raise DecodeError(CORRUPT, str(e)) from None
    if prev is not None and len(out) < n_target:
        # Last frame: shown until one source-frame duration after its time, or until `end`.
        rate = float(stream.average_rate) if stream.average_rate else fps
        last_end = min(end, prev[0] + 1.0 / max(rate, 1e-3))
        while len(out) < n_target and start + len(out) / fps < last_end - 1e-6:
            out.append(prev[1].to_ndarray(format="rgb24", width=size[0], height=size[1]))
        if not out:
            out.append(prev[1].to_ndarray(format="rgb24", width=size[0], height=size[1]))
    if not out:
        raise DecodeError(NO_FRAMES)
    return np.stack(out)


def _decode_audio(c, start: float, end: float | None, sample_rate: int) -> np.ndarray | None:
    """Mono float32 waveform for [start, end) or None when there is no audio stream."""
    if not c.streams.audio:
        return None
    stream = c.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    if start > 0:
        try:
            c.seek(int(start / stream.time_base), stream=stream, backward=True)
        except av.error.FFmpegError:
            c.seek(0)
    chunks: list[np.ndarray] = []
    t0 = None
    try:
        for frame in c.decode(stream):
            if t0 is None:
                t0 = frame.time if frame.time is not None else 0.0
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
            if end is not None and t0 + sum(len(x) for x in chunks) / sample_rate > end + 0.1:
                break
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, ValueError):
        pass  # Truncated audio: keep what decoded; the caller pads.
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros([0], np.float32)
    offset = int(round(((start - (t0 or 0.0))) * sample_rate))
    if offset > 0:
        wave = wave[offset:]
    elif offset < 0:
        wave = np.concatenate([np.zeros([-offset], np.float32), wave])
    if end is not None:
        wave = wave[: int(round((end - start) * sample_rate))]
    return wave


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
    (zero-padded when the track is shorter or absent; see `Clip.audio_padded` / `has_audio`).
    Raises DecodeError (missing, empty, corrupt, no video stream, nothing decodable).
    """
    with _open(path) as c:
        duration = _duration(c)
        if end is None:
            end = duration if duration > 0 else 1e9
        frames = None
        if video:
            try:
                frames = _decode_frames(c, start, end, fps, short_side)
            except av.error.FFmpegError as e:
                raise DecodeError(CORRUPT, str(e)) from None
    wave = None
    has_audio = False
    padded = False
    if audio:
        with _open(path) as c:
            try:
                wave = _decode_audio(c, start, end if end < 1e8 else None, sample_rate)
            except av.error.FFmpegError:
                wave = None
        has_audio = wave is not None and wave.size > 0
        want = int(round((end - start) * sample_rate)) if end < 1e8 else (0 if wave is None else wave.size)
        if frames is not None:
            # Keep audio exactly as long as the frames cover, so the two stay synchronised.
            want = int(round(frames.shape[0] / fps * sample_rate))
        if wave is None:
            wave = np.zeros([want], np.float32)
        if wave.size < want:
            padded = True
            wave = np.concatenate([wave, np.zeros([want - wave.size], np.float32)])
        else:
            wave = wave[:want] if want > 0 else wave
    return Clip(frames=frames, audio=wave, has_audio=has_audio, duration=duration, audio_padded=padded)


def encode_jpeg(frames: np.ndarray, quality: int = 90) -> list[bytes]:
    """JPEG-encode uint8 frames [T, H, W, 3] (as DMVR stores them) -> list of T byte strings."""
    from PIL import Image  # Pillow is a TF / matplotlib dependency; imported lazily.

    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out
