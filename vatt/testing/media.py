"""Writers of tiny but real datasets in the on-disk layouts of DESIGN.md section 5.

Videos are real encoded files written with PyAV (mpeg4/h264 + aac in mp4, mjpeg/mpeg4 in avi, and
through `write_video`'s options whatever real collections hold: MPEG-PS/TS, Matroska, subtitle /
data / attachment streams, cover art, PCM u8, MP2, MP3, Vorbis, 5.1, high and variable frame
rates; `write_howto100m_collection` lays them out), WAVs are written with the stdlib `wave`
module, metadata is real JSON/CSV. Each `write_*`
function returns a dict describing what it wrote (good files, deliberately bad files), so tests,
notebooks and end-to-end runs can check a build against it. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import wave
from collections.abc import Callable, Sequence
from fractions import Fraction

import av
import numpy as np


# ----------------------------------------------------------------------------- media writers
def _grey(k: int) -> int:
    """Default grey level of frame k (for sync checks)."""
    return (20 + 10 * k) % 256


def _add_video_stream(c, codec: str, fps: float, width: int, height: int, vfr: bool,
                      pixel_aspect: Fraction | None):
    vs = c.add_stream(codec, rate=fps)
    vs.width, vs.height = width, height
    vs.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    if vfr:  # millisecond timestamps, so frames can sit anywhere in time
        vs.codec_context.time_base = Fraction(1, 1000)
    if pixel_aspect is not None:
        vs.codec_context.sample_aspect_ratio = pixel_aspect
    return vs


def _add_audio_stream(c, codec: str, sample_rate: int, layout: str):
    options = {"strict": "experimental"} if codec == "vorbis" else {}  # FFmpeg's own vorbis encoder
    a_s = c.add_stream(codec, rate=sample_rate, options=options)
    a_s.layout = layout
    return a_s


def _cover_art_packets(c) -> list:
    """Adds an attached-picture stream holding one picture; returns its packets (to be muxed
    once every stream is added: the first packet muxed writes the header)."""
    try:
        cs = c.add_stream("mjpeg")
        cs.pix_fmt = "yuvj420p"
    except ValueError:  # the mp4 family stores cover art as PNG
        cs = c.add_stream("png")
        cs.pix_fmt = "rgb24"
    cs.width = cs.height = 16
    cs.disposition = av.stream.Disposition.attached_pic
    img = av.VideoFrame.from_ndarray(np.full([16, 16, 3], 200, np.uint8), format="rgb24")
    img.pts, img.time_base = 0, Fraction(1, 25)
    return [*cs.encode(img), *cs.encode()]


def colour_at(t: float, segment: float = 0.5) -> int:
    """Grey level that changes every `segment` seconds (frame_values=[colour_at(t) ...]): a
    decoded frame at time t must show it, whatever the source frame rate or timestamps."""
    return int(30 + 40 * math.floor(t / segment + 1e-9)) % 256


def rename_codec(path: str, old: bytes, new: bytes) -> None:
    """Replace a codec name in a file's header by another of the same length (a Matroska CodecID
    such as b"A_VORBIS" -> b"A_XXXXXX"): a stream of a codec this FFmpeg has no decoder for."""
    with open(path, "rb") as f:
        data = f.read()
    assert len(old) == len(new) and data.count(old) == 1, (old, new)
    with open(path, "wb") as f:
        f.write(data.replace(old, new))


def encoder_available(name: str) -> bool:
    """Whether the bundled FFmpeg has encoder `name` (libmp3lame is an optional library)."""
    try:
        av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def _tone(seconds: float, sample_rate: int, gains: Sequence[float], freq: float, silent: bool) -> np.ndarray:
    """[channels, samples] float32: channel c is gains[c] * sin(2 pi freq t) (zeros if silent)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    sig = np.zeros_like(t) if silent else np.sin(2 * np.pi * freq * t)
    return np.stack([g * sig for g in gains]).astype(np.float32)


