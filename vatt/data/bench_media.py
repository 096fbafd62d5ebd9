"""Input pipeline against on-the-fly PyAV decoding, on a folder of real videos, in one run.

  python -m vatt.data.bench --media_dir=/path/to/videos [--data_dir=D] [--clips 64 --seconds 20]

1. The folder becomes a HowTo100M-layout manual_dir in a temporary folder (a symlink per video,
   a generated caption.json with captions spanning each video) and is built as
   `howto100m/<config>` (default: 10 fps, short side 256, 48 kHz) by the project's builder into
   --data_dir (kept and reused by later runs) or a temporary one; the build summary is printed.
2. The training read path (vatt.data.pipeline.make_iterator, training=True, the config's default
   augmentation) on 1 core and on all cores, each in a child process restricted to those cores
   (vatt.data.bench_pipeline).
3. The PyAV baseline (vatt.data.bench_pyav): each clip decoded from the source file, one pinned
   worker per core, on 1 core and on all cores.
4. One JSON line with clips/s per core of both, their ratio, the build counts and the settings.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

import numpy as np

from vatt.data import bench_pyav

NAME = "howto100m"
FINGERPRINT = "vatt_bench_media.json"  # in --data_dir: which folder its build was made from
CAPTION_SECONDS = 2.0  # one generated caption per 2 s of video (ASR segments are a few seconds)
MIN_CAPTIONS = 4
_WORDS = (("cut", "stir", "add", "slice", "fold", "pour", "press", "turn", "hold", "check"),
          ("small", "hot", "fresh", "left", "other", "wooden", "thin", "whole", "red", "dry"),
          ("onion", "board", "pan", "bowl", "wire", "screw", "paper", "cloth", "lid", "handle"))


def find_media(media_dir: str) -> list[str]:
    """Candidate media files under `media_dir` (sorted; hidden files and files that are never
    media -- metadata, subtitles, images -- left out, as the builders' media index does)."""
    from vatt.data.builders import base

    out = []
    for dirpath, dirs, files in os.walk(media_dir):
        dirs.sort()
        for fn in sorted(files):
            if not fn.startswith(".") and os.path.splitext(fn)[1].lower() not in base.NON_MEDIA_EXTS:
                out.append(os.path.join(dirpath, fn))
    return out


def _video_id(path: str, taken: set[str]) -> str:
    """A caption.json key for `path`: its stem in safe characters, unique case-insensitively
    (the builders' media index matches ids by lower-cased stem)."""
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in os.path.splitext(os.path.basename(path))[0])
    vid, k = stem or "video", 1
    while vid.lower() in taken:
        k += 1
        vid = f"{stem}_{k}"
    taken.add(vid.lower())
    return vid


def captions_for(vid: str, duration: float) -> dict:
    """Captions of equal length covering [0, duration] (at least MIN_CAPTIONS), with words
    drawn deterministically from the id, so a rebuild gives the same captions and vocabulary."""
    n = max(MIN_CAPTIONS, math.ceil(duration / CAPTION_SECONDS))
    d = max(duration, 1e-3)
    rng = np.random.default_rng(zlib.crc32(vid.encode()))
    text = [f"now {rng.choice(_WORDS[0])} the {rng.choice(_WORDS[1])} {rng.choice(_WORDS[2])} "
            f"step {i + 1}" for i in range(n)]
    return {"text": text, "start": [d * i / n for i in range(n)], "end": [d * (i + 1) / n for i in range(n)]}


def make_manual_dir(files: list[str], manual_dir: str) -> list[dict]:
    """Lays `files` out as a HowTo100M manual_dir (`videos/<id><ext>` symlinks + caption.json).
    Returns [{vid, path, duration, captions}]; a file that cannot be probed gets one caption,
    so that the builder reports it with the decoder's reason."""
    from vatt.data import decode

    os.makedirs(os.path.join(manual_dir, "videos"), exist_ok=True)
    taken: set[str] = set()
    videos, caps = [], {}
    for path in files:
        vid = _video_id(path, taken)
        os.symlink(os.path.abspath(path), os.path.join(manual_dir, "videos", vid + os.path.splitext(path)[1]))
        try:
            duration = decode.probe_duration(path)
        except decode.DecodeError:
            duration = 0.0
        caps[vid] = captions_for(vid, duration) if duration > 0 else {"text": ["x"], "start": [0.0], "end": [1.0]}
        videos.append({"vid": vid, "path": os.path.abspath(path), "duration": duration, "captions": caps[vid]})
    with open(os.path.join(manual_dir, "caption.json"), "w", encoding="utf-8") as f:
        json.dump(caps, f)
    return videos


