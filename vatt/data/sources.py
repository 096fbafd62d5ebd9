"""Data sources of the input pipeline: a built vatt tfds dataset or DMVR TFRecords.

A source gives this host's shard of raw elements (frames still JPEG-encoded) plus what the
pipeline needs to know about it (stored fps and sample rate, which fields it has).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable

import tensorflow as tf

from vatt.data import tokenizer as tok


@dataclasses.dataclass
class Source:
    """One dataset of a (possibly single-member) mixture.

    name: tfds "name[/config]" or "dmvr:<file glob>"; fps / sample_rate: how frames and audio are
    stored; label_kind: "single" (field `label`), "multi" (field `labels`) or None.
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
    count: Callable[[], int]  # number of examples of the split (DMVR: counted on demand)
    read: Callable[[int, int], tf.data.Dataset]  # (process_index, process_count) -> elements

    def host_examples(self, process_count: int) -> int:
        """Upper bound of examples on one host (ceil(N / P)); equal on every host."""
        return math.ceil(self.count() / process_count)


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

    def read(process_index: int, process_count: int) -> tf.data.Dataset:
        host_split = tfds.even_splits(split, n=process_count)[process_index] if process_count > 1 else split
        decoders = {"video": tfds.decode.SkipDecoding()} if has_video else None
        ds = builder.as_dataset(split=host_split, decoders=decoders, shuffle_files=False,
                                read_config=tfds.ReadConfig(interleave_cycle_length=1, add_tfds_id=False))
        return ds.map(lambda ex: {k: ex[k] for k in keep})

    return Source(name=name, split=split, weight=weight, fps=float(cfg.fps),
                  sample_rate=int(cfg.sample_rate), has_video=has_video, has_audio="audio" in feats,
                  caption_key=cap, label_kind=kind, num_classes=ncls,
                  vocab_path=vocab if os.path.exists(vocab) else None,
                  count=lambda: int(builder.info.splits[split].num_examples), read=read)


def dmvr_source(pattern: str, weight: float, fps: float, sample_rate: int, *, has_video: bool = True,
                has_audio: bool = True, has_text: bool = True, num_classes: int = 0) -> Source:
    from vatt.data import dmvr

    keep = (["video"] if has_video else []) + (["audio"] if has_audio else []) + \
           (["caption"] if has_text else []) + (["label"] if num_classes else [])

    def read(process_index: int, process_count: int) -> tf.data.Dataset:
        ds = dmvr.read(pattern, process_index=process_index, process_count=process_count)
        if has_video:  # a record without frames cannot make a clip
            ds = ds.filter(lambda ex: tf.size(ex["video"]) > 0)
        return ds.map(lambda ex: {k: ex[k] for k in keep})

    return Source(name=f"dmvr:{pattern}", split="", weight=weight, fps=fps, sample_rate=sample_rate,
                  has_video=has_video, has_audio=has_audio, caption_key="caption" if has_text else None,
                  label_kind="single" if num_classes else None, num_classes=num_classes,
                  vocab_path=None, count=lambda: dmvr.num_examples(pattern), read=read)
