"""Writers of tiny but real datasets in the on-disk layouts of DESIGN.md section 5.

Videos are real encoded files written with PyAV (mpeg4/h264 + aac in mp4, mjpeg/mpeg4 in avi),
WAVs are written with the stdlib `wave` module, metadata is real JSON/CSV. Each `write_*`
function returns a dict describing what it wrote (good files, deliberately bad files), so tests,
notebooks and end-to-end runs can check a build against it. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import csv
import json
import os
import wave
from fractions import Fraction

import av
import numpy as np


# ----------------------------------------------------------------------------- media writers
def write_video(
    path: str,
    *,
    seconds: float = 2.0,
    fps: int = 10,
    width: int = 64,
    height: int = 48,
    codec: str = "mpeg4",
    audio: bool = True,
    audio_codec: str = "aac",
    sample_rate: int = 16000,
    seed: int = 0,
) -> None:
    """Write a real video file; frame k has mean brightness ~ (20 + 10 k) % 256 (for sync checks)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    with av.open(path, mode="w") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        a_s = None
        if audio:
            a_s = c.add_stream(audio_codec, rate=sample_rate)
            a_s.layout = "mono"
        for k in range(n):
            img = np.full([height, width, 3], (20 + 10 * k) % 256, np.uint8)
            img[: height // 4, : width // 4] = rng.integers(0, 255, [height // 4, width // 4, 3], dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a_s is not None:
            total = int(seconds * sample_rate)
            t = np.arange(total) / sample_rate
            sig = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            chunk = 1024
            for i in range(0, total, chunk):
                part = sig[i : i + chunk]
                af = av.AudioFrame.from_ndarray(part[None, :], format="fltp", layout="mono")
                af.sample_rate = sample_rate
                af.pts = i
                af.time_base = Fraction(1, sample_rate)
                for p in a_s.encode(af):
                    c.mux(p)
            for p in a_s.encode():
                c.mux(p)


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