def _fingerprint(files: list[str], config: str) -> dict:
    return {"config": config, "captions": [CAPTION_SECONDS, MIN_CAPTIONS],
            "media": [[os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns] for p in files]}


def build(files: list[str], videos_dir: str, data_dir: str, config: str, overwrite: bool) -> tuple[dict, bool]:
    """(build summary, whether an earlier build was reused). An existing build in `data_dir` is
    reused only when this benchmark made it from the same files: anything else in its place is
    refused rather than measured as if it were this folder (--overwrite replaces it)."""
    from vatt.data.tf_setup import hide_accelerators

    hide_accelerators()  # before TensorFlow picks devices: the build only needs the CPU
    import tensorflow_datasets as tfds

    import vatt.data.builders  # noqa: F401  (registers the builders)
    from vatt.data import build as build_lib

    want = _fingerprint(files, config)
    fp_path = os.path.join(data_dir, FINGERPRINT)
    prepared = tfds.builder(f"{NAME}/{config}", data_dir=data_dir).is_prepared()
    if prepared and not overwrite:
        have = None
        if os.path.exists(fp_path):
            with open(fp_path, encoding="utf-8") as f:
                have = json.load(f)
        if have != want:
            raise SystemExit(f"{data_dir} holds a {NAME}/{config} build that was not made by this "
                             "benchmark from these files; pass --overwrite or another --data_dir")
    summary = build_lib.build(f"{NAME}/{config}", manual_dir=videos_dir, data_dir=data_dir,
                              overwrite=overwrite)
    with open(fp_path, "w", encoding="utf-8") as f:
        json.dump(want, f)
    return summary, prepared and not overwrite


def summary_counts(summary: dict) -> dict:
    """Counts of the train split: written, skipped by reason, kept with a fix by reason."""
    return {"written": summary["written"].get("train", 0),
            "skipped": summary["skipped"].get("train", {}),
            "kept_with_fix": summary["kept_with_fix"].get("train", {})}


def skipped_videos(summary: dict) -> set[str]:
    """Ids of videos with a skipped item (the whole file, or one of its clips)."""
    return {it["item"].split("@")[0].split("#")[0] for it in summary.get("items", [])
            if it["action"] == "skipped"}


