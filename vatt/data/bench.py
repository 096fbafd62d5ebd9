"""Throughput of the training transform: decoded clips/s per core.

  python -m vatt.data.bench [--clips 64] [--frame_size 224] [--num_frames 32]

Clips are synthetic but stored exactly as the builders store them (JPEG frames, short side 256,
10 fps, 48 kHz float waveform); the measured path is the real one (frame sampling, JPEG decode
with crop, random resized crop, flip, colour jitter, synced 3.2 s audio window, tokenization).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def run(*, clips: int = 64, frame_size: int = 224, num_frames: int = 32, short_side: int = 256,
        stored_seconds: float = 5.0, fps: float = 10.0, sample_rate: int = 48000,
        cores: int | None = None, verbose: bool = True) -> float:
    """Returns decoded training clips per second per core."""
    from vatt.data.tf_setup import hide_accelerators

    hide_accelerators()
    import tensorflow as tf

    from vatt.data import decode, pipeline, sources, tokenizer

    cores = cores or os.cpu_count() or 1
    rng = np.random.default_rng(0)
    n = int(stored_seconds * fps)
    w = int(short_side * 4 / 3) // 2 * 2
    base = rng.integers(0, 255, [short_side, w, 3], dtype=np.uint8)
    frames = decode.encode_jpeg(np.stack([np.roll(base, k, axis=1) for k in range(n)]))
    audio = (0.1 * rng.standard_normal(int(stored_seconds * sample_rate))).astype(np.float32)
    element = {"video": tf.constant(frames), "audio": tf.constant(audio),
               "caption": tf.constant(["a person cuts an onion", "then fries it"])}
    cfg = pipeline.default_config()
    cfg.num_frames, cfg.frame_size, cfg.target_fps = num_frames, frame_size, fps
    src = sources.Source(name="bench", split="", weight=1.0, fps=fps, sample_rate=sample_rate,
                         has_video=True, has_audio=True, caption_key="caption", label_kind=None,
                         num_classes=0, vocab_path=None, count=lambda: clips, read=None)
    vocab = ["<pad>", "<unk>", "a", "person", "cuts", "an", "onion", "then", "fries", "it"]
    proc = pipeline._Processor(cfg, src, {"video", "audio", "text"}, True,
                               tokenizer.TFTokenizer(vocab, cfg.max_text_len), 0)
    ds = tf.data.Dataset.from_tensors(element).repeat(clips).enumerate()
    ds = ds.map(lambda i, x: proc(x, pipeline._element_seed(0, 0, 0, i)), num_parallel_calls=cores,
                deterministic=False)
    opts = tf.data.Options()
    opts.threading.private_threadpool_size = cores
    ds = ds.with_options(opts)
    it = iter(ds)
    next(it)  # trace + warm up
    t = time.perf_counter()
    count = 1 + sum(1 for _ in it)
    dt = time.perf_counter() - t
    rate = (count - 1) / dt / cores
    if verbose:
        print(f"{count - 1} clips of {num_frames}x{frame_size}x{frame_size} + "
              f"{num_frames / fps:.1f} s of {sample_rate} Hz audio in {dt:.2f} s on {cores} cores: "
              f"{rate:.2f} clips/s per core", flush=True)
    return rate


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m vatt.data.bench", description=__doc__)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--frame_size", type=int, default=224)
    p.add_argument("--num_frames", type=int, default=32)
    p.add_argument("--cores", type=int, default=0)
    a = p.parse_args(argv)
    run(clips=a.clips, frame_size=a.frame_size, num_frames=a.num_frames, cores=a.cores or None)


if __name__ == "__main__":
    main()
