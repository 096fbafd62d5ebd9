"""Throughput of the training input: decoded clips/s per core.

  python -m vatt.data.bench [--clips 64] [--frame_size 224] [--num_frames 32]
  python -m vatt.data.bench --media_dir=/path/to/videos [--data_dir=D] [--clips 64 --seconds 20]

Without --media_dir (synthetic mode, `run`): clips are synthetic but stored exactly as the
builders store them (JPEG frames, short side 256, 10 fps, 48 kHz float waveform); the measured
path is the real transform (frame sampling, JPEG decode with crop, random resized crop, flip,
colour jitter, synced 3.2 s audio window, tokenization), without reading a built dataset.

With --media_dir (vatt.data.bench_media): the folder of real videos is built into a dataset
(howto100m layout, `default` config), the training iterator is measured on 1 core and on all
cores against decoding every clip from the source files with PyAV, and the run ends with one
JSON line (clips/s per core of both, their ratio, the build counts, the settings).
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
                         num_classes=0, vocab_path=None, num_examples=clips, read=None, parse=None)
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


def main(argv: list[str] | None = None) -> dict | None:
    """Synthetic mode prints one line; media mode prints progress and ends with one JSON line
    (also returned)."""
    p = argparse.ArgumentParser(prog="python -m vatt.data.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=64,
                   help="clips timed (media mode: at least this many per measurement)")
    p.add_argument("--frame_size", type=int, default=224)
    p.add_argument("--num_frames", type=int, default=32)
    p.add_argument("--cores", type=int, default=0,
                   help="0: all cores this process may use; media mode: the first N of them")
    m = p.add_argument_group("media mode")
    m.add_argument("--media_dir", default="", help="folder of videos (searched recursively)")
    m.add_argument("--data_dir", default="",
                   help="where the build is kept and reused by later runs (default: a temporary folder)")
    m.add_argument("--overwrite", action="store_true", help="rebuild a build kept in --data_dir")
    m.add_argument("--config", default="default", help="builder config: default | small | tiny")
    m.add_argument("--seconds", type=float, default=20.0, help="at least this long per measurement")
    m.add_argument("--warmup", type=int, default=16,
                   help="clips discarded before timing (pipeline: whole batches; PyAV: warmup/4 per worker)")
    m.add_argument("--batch_size", type=int, default=8, help="pipeline batch size")
    m.add_argument("--num_captions", type=int, default=4, help="K captions per clip")
    a = p.parse_args(argv)
    if not a.media_dir:
        run(clips=a.clips, frame_size=a.frame_size, num_frames=a.num_frames, cores=a.cores or None)
        return None
    import json

    from vatt.data import bench_media

    result = bench_media.run_media(
        a.media_dir, data_dir=a.data_dir or None, config=a.config, overwrite=a.overwrite,
        num_frames=a.num_frames, frame_size=a.frame_size, num_captions=a.num_captions,
        batch_size=a.batch_size, clips=a.clips, seconds=a.seconds, warmup=a.warmup, cores=a.cores)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
