"""One measurement of the training read path on a built dataset, in a process of its own.

  python -m vatt.data.bench_pipeline --cpus=0 --data_dir=D --json_out=F [--num_frames 32 ...]

Run by vatt.data.bench_media as a child process restricted to `--cpus`: the affinity is set
before TensorFlow is imported, because TensorFlow sizes its thread pools (tf.data's runtime
pool, inter-/intra-op pools, AUTOTUNE's parallelism ceiling) from the CPUs it may be scheduled
on when it starts; restricting the process afterwards would leave more threads than cores.
The measured path is `vatt.data.pipeline.make_iterator(..., training=True)` as training uses
it: tfds read, shuffle, the per-example transform with the config's augmentation, batching,
prefetch, and numpy batches handed to Python.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def measure(*, data_dir: str, name: str = "howto100m/default", num_frames: int = 32,
            frame_size: int = 224, num_captions: int = 4, batch_size: int = 8, clips: int = 64,
            seconds: float = 20.0, warmup: int = 8) -> dict:
    """Clips/s of the training iterator: `warmup` clips (rounded up to whole batches, at least
    one batch: the first traces every function) are discarded, then batches are timed until
    both `clips` clips and `seconds` seconds are reached."""
    from vatt.data import pipeline

    cfg = pipeline.default_config()  # the paper's augmentation is its default
    cfg.name, cfg.data_dir, cfg.split = name, data_dir, "train"
    cfg.num_frames, cfg.frame_size, cfg.num_captions = num_frames, frame_size, num_captions
    it = pipeline.make_iterator(cfg, global_batch_size=batch_size, training=True, seed=0)
    t_start = time.perf_counter()
    for _ in range(max(1, -(-warmup // batch_size))):
        batch = next(it)
    warmup_s = time.perf_counter() - t_start
    count, t0 = 0, time.perf_counter()
    while count < clips or time.perf_counter() - t0 < seconds:
        batch = next(it)
        count += batch["video"].shape[0]
    elapsed = time.perf_counter() - t0
    shapes = {k: list(v.shape) for k, v in batch.items()}
    return {"clips": count, "seconds": elapsed, "clips_per_s": count / elapsed,
            "warmup_s": warmup_s, "batch_shapes": shapes,
            "augmentation": {"crop": cfg.crop, "min_area": cfg.min_area, "flip": cfg.flip,
                             "color_jitter": cfg.color_jitter, "audio_noise": cfg.audio_noise}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vatt.data.bench_pipeline", description=__doc__)
    p.add_argument("--cpus", required=True, help="comma list of CPU ids this process may use")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--json_out", required=True)
    p.add_argument("--name", default="howto100m/default")
    for flag, kind, default in (("num_frames", int, 32), ("frame_size", int, 224),
                                ("num_captions", int, 4), ("batch_size", int, 8),
                                ("clips", int, 64), ("seconds", float, 20.0), ("warmup", int, 8)):
        p.add_argument(f"--{flag}", type=kind, default=default)
    a = p.parse_args(argv)
    cpus = {int(c) for c in a.cpus.split(",")}
    os.sched_setaffinity(0, cpus)  # before TensorFlow is imported (module docstring)
    from vatt.data.tf_setup import hide_accelerators

    hide_accelerators()
    result = measure(data_dir=a.data_dir, name=a.name, num_frames=a.num_frames,
                     frame_size=a.frame_size, num_captions=a.num_captions,
                     batch_size=a.batch_size, clips=a.clips, seconds=a.seconds, warmup=a.warmup)
    result["cpus"] = sorted(os.sched_getaffinity(0))
    with open(a.json_out, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