def pipeline_rate(cpus: list[int], data_dir: str, config: str, opts: dict) -> dict:
    """Runs vatt.data.bench_pipeline in a child process restricted to `cpus`."""
    with tempfile.TemporaryDirectory(prefix="vatt-bench-") as tmp:
        out = os.path.join(tmp, "result.json")
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        cmd = [sys.executable, "-m", "vatt.data.bench_pipeline", f"--cpus={','.join(map(str, cpus))}",
               f"--data_dir={data_dir}", f"--json_out={out}", f"--name={NAME}/{config}"]
        cmd += [f"--{k}={v}" for k, v in opts.items()]
        subprocess.run(cmd, check=True, env=env)
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def run_media(media_dir: str, *, data_dir: str | None = None, config: str = "default",
              overwrite: bool = False, num_frames: int = 32, frame_size: int = 224,
              num_captions: int = 4, batch_size: int = 8, clips: int = 64, seconds: float = 20.0,
              warmup: int = 16, cores: int = 0) -> dict:
    """The whole comparison (module docstring); returns the dict printed as the JSON line."""
    files = find_media(media_dir)
    if not files:
        raise SystemExit(f"no media files in {media_dir}")
    avail = sorted(os.sched_getaffinity(0))
    all_cpus = avail[:cores] if cores else avail
    tmp = tempfile.mkdtemp(prefix="vatt-bench-media-")
    try:
        videos = make_manual_dir(files, os.path.join(tmp, "manual"))
        build_dir = data_dir or os.path.join(tmp, "tfds")  # a temporary build goes with `tmp`
        summary, reused = build(files, os.path.join(tmp, "manual"), build_dir, config, overwrite)
        counts = summary_counts(summary)
        print(f"build {NAME}/{config}{' (reused)' if reused else ''}: {counts['written']} examples "
              f"written from {len(files)} files, {sum(counts['skipped'].values())} skipped "
              f"{counts['skipped']}, kept with fix {counts['kept_with_fix']}", flush=True)
        if counts["written"] == 0:
            raise SystemExit("nothing was built from this folder; see the build summary above")
        cfg = summary["config"]
        spec = bench_pyav.ClipSpec(num_frames=num_frames, fps=cfg["fps"], frame_size=frame_size,
                                   short_side=cfg["short_side"], sample_rate=cfg["sample_rate"])
        bad = skipped_videos(summary)
        windows = [bench_pyav.Window(v["path"], v["duration"], s, e) for v in videos
                   if v["vid"] not in bad and v["duration"] > 0
                   for s, e in zip(v["captions"]["start"], v["captions"]["end"])]
        opts = dict(num_frames=num_frames, frame_size=frame_size, num_captions=num_captions,
                    batch_size=batch_size, clips=clips, seconds=seconds, warmup=warmup)
        runs: dict[str, dict] = {}
        for label, cpus in (("1core", all_cpus[:1]), ("all_cores", all_cpus)):
            if label == "all_cores" and len(cpus) == 1:  # the same measurement: not repeated
                runs["pipeline_all_cores"], runs["pyav_all_cores"] = runs["pipeline_1core"], runs["pyav_1core"]
                continue
            runs[f"pipeline_{label}"] = pipeline_rate(cpus, build_dir, config, opts)
            _say(f"pipeline on {len(cpus)} core(s)", runs[f"pipeline_{label}"], len(cpus))
            runs[f"pyav_{label}"] = bench_pyav.measure(windows, spec, cpus, clips=clips, seconds=seconds,
                                                       warmup=max(1, warmup // 4))
            _say(f"PyAV on {len(cpus)} core(s)", runs[f"pyav_{label}"], len(cpus))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(all_cpus)
    pipe, pyav = runs["pipeline_all_cores"]["clips_per_s"] / n, runs["pyav_all_cores"]["clips_per_s"] / n
    return {
        "mode": "media", "media_dir": os.path.abspath(media_dir), "num_videos": len(files),
        "num_videos_pyav": len({w.path for w in windows}), "cores": n, "cpus": all_cpus,
        "pipeline_clips_per_s_per_core": pipe,
        "pipeline_clips_per_s_1core": runs["pipeline_1core"]["clips_per_s"],
        "pipeline_clips_per_s_all_cores": runs["pipeline_all_cores"]["clips_per_s"],
        "pyav_clips_per_s_per_core": pyav,
        "pyav_clips_per_s_1core": runs["pyav_1core"]["clips_per_s"],
        "pyav_clips_per_s_all_cores": runs["pyav_all_cores"]["clips_per_s"],
        "ratio": pipe / pyav,
        "ratio_1core": runs["pipeline_1core"]["clips_per_s"] / runs["pyav_1core"]["clips_per_s"],
        "all_cores_is_1core": n == 1,
        "build_summary": counts, "build_reused": reused, "data_dir": data_dir,
        "settings": {"dataset": f"{NAME}/{config}", "build": cfg, "num_frames": num_frames,
                     "frame_size": frame_size, "fps": spec.fps, "audio_seconds": spec.seconds,
                     "sample_rate": spec.sample_rate, "short_side": spec.short_side,
                     "num_captions": num_captions, "batch_size": batch_size, "clips": clips,
                     "seconds": seconds, "warmup": warmup,
                     "augmentation": runs["pipeline_1core"]["augmentation"],
                     "pyav_augmentation": "random crop + flip (no colour jitter)",
                     "cores_method": "os.sched_setaffinity: the pipeline in a child process set to "
                                     "the cores before TensorFlow starts; PyAV: one spawned worker "
                                     "per core, each pinned to its core"},
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "augmentation"} for k, v in runs.items()},
    }


def _say(what: str, r: dict, cores: int) -> None:
    print(f"{what}: {r['clips']} clips in {r['seconds']:.1f} s = {r['clips_per_s']:.2f} clips/s "
          f"({r['clips_per_s'] / cores:.2f} per core)", flush=True)
