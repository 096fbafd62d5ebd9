"""The on-the-fly baseline: every training clip decoded from the source video with PyAV.

What most video-text codebases do in their data loader workers: pick a caption, seek to a
window around it, decode `num_frames / fps` seconds, keep `num_frames` frames at `fps` resized to
short side `short_side`, take a random `frame_size` square crop (and a random flip), decode the
audio of the window and resample it to mono at `sample_rate`. The decoding is
vatt.data.decode.decode_clip, the function the builders use, so both sides of the comparison
read the footage with the same FFmpeg code.

One worker process per core, each pinned to its core (a PyTorch DataLoader with num_workers =
cores), started with "spawn" so no TensorFlow state is inherited. FFmpeg sizes its decoding
threads from the CPUs a process may use, so a pinned worker decodes with one thread. Clips stay
in their worker: the transfer to a training process and the colour jitter / Inception crop of
the pipeline are not done here, which favours the baseline.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Window:
    """A caption of a source video: the baseline decodes a window around it."""

    path: str
    duration: float
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What one training clip is."""

    num_frames: int = 32
    fps: float = 10.0
    frame_size: int = 224
    short_side: int = 256
    sample_rate: int = 48000

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


def make_clip(w: Window, spec: ClipSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One training clip from the source file: video float32 [T, S, S, 3] in [-1, 1] and audio
    float32 [num_frames / fps * sample_rate]. Raises decode.DecodeError for unreadable media."""
    from vatt.data import decode

    secs = spec.seconds
    # A window starting anywhere that keeps the caption's centre inside it, moved into the video.
    centre = 0.5 * (w.start + w.end)
    lo, hi = max(0.0, centre - secs), min(centre, max(0.0, w.duration - secs))
    start = float(rng.uniform(lo, hi)) if hi > lo else max(0.0, min(lo, w.duration - secs))
    clip = decode.decode_clip(w.path, start=start, end=start + secs, fps=spec.fps,
                              short_side=spec.short_side, sample_rate=spec.sample_rate)
    frames = clip.frames
    if frames.shape[0] < spec.num_frames:  # a short video repeats its last frame, as the pipeline does
        frames = np.concatenate([frames, np.repeat(frames[-1:], spec.num_frames - frames.shape[0], 0)])
    frames = frames[: spec.num_frames]
    h, w_ = frames.shape[1:3]
    s = min(spec.frame_size, h, w_)
    y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w_ - s + 1))
    frames = frames[:, y: y + s, x: x + s]
    if rng.random() < 0.5:
        frames = frames[:, :, ::-1]
    video = frames.astype(np.float32) * (2.0 / 255.0) - 1.0
    n = int(round(secs * spec.sample_rate))
    audio = np.zeros([n], np.float32)
    audio[: min(n, clip.audio.size)] = clip.audio[:n]
    return {"video": video, "audio": audio}


def _worker(core: int, windows: list[Window], spec: ClipSpec, seed: int, warmup: int,
            clips: int, seconds: float, barrier, total, out) -> None:
    """Decodes clips pinned to `core` until the workers together made `clips` clips and
    `seconds` seconds passed; puts (clips, seconds, errors) on `out`."""
    import os

    os.sched_setaffinity(0, {core})
    from vatt.data import decode

    rng = np.random.default_rng(seed)
    errors = 0

    def one() -> bool:
        nonlocal errors
        try:
            make_clip(windows[int(rng.integers(len(windows)))], spec, rng)
            return True
        except decode.DecodeError:
            errors += 1
            return False

    for _ in range(max(1, warmup)):  # imports, codec set-up, page cache
        one()
    barrier.wait(timeout=600)  # a worker that died before this breaks it for the others
    count, t0 = 0, time.perf_counter()
    while total.value < clips or time.perf_counter() - t0 < seconds:
        if one():
            count += 1
            with total.get_lock():
                total.value += 1
        elif errors > 100 and count == 0:
            break  # nothing decodes: report, do not spin
    out.put((count, time.perf_counter() - t0, errors))


def measure(windows: list[Window], spec: ClipSpec, cpus: list[int], *, clips: int = 64,
            seconds: float = 20.0, warmup: int = 2, seed: int = 0) -> dict:
    """Clips/s of one pinned worker per CPU of `cpus`, all decoding at once (sum of the
    workers' rates over the same timed span)."""
    ctx = mp.get_context("spawn")
    barrier, total, out = ctx.Barrier(len(cpus)), ctx.Value("i", 0), ctx.Queue()
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(c, windows, spec, seed * 1000 + i, warmup, clips, seconds,
                               barrier, total, out))
             for i, c in enumerate(cpus)]
    for p in procs:
        p.start()
    results = []
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=2.0))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:  # its traceback is on stderr
                for p in procs:
                    p.kill()
                raise RuntimeError(f"a PyAV baseline worker failed (exit codes {dead})") from None
    for p in procs:
        p.join()
    count = sum(r[0] for r in results)
    if count == 0:
        raise RuntimeError("the PyAV baseline decoded no clip (every window failed to decode)")
    rate = sum(r[0] / r[1] for r in results if r[1] > 0)
    return {"clips": count, "seconds": max(r[1] for r in results), "clips_per_s": rate,
            "decode_errors": sum(r[2] for r in results), "workers": len(cpus), "cpus": list(cpus)}
