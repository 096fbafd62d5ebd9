"""ESC-50 from a local copy: 2000 five-second environmental sound clips, 50 classes, 5 folds.

Layout (manual_dir, the root of the ESC-50 repository): `audio/{fold}-{clip}-{take}-{target}.wav`
(or the same name with another extension: a converted copy) and `meta/esc50.csv`
(`filename,fold,target,category,esc10,src_file,take`). One split per fold (`fold1` ... `fold5`),
so fold-k cross-validation is `split="fold1+fold2+fold3+fold4"` / `"fold5"`. A clip without usable
audio is skipped with the decoder's reason (`no_audio_stream`, `unsupported_codec`, ...).
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import tensorflow_datasets as tfds

from vatt.data import decode as decode_lib
from vatt.data.builders import base


class Esc50(base.VattBuilder):
    """ESC-50 environmental sound classification (audio only)."""

    BUILDER_CONFIGS = base.standard_configs(clip_seconds=0.0)
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  manual_dir is the root of a copy of https://github.com/karolpiczak/ESC-50 (folders `audio/`
  and `meta/`). Nothing is downloaded.
  """

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "audio": tfds.features.Audio(shape=(None,), dtype=np.float32, sample_rate=cfg.sample_rate),
                "has_audio": np.bool_,
                "label": tfds.features.ClassLabel(num_classes=50),
                "category": tfds.features.Text(),
                "fold": np.int32,
                "esc10": np.bool_,
                "filename": tfds.features.Text(),
            }),
            supervised_keys=("audio", "label"),
            homepage="https://github.com/karolpiczak/ESC-50",
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        rows = self._read_meta(root)
        return {f"fold{k}": self._generate(root, rows, k) for k in range(1, 6)}

    def _read_meta(self, root: str) -> list[dict]:
        text, _ = base.load_text(os.path.join(root, "meta", "esc50.csv"))
        rows = []
        for i, row in enumerate(csv.DictReader(io.StringIO(text))):
            try:
                r = {"filename": row["filename"].strip(), "fold": int(row["fold"]),
                     "target": int(row["target"]), "category": (row.get("category") or "").strip(),
                     "esc10": str(row.get("esc10", "")).strip().lower() == "true"}
                if not 1 <= r["fold"] <= 5 or not 0 <= r["target"] < 50:
                    raise ValueError("fold or target out of range")
                rows.append(r)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                self.report.skip("meta", f"esc50.csv line {i + 2}", base.BAD_ROW, str(e))
        return rows

    def _generate(self, root: str, rows: list[dict], fold: int):
        split = f"fold{fold}"
        index = None  # built on the first file not found under its listed name
        for row in rows:
            if row["fold"] != fold:
                continue
            path = os.path.join(root, "audio", row["filename"])
            if not os.path.exists(path):
                # A copy converted to .flac / .ogg keeps the name's stem; FFmpeg reads the content.
                if index is None:
                    index = base.index_media(os.path.join(root, "audio"))
                stem, ext = os.path.splitext(row["filename"])
                path = index.find(stem, prefer_ext=ext) or path
            try:
                # Raises for a file without usable audio (no_audio_stream, unsupported_codec, ...).
                clip = self.decode(path, video=False)
            except decode_lib.DecodeError as e:
                self.report.skip(split, row["filename"], e.reason, e.detail)
                continue
            self.report.ok(split)
            yield row["filename"], {
                "audio": clip.audio, "has_audio": True, "label": row["target"],
                "category": row["category"], "fold": fold, "esc10": row["esc10"],
                "filename": row["filename"],
            }
