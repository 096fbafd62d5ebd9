"""Read (and, for tests, write) DMVR-format TFRecords of tf.SequenceExample.

Layout read (keys configurable): feature lists `image/encoded` (one JPEG per frame) and
`waveform/floats` (the waveform as one float list per step, concatenated), context
`caption/string` (bytes list: the clip's captions) and `label/index` (int64 list). Missing keys
read as empty. The reader yields the same element structure as the tfds builders read with
`SkipDecoding` on video, so the input pipeline handles both the same way:
  {"video": string [N], "audio": float32 [S], "caption": string [C], "label": int64 [],
   "labels": int64 [M], "video_id": string []}
"""

from __future__ import annotations

import dataclasses
import glob

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class DmvrKeys:
    image: str = "image/encoded"
    waveform: str = "waveform/floats"
    caption: str = "caption/string"
    label: str = "label/index"
    video_id: str = "video/id"


def parse(serialized: tf.Tensor, keys: DmvrKeys = DmvrKeys()) -> dict:
    """One serialized tf.SequenceExample -> element dict (see module docstring)."""
    context, seq = tf.io.parse_single_sequence_example(
        serialized,
        context_features={
            keys.caption: tf.io.VarLenFeature(tf.string),
            keys.label: tf.io.VarLenFeature(tf.int64),
            keys.video_id: tf.io.FixedLenFeature([], tf.string, default_value=""),
        },
        sequence_features={
            keys.image: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True),
            keys.waveform: tf.io.VarLenFeature(tf.float32),
        })
    wave = seq[keys.waveform].values  # steps concatenated in order (the last may be shorter)
    labels = tf.sparse.to_dense(context[keys.label])
    return {
        "video": seq[keys.image],
        "audio": tf.reshape(wave, [-1]),
        "caption": tf.sparse.to_dense(context[keys.caption], default_value=""),
        "label": tf.cond(tf.size(labels) > 0, lambda: labels[0], lambda: tf.constant(-1, tf.int64)),
        "labels": labels,
        "video_id": context[keys.video_id],
    }


def files(pattern: str) -> list[str]:
    out = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    if not out:
        raise FileNotFoundError(f"No DMVR TFRecords match {pattern!r}")
    return out


def num_examples(pattern: str) -> int:
    """Count records (a full read; used only for evaluation sizes)."""
    return sum(1 for _ in tf.data.TFRecordDataset(files(pattern)))


def read(pattern: str, *, process_index: int = 0, process_count: int = 1,
         keys: DmvrKeys = DmvrKeys()) -> tf.data.Dataset:
    """Deterministic dataset of parsed elements; this host's shard (by file when there are at
    least as many files as hosts, else by record)."""
    fs = files(pattern)
    if len(fs) >= process_count and process_count > 1:
        ds = tf.data.TFRecordDataset(fs[process_index::process_count])
    else:
        ds = tf.data.TFRecordDataset(fs).shard(process_count, process_index)
    return ds.map(lambda s: parse(s, keys), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def make_example(jpeg_frames: list[bytes], waveform: np.ndarray, captions: list[str] = (),
                 label: int | None = None, video_id: str = "", keys: DmvrKeys = DmvrKeys(),
                 samples_per_step: int = 1024) -> bytes:
    """A serialized DMVR tf.SequenceExample (the format the official VATT code reads)."""
    ex = tf.train.SequenceExample()
    fl = ex.feature_lists.feature_list
    for f in jpeg_frames:
        fl[keys.image].feature.add().bytes_list.value.append(f)
    wave = np.asarray(waveform, np.float32).reshape(-1)
    for i in range(0, wave.size, samples_per_step):
        fl[keys.waveform].feature.add().float_list.value.extend(wave[i : i + samples_per_step].tolist())
    ctx = ex.context.feature
    if captions:
        ctx[keys.caption].bytes_list.value.extend([c.encode("utf-8") for c in captions])
    if label is not None:
        ctx[keys.label].int64_list.value.append(int(label))
    if video_id:
        ctx[keys.video_id].bytes_list.value.append(video_id.encode("utf-8"))
    return ex.SerializeToString()


def write(path: str, examples: list[bytes]) -> None:
    with tf.io.TFRecordWriter(path) as w:
        for e in examples:
            w.write(e)