def _mux_picture(c, vs, picture: Callable[[int], np.ndarray], k: int, pts: tuple[int, Fraction]) -> None:
    """Encode and mux frame k (pixels from `picture`) at `pts` = (timestamp, time base)."""
    frame = av.VideoFrame.from_ndarray(picture(k), format="rgb24")
    frame.pts, frame.time_base = pts
    for p in vs.encode(frame):
        c.mux(p)


def _mux_samples(c, a_s, part: np.ndarray, i: int, layout: str) -> None:
    """Encode and mux planar float samples [channels, n] that start at sample i."""
    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="fltp", layout=layout)
    af.sample_rate = a_s.codec_context.sample_rate
    af.pts, af.time_base = i, Fraction(1, af.sample_rate)
    for p in a_s.encode(af):
        c.mux(p)


def _packet(stream, payload: bytes, t: float, duration: float = 0.0) -> av.Packet:
    """A ready-made packet (subtitle / data streams have no encoder to make them)."""
    pkt = av.Packet(payload)
    pkt.stream = stream
    pkt.time_base = Fraction(1, 1000)
    pkt.pts = pkt.dts = int(round(t * 1000))
    pkt.duration = int(round(duration * 1000))
    return pkt


def write_video(
    path: str,
    *,
    seconds: float = 2.0,
    fps: int = 10,
    width: int = 64,
    height: int = 48,
    codec: str | None = "mpeg4",
    audio: bool = True,
    audio_codec: str = "aac",
    sample_rate: int = 16000,
    seed: int = 0,
    container: str | None = None,
    frame_times: Sequence[float] | None = None,
    frame_values: Sequence[int] | None = None,
    noise: bool = True,
    layout: str = "mono",
    channel_gains: Sequence[float] | None = None,
    tone_hz: float = 440.0,
    silent_audio: bool = False,
    audio_seconds: float | None = None,
    subtitles: Sequence[tuple[float, float, str]] = (),
    data_stream: bool = False,
    attachment: bool = False,
    pixel_aspect: Fraction | None = None,
    cover_art: bool = False,
) -> dict:
    """Write a real media file with PyAV's encoders and muxers; returns what it wrote.

    Video (`codec`, None for an audio-only file): frame k is shown at frame_times[k] (default
    k / fps; explicit times give variable frame rate) with grey level frame_values[k] (default
    (20 + 10 k) % 256), plus a random top-left patch when `noise`. Audio: `layout` channels,
    channel c a tone of `tone_hz` with amplitude channel_gains[c] (default 0.3), or zeros when
    `silent_audio`, lasting `audio_seconds` (default `seconds`). `container` names FFmpeg's muxer
    ("mpeg", "mpegts", "matroska", ...) whatever the extension says. Extra streams: ASS
    `subtitles` (start, end, text) and a font `attachment` (Matroska), a KLV `data_stream`
    (MPEG-TS), a `cover_art` picture (an attached picture, as mp3/m4a files carry: not a
    video). Packets are muxed in time order, as a real recorder writes them.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    rng = np.random.default_rng(seed)
    n = len(frame_times) if frame_times is not None else int(round(seconds * fps))
    times = list(frame_times) if frame_times is not None else [k / fps for k in range(n)]
    values = list(frame_values) if frame_values is not None else [_grey(k) for k in range(n)]
    gains = list(channel_gains) if channel_gains is not None else [0.3] * av.AudioLayout(layout).nb_channels
    with av.open(path, mode="w", format=container) as c:
        if attachment:
            c.add_attachment("font.ttf", "application/x-truetype-font", b"\x00\x01\x00\x00 not a real font")
        events: list[tuple[float, int, Callable[[], None]]] = []  # (time, order, mux it)
        streams = []
        if codec is not None:
            vs = _add_video_stream(c, codec, fps, width, height, frame_times is not None, pixel_aspect)
            pts = [(k, Fraction(1, fps)) for k in range(n)] if frame_times is None else \
                [(int(round(t * 1000)), Fraction(1, 1000)) for t in times]

            def picture(k: int) -> np.ndarray:
                img = np.full([height, width, 3], values[k], np.uint8)
                if noise:
                    img[: height // 4, : width // 4] = rng.integers(0, 255, [height // 4, width // 4, 3],
                                                                    dtype=np.uint8)
                return img

            events += [(times[k], 0, functools.partial(_mux_picture, c, vs, picture, k, pts[k]))
                       for k in range(n)]
            streams.append(vs)
        if audio:
            a_s = _add_audio_stream(c, audio_codec, sample_rate, layout)
            sig = _tone(seconds if audio_seconds is None else audio_seconds, sample_rate, gains, tone_hz,
                        silent_audio)
            events += [(i / sample_rate, 1, functools.partial(_mux_samples, c, a_s, sig[:, i: i + 1024], i,
                                                              layout)) for i in range(0, sig.shape[1], 1024)]
            streams.append(a_s)
        if cover_art:
            events += [(0.0, -1, functools.partial(c.mux, p)) for p in _cover_art_packets(c)]
        if subtitles:
            ss = c.add_stream("ass")
            for j, (s, e, text) in enumerate(subtitles):
                # Matroska's ASS packet: ReadOrder, Layer, Style, Name, margins, Effect, Text.
                line = f"{j},0,Default,,0,0,0,,{text}".encode()
                events.append((s, 2, functools.partial(c.mux, _packet(ss, line, s, e - s))))
        if data_stream:
            ds = c.add_data_stream("klv")
            for k in range(int(seconds * 10)):  # KLV-like payloads, 10 a second
                payload = b"\x06\x0e\x2b\x34" + bytes([k % 256])
                events.append((k / 10, 3, functools.partial(c.mux, _packet(ds, payload, k / 10))))
        for _, _, mux in sorted(events, key=lambda e: (e[0], e[1])):
            mux()
        for st in streams:  # flush the encoders
            for p in st.encode():
                c.mux(p)
    return {"frame_times": times, "frame_values": values, "channel_gains": gains}


def write_wav(path: str, *, seconds: float = 1.0, sample_rate: int = 16000, freq: float = 440.0,
              silent: bool = False) -> None:
    """16-bit mono PCM WAV written with the stdlib `wave` module."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sig = np.zeros_like(t) if silent else 0.5 * np.sin(2 * np.pi * freq * t)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((sig * 32767).astype("<i2").tobytes())


