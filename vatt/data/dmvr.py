"""DMVR-format tf.SequenceExample records: parse them, convert TFRecord files of them to
ArrayRecord (what the pipeline reads, by index), and write TFRecords (as DMVR users have them).

Layout read (keys configurable): feature lists `image/encoded` (one JPEG per frame) and
`waveform/floats` (the waveform as one float list per step, concatenated), context
`caption/string` (bytes list: the clip's captions) and `label/index` (int64 list). Missing keys
read as empty. `parse` yields the same element structure as the tfds builders read with
`SkipDecoding` on video, so the input pipeline handles both the same way:
  {"video": string [N], "audio": float32 [S], "caption": string [C], "label": int64 [],
   "labels": int64 [M], "video_id": string []}
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

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


ARRAY_RECORD_SUFFIX = ".array_record"


def files(pattern: str) -> list[str]:
    """The files a glob (or one path) names, sorted; FileNotFoundError when none."""
    out = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    if not out or not all(os.path.isfile(f) for f in out):
        raise FileNotFoundError(f"No DMVR files match {pattern!r}")
    return out


def array_record_files(pattern: str) -> list[str]:
    """The ArrayRecord files of `pattern`; refuses TFRecords with the command that converts them."""
    fs = files(pattern)
    other = [f for f in fs if ARRAY_RECORD_SUFFIX not in os.path.basename(f)]
    if other:
        raise ValueError(
            f"config.data.name='dmvr:{pattern}' matches {len(other)} file(s) that are not ArrayRecord "
            f"(e.g. {other[0]}); the pipeline reads records by index. Convert the TFRecords once: "
            f"`python -m vatt.data.to_array_record dmvr '{pattern}' --out_dir=<folder>` and use "
            f"dmvr:<folder>/*{ARRAY_RECORD_SUFFIX}")
    return fs


def convert(pattern: str, out_dir: str, *, require_frames: bool = True) -> dict:
    """TFRecord files of serialized DMVR SequenceExamples -> ArrayRecord files in `out_dir`, one per
    input file (<stem>.array_record), keeping the order.

    Records that do not parse as a SequenceExample, or that have no frames (`require_frames`,
    the default: a video record without frames cannot make a clip; False for audio-only sets such
    as ESC-50) or no waveform either, are skipped and counted; a truncated file keeps the records read before the damage. Returns (and
    writes as conversion_summary.json) {"written": n, "skipped": {reason: n}, "files": [...]}.
    """
    from array_record.python import array_record_module

    os.makedirs(out_dir, exist_ok=True)
    summary = {"written": 0, "skipped": {}, "files": []}

    def skip(reason: str) -> None:
        summary["skipped"][reason] = summary["skipped"].get(reason, 0) + 1

    for path in files(pattern):
        stem = os.path.basename(path).split(".tfrecord")[0]
        out = os.path.join(out_dir, stem + ARRAY_RECORD_SUFFIX)
        writer = array_record_module.ArrayRecordWriter(out, "group_size:1")  # 1: cheap random access
        it = iter(tf.data.TFRecordDataset(path).as_numpy_iterator())
        while True:
            try:
                record = next(it)
            except StopIteration:
                break
            except tf.errors.DataLossError:
                skip("truncated_file")
                break
            try:
                ex = parse(tf.constant(record))
            except tf.errors.InvalidArgumentError:
                skip("unparseable_record")
                continue
            if require_frames and int(tf.size(ex["video"])) == 0:
                skip("no_frames")
                continue
            if int(tf.size(ex["video"])) == 0 and int(tf.size(ex["audio"])) == 0:
                skip("no_frames_or_audio")
                continue
            writer.write(record)
            summary["written"] += 1
        writer.close()
        summary["files"].append(out)
    with open(os.path.join(out_dir, "conversion_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


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
