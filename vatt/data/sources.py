"""Data sources of the input pipeline: a built vatt tfds dataset or DMVR records, both in
ArrayRecord files read by index.

A source gives random access to its serialized records (`read(indices)`), a graph function that
parses one record into the raw element (frames still JPEG-encoded), and what the pipeline needs
to know about it (stored fps and sample rate, which fields it has). Which records a host reads,
and in which order, is vatt.data.positions' business, not the source's.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from vatt.data import tokenizer as tok

CONVERT_COMMAND = "python -m vatt.data.to_array_record"


@dataclasses.dataclass
class Source:
    """One dataset of a (possibly single-member) mixture.

    name: tfds "name[/config]" or "dmvr:<file glob>"; fps / sample_rate: how frames and audio are
    stored; label_kind: "single" (field `label`), "multi" (field `labels`) or None;
    read: example indices [n] -> their serialized records; parse: one serialized record (tf.string
    scalar) -> {"video": string [N] JPEG frames, "audio": float32 [S], caption: string [C], ...}.
    """

    name: str
    split: str
    weight: float
    fps: float
    sample_rate: int
    has_video: bool
    has_audio: bool
    caption_key: str | None
    label_kind: str | None
    num_classes: int
    vocab_path: str | None
    num_examples: int
    read: Callable[[Sequence[int]], Sequence[bytes]]
    parse: Callable[[tf.Tensor], dict]


def parse_mixture(spec: str) -> list[tuple[str, str, float]]:
    """"name:split:weight,name:split:weight" -> [(name, split, weight)]; weight defaults to 1."""
    out = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        bits = part.rsplit(":", 2)
        if len(bits) == 3:
            try:
                out.append((bits[0], bits[1], float(bits[2])))
                continue
            except ValueError:
                pass
        bits = part.rsplit(":", 1)
        out.append((bits[0], bits[1] if len(bits) == 2 else "train", 1.0))
    return out


def tfds_source(name: str, split: str, weight: float, data_dir: str | None,
                caption_key: str = "caption") -> Source:
    import tensorflow_datasets as tfds

    import vatt.data.builders  # noqa: F401  (registers the builders)

    builder = tfds.builder(name, data_dir=data_dir or None)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"Dataset {name!r} is not built in data_dir={data_dir!r}. Build it with "
            f"`python -m vatt.data.build {name} --manual_dir=<your copy> --data_dir={data_dir}`.")
    from vatt.data.to_array_record import array_record_available

    if not array_record_available(builder):
        stored = builder.info.file_format.value if builder.info.file_format else "unknown"
        raise ValueError(
            f"Dataset {name!r} in {builder.data_dir} is stored as {stored}; the pipeline reads "
            f"examples by index from ArrayRecord files. Convert it once (the {stored} files are "
            f"kept): `{CONVERT_COMMAND} {name} --data_dir={data_dir}`")
    feats = builder.info.features
    cfg = builder.builder_config
    has_video = "video" in feats
    cap = caption_key if caption_key in feats else ("caption" if "caption" in feats else None)
    if "label" in feats:
        kind, ncls = "single", feats["label"].num_classes
    elif "labels" in feats:
        kind, ncls = "multi", feats["labels"].feature.num_classes
    else:
        kind, ncls = None, 0
    keep = [k for k in ("video", "audio", cap, "label", "labels") if k and k in feats]
    vocab = os.path.join(builder.data_dir, tok.VOCAB_FILENAME)
    records = builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES,
                                     file_format="array_record")
    decoders = {"video": tfds.decode.SkipDecoding()} if has_video else None

    def parse(serialized: tf.Tensor) -> dict:
        ex = feats.deserialize_example(serialized, decoders=decoders)
        return {k: ex[k] for k in keep}

    return Source(name=name, split=split, weight=weight, fps=float(cfg.fps),
                  sample_rate=int(cfg.sample_rate), has_video=has_video, has_audio="audio" in feats,
                  caption_key=cap, label_kind=kind, num_classes=ncls,
                  vocab_path=vocab if os.path.exists(vocab) else None,
                  num_examples=len(records), read=_reader(records), parse=parse)


def dmvr_source(pattern: str, weight: float, fps: float, sample_rate: int, *, has_video: bool = True,
                has_audio: bool = True, has_text: bool = True, num_classes: int = 0) -> Source:
    """DMVR tf.SequenceExample records in ArrayRecord files (`pattern`: a glob or one file;
    convert TFRecords once with `python -m vatt.data.to_array_record dmvr ...`)."""
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    from vatt.data import dmvr

    keep = (["video"] if has_video else []) + (["audio"] if has_audio else []) + \
           (["caption"] if has_text else []) + (["label"] if num_classes else [])
    records = ArrayRecordDataSource(dmvr.array_record_files(pattern))

    def parse(serialized: tf.Tensor) -> dict:
        ex = dmvr.parse(serialized)
        return {k: ex[k] for k in keep}

    return Source(name=f"dmvr:{pattern}", split="", weight=weight, fps=fps, sample_rate=sample_rate,
                  has_video=has_video, has_audio=has_audio, caption_key="caption" if has_text else None,
                  label_kind="single" if num_classes else None, num_classes=num_classes,
                  vocab_path=None, num_examples=len(records), read=_reader(records), parse=parse)


def _reader(records) -> Callable[[Sequence[int]], Sequence[bytes]]:
    """Batched random access of a data source (one call per batch keeps the Python work, which
    holds the GIL, off the per-example path)."""
    def read(indices: Sequence[int]) -> Sequence[bytes]:
        return records.__getitems__([int(i) for i in np.asarray(indices).reshape(-1)])
    return read