def write_garbage(path: str, n: int = 2000) -> None:
    """A file with a media extension but random bytes (corrupt)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes())


def write_empty(path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    open(path, "wb").close()


def truncate(path: str, keep: float = 0.3) -> None:
    """Cut a written file to a fraction of its bytes (a truncated download)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


# ----------------------------------------------------------------------------- dataset layouts
def write_howto100m(root: str, *, num_videos: int = 3, seconds: float = 6.0, bad: bool = True) -> dict:
    """`videos/<id>.mp4` + `caption.json` {id: {text, start, end}}.

    Good videos get 4 captions each (one empty) at 1.5 s intervals; bad entries: a corrupt file, a
    missing file, a video with no audio track, and a caption entry that is not a dict.
    """
    caps: dict = {}
    good = []
    for i in range(num_videos):
        vid = f"vid{i}"
        write_video(os.path.join(root, "videos", f"{vid}.mp4"), seconds=seconds, seed=i,
                    codec="h264" if i % 2 else "mpeg4")
        caps[vid] = {
            "text": [f"first step of video {i}", "add the Salt!", "", f"stir well {i}"],
            "start": [0.2, 1.7, 3.2, 4.7],
            "end": [1.5, 3.0, 4.5, 5.9],
        }
        good.append(vid)
    info = {"good": good, "bad": {}}
    if bad:
        write_garbage(os.path.join(root, "videos", "corrupt.mp4"))
        caps["corrupt"] = {"text": ["a"], "start": [0.0], "end": [1.0]}
        caps["missing"] = {"text": ["b"], "start": [0.0], "end": [1.0]}
        write_video(os.path.join(root, "videos", "silent.mp4"), seconds=3.0, audio=False)
        caps["silent"] = {"text": ["no audio here"], "start": [0.5], "end": [2.0]}
        caps["badrow"] = "not a dict"
        info["bad"] = {"corrupt": "corrupt_file", "missing": "missing_file", "badrow": "bad_row"}
        info["padded"] = ["silent"]
    with open(os.path.join(root, "caption.json"), "w", encoding="utf-8") as f:
        json.dump(caps, f)
    return info


AUDIOSET_MIDS = ["/m/09x0r", "/m/05zppz", "/m/02zsn", "/m/0ytgt"]


def write_audioset(root: str, *, seconds: float = 2.0, bad: bool = True) -> dict:
    """`{balanced_train,eval}_segments.csv` + `class_labels_indices.csv` + clips `<split>/<YTID>_<start>.mp4`."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "class_labels_indices.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for i, (mid, name) in enumerate(zip(AUDIOSET_MIDS, ["Speech", "Male speech", "Female speech", "Child speech"])):
            w.writerow([i, mid, name])
    rows = {
        "balanced_train": [("aaaaaaaaaaa", 30.0, [0, 1]), ("bbbbbbbbbbb", 10.0, [2]), ("ccccccccccc", 0.0, [3, 0])],
        "eval": [("ddddddddddd", 5.0, [1])],
    }
    info = {"splits": {}, "bad": {}}
    for split, items in rows.items():
        lines = ["# Segments csv created Sun Mar  5 10:54:31 2017",
                 "# num_ytids=%d, num_segs=%d, num_unique_labels=4, num_positive_labels=5" % (len(items), len(items)),
                 "# YTID, start_seconds, end_seconds, positive_labels"]
        for ytid, start, labels in items:
            mids = ",".join(AUDIOSET_MIDS[j] for j in labels)
            lines.append(f'{ytid}, {start:.3f}, {start + 10:.3f}, "{mids}"')
            write_video(os.path.join(root, split, f"{ytid}_{int(start)}.mp4"), seconds=seconds, seed=len(lines))
        info["splits"][split] = {ytid: labels for ytid, _, labels in items}
        if bad and split == "balanced_train":
            lines.append('eeeeeeeeeee, 1.000, 11.000, "/m/09x0r"')  # file never written: missing
            lines.append("this row does not parse")
            lines.append('fffffffffff, 2.000, 12.000, "/m/09x0r"')
            write_empty(os.path.join(root, split, "fffffffffff_2.mp4"))
            info["bad"] = {"eeeeeeeeeee": "missing_file", "row": "bad_row", "fffffffffff": "empty_file"}
        with open(os.path.join(root, f"{split}_segments.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return info


UCF_CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]


def write_ucf101(root: str, *, seconds: float = 1.5, bad: bool = True) -> dict:
    """`UCF-101/<Class>/v_<Class>_gXX_cYY.avi` + `ucfTrainTestlist/` with 3 splits.

    The lists spell `HandStandPushups` (as the real ones do), the folder `HandstandPushups`.
    Groups g01..g03; split s puts group s in test, the others in train.
    """
    names = ["ApplyEyeMakeup", "HandStandPushups", "YoYo"]
    lst = os.path.join(root, "ucfTrainTestlist")
    os.makedirs(lst, exist_ok=True)
    with open(os.path.join(lst, "classInd.txt"), "w") as f:
        f.write("".join(f"{i + 1} {n}\r\n" for i, n in enumerate(names)))
    files = []
    for ci, (folder, listed) in enumerate(zip(UCF_CLASSES, names)):
        for g in (1, 2, 3):
            fn = f"v_{listed}_g{g:02d}_c01.avi"
            codec = "mjpeg" if (ci + g) % 2 else "mpeg4"
            write_video(os.path.join(root, "UCF-101", folder, f"v_{folder}_g{g:02d}_c01.avi"),
                        seconds=seconds, codec=codec, audio=(ci == 0), audio_codec="pcm_s16le", seed=g)
            files.append((f"{listed}/{fn}", ci, g))
    bad_info = {}
    if bad:
        truncate(os.path.join(root, "UCF-101", "YoYo", "v_YoYo_g03_c01.avi"), keep=0.05)
        bad_info = {"YoYo/v_YoYo_g03_c01.avi": "corrupt_file"}
    for s in (1, 2, 3):
        with open(os.path.join(lst, f"trainlist0{s}.txt"), "w") as f:
            f.write("".join(f"{p} {c + 1}\r\n" for p, c, g in files if g != s))
        with open(os.path.join(lst, f"testlist0{s}.txt"), "w") as f:
            f.write("".join(f"{p}\r\n" for p, c, g in files if g == s))
    return {"files": files, "classes": names, "bad": bad_info}


def write_esc50(root: str, *, per_fold: int = 2, seconds: float = 1.0, sample_rate: int = 16000,
                bad: bool = True) -> dict:
    """`audio/{fold}-{clip}-{take}-{target}.wav` + `meta/esc50.csv` with 5 folds."""
    rows = []
    for fold in range(1, 6):
        for j in range(per_fold):
            target = (fold * 7 + j) % 50
            fn = f"{fold}-{100000 + fold * 10 + j}-A-{target}.wav"
            write_wav(os.path.join(root, "audio", fn), seconds=seconds, sample_rate=sample_rate,
                      freq=200.0 + 20 * target, silent=(fold == 5 and j == 0))
            rows.append([fn, fold, target, f"class{target}", "False", str(100000 + fold * 10 + j), "A"])
    info = {"rows": rows, "bad": {}}
    if bad:
        write_garbage(os.path.join(root, "audio", "1-999999-A-3.wav"))
        rows_bad = [["1-999999-A-3.wav", 1, 3, "class3", "False", "999999", "A"],
                    ["1-888888-A-4.wav", 1, 4, "class4", "False", "888888", "A"]]  # missing file
        info["bad"] = {"1-999999-A-3.wav": "corrupt_file", "1-888888-A-4.wav": "missing_file", "row": "bad_row"}
    else:
        rows_bad = []
    os.makedirs(os.path.join(root, "meta"), exist_ok=True)
    with open(os.path.join(root, "meta", "esc50.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows + rows_bad)
        if bad:
            f.write("2-1-A-x.wav,notanint,zz\n")
    return info


def write_msrvtt(root: str, *, num_videos: int = 6, test_ids: tuple = (1, 4), seconds: float = 1.5,
                 bad: bool = True) -> dict:
    """`videos/video{N}.mp4` + `MSRVTT_data.json` (20 captions per clip) + 1k-A test list CSV."""
    videos, sentences = [], []
    for i in range(num_videos):
        write_video(os.path.join(root, "videos", f"video{i}.mp4"), seconds=seconds, seed=i,
                    codec="h264" if i % 2 else "mpeg4")
        videos.append({"video_id": f"video{i}", "category": i % 3, "split": "train"})
        for k in range(20):
            sentences.append({"video_id": f"video{i}", "caption": f"a person does thing {k} in clip {i}",
                              "sen_id": i * 20 + k})
    info = {"train": [f"video{i}" for i in range(num_videos) if i not in test_ids],
            "test": [f"video{i}" for i in test_ids], "bad": {}}
    if bad:
        # A non-UTF-8 caption (as bytes decoded with surrogateescape it cannot be written as JSON),
        # so use an empty caption and a non-string caption, plus a video listed but corrupt.
        sentences.append({"video_id": "video0", "caption": ""})
        sentences.append({"video_id": "video0", "caption": 12345})
        videos.append({"video_id": f"video{num_videos}"})
        sentences.append({"video_id": f"video{num_videos}", "caption": "a clip whose file is corrupt"})
        write_garbage(os.path.join(root, "videos", f"video{num_videos}.mp4"))
        info["bad"] = {f"video{num_videos}": "corrupt_file"}
    with open(os.path.join(root, "MSRVTT_data.json"), "w", encoding="utf-8") as f:
        json.dump({"videos": videos, "sentences": sentences}, f)
    with open(os.path.join(root, "MSRVTT_JSFUSION_test.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        for i in test_ids:
            w.writerow([f"ret{i}", f"msr{i}", f"video{i}", f"the 1k-A caption of clip {i}"])
    return info


# ----------------------------------------------------------------------------- what collections hold
VFR_TIMES = (0.0, 0.05, 0.31, 0.33, 0.68, 0.9, 1.37, 1.41, 2.12, 2.57, 2.93)


def _collection_cases(seconds: float) -> dict[str, tuple[str, dict]]:
    """video id -> (file name, write_video arguments) of what real video collections contain."""
    mpeg = dict(fps=25, audio_codec="mp2", layout="stereo", channel_gains=[0.2, 0.4])
    cases = {
        "vcd": ("vcd.mpg", dict(container="mpeg", codec="mpeg1video", sample_rate=44100, **mpeg)),
        "dvd": ("dvd.mpeg", dict(container="vob", codec="mpeg2video", sample_rate=48000, **mpeg)),
        "ts_as_mp4": ("ts_as_mp4.mp4", dict(container="mpegts", codec="mpeg2video", sample_rate=48000,
                                            data_stream=True, **mpeg)),
        "mkv_as_mp4": ("mkv_as_mp4.mp4", dict(container="matroska", audio_codec="vorbis", layout="stereo",
                                              subtitles=[(0.5, 1.5, "a subtitle")], attachment=True)),
        "mp4_as_avi": ("mp4_as_avi.avi", dict(container="mp4", codec="h264")),
        "no_extension": ("no_extension", dict(container="matroska")),
        "u8_avi": ("u8_avi.avi", dict(codec="mjpeg", audio_codec="pcm_u8", sample_rate=8000)),
        # The AAC encoder low-passes the LFE channel (index 3): no 440 Hz tone there.
        "surround": ("surround.mp4", dict(codec="h264", layout="5.1", sample_rate=48000,
                                          channel_gains=[0.05, 0.1, 0.15, 0.0, 0.25, 0.3])),
        "hfr120": ("hfr120.mp4", dict(fps=120)),
        "vfr": ("vfr.mkv", dict(codec="h264", frame_times=VFR_TIMES)),
        "silent": ("silent.mp4", dict(silent_audio=True)),
        "no_audio": ("no_audio.mp4", dict(audio=False)),
        "short": ("short.mp4", dict(seconds=seconds / 2)),
        "short_audio": ("short_audio.mp4", dict(audio_seconds=seconds / 3)),
        "empty_audio": ("empty_audio.mkv", dict(container="matroska", audio_seconds=0.0)),
        "audio_codec_unknown": ("audio_codec_unknown.mkv", dict(audio_codec="vorbis", layout="stereo")),
        "video_codec_unknown": ("video_codec_unknown.mkv", dict()),
        "cover_only": ("cover_only.m4a", dict(container="mp4", codec=None, cover_art=True)),
        "with_thumbnail": ("with_thumbnail.webm", dict(container="matroska")),
    }
    if encoder_available("libmp3lame"):
        cases["mp3_mkv"] = ("mp3_mkv.mkv", dict(audio_codec="libmp3lame"))
    return cases


def write_howto100m_collection(root: str, *, seconds: float = 3.0) -> dict:
    """A HowTo100M layout (`videos/` + `caption.json`, one caption centred at seconds/2 per
    video) of what real collections hold: MPEG-1/2 program streams (.mpg/.mpeg), MPEG-TS and
    Matroska named .mp4, an mp4 named .avi, a file without extension, subtitle / data /
    attachment streams, 8-bit PCM, MP2, MP3, Vorbis, 5.1 audio, 120 fps, variable frame rate,
    silent, missing and empty audio tracks, short clips and short audio, codecs FFmpeg cannot decode,
    cover art without video, a thumbnail next to a video, a thumbnail alone, a text file.

    Frames show `colour_at(t)`; audio tracks are 440 Hz tones of mean channel amplitude "gain".
    Returns {"written": {id: {"gain", "has_audio"}}, "kept": {id: reason}, "skipped": {id: reason},
    "unavailable": [encoders missing from this FFmpeg]}.
    """
    videos = os.path.join(root, "videos")
    info: dict = {"written": {}, "kept": {}, "skipped": {}, "unavailable": []}
    if not encoder_available("libmp3lame"):
        info["unavailable"].append("libmp3lame")
    caps = {}
    for vid, (fn, kw) in _collection_cases(seconds).items():
        kw = {"seconds": seconds, "width": 32, "height": 32, "noise": False, **kw}
        n = len(kw["frame_times"]) if "frame_times" in kw else int(round(kw["seconds"] * kw.get("fps", 10)))
        times = kw.get("frame_times") or [k / kw.get("fps", 10) for k in range(n)]
        wrote = write_video(os.path.join(videos, fn), frame_values=[colour_at(t) for t in times], **kw)
        caps[vid] = {"text": [f"how to do {vid.replace('_', ' ')}"], "start": [seconds / 2 - 0.5],
                     "end": [seconds / 2 + 0.5]}
        gain = 0.0 if kw.get("silent_audio") else float(np.mean(wrote["channel_gains"]))
        info["written"][vid] = {"gain": gain, "has_audio": kw.get("audio", True)}
    rename_codec(os.path.join(videos, "audio_codec_unknown.mkv"), b"A_VORBIS", b"A_XXXXXX")
    rename_codec(os.path.join(videos, "video_codec_unknown.mkv"), b"V_MPEG4/ISO/ASP", b"V_XXXXX/ISO/ASP")
    # Next to a video, youtube-dl leaves its thumbnail and subtitles: never taken for the video.
    for extra in ("with_thumbnail.jpg", "with_thumbnail.en.vtt", "thumbnail_only.jpg"):
        with open(os.path.join(videos, extra), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 not really a jpeg" if extra.endswith(".jpg") else b"WEBVTT\n")
    with open(os.path.join(videos, "not_media.dat"), "w") as f:
        f.write("this is a text file, not a video\n" * 20)
    for vid in ("thumbnail_only", "not_media"):
        caps[vid] = {"text": ["x"], "start": [0.0], "end": [1.0]}
    info["kept"] = {"no_audio": "no_audio_track_zero_filled", "short": "shorter_than_clip_kept",
                    "short_audio": "audio_shorter_zero_padded", "empty_audio": "audio_track_empty_zero_filled",
                    "audio_codec_unknown": "audio_codec_unsupported_zero_filled"}
    info["skipped"] = {"video_codec_unknown": "unsupported_codec", "cover_only": "no_video_stream",
                       "thumbnail_only": "missing_file", "not_media": "corrupt_file"}
    for vid in ("video_codec_unknown", "cover_only"):
        info["written"].pop(vid)
    for vid in ("no_audio", "audio_codec_unknown", "empty_audio"):
        info["written"][vid]["has_audio"] = False
    with open(os.path.join(root, "caption.json"), "w", encoding="utf-8") as f:
        json.dump(caps, f)
    return info
