"""AudioSet from a local copy: 10 s clips with video and audio, multi-label, no text.

Layout (manual_dir): `class_labels_indices.csv` (`index,mid,display_name`), segment CSVs
`{balanced_train,unbalanced_train,eval}_segments.csv` (3 comment lines, then
`YTID, start, end, "mid1,mid2"`), and clip files anywhere below manual_dir named `<YTID>.<ext>`,
`<YTID>_<start>.<ext>`, `<YTID>_<start>_<end>.<ext>` (seconds, integers or as in the CSV, or
milliseconds) or `Y<YTID>...`, with any extension FFmpeg reads (mp4, mkv, webm, m4a, opus, ...;
an audio-only clip is reported as `no_video_stream`: every example has frames; a clip shorter
than `clip_seconds` is kept and reported as `shorter_than_clip_kept`). Splits are named after
the CSVs found (`balanced_train`, `unbalanced_train`, `eval`). Class names are stored in the dataset metadata (`class_names`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import numpy as np
import tensorflow_datasets as tfds

from vatt.data.builders import base

SPLITS = ("balanced_train", "unbalanced_train", "eval")


@dataclasses.dataclass(eq=False)
class AudiosetConfig(base.MediaConfig):
    num_classes: int = 527


def _configs() -> list[AudiosetConfig]:
    fields = [f.name for f in dataclasses.fields(base.MediaConfig)]
    return [AudiosetConfig(**{k: getattr(c, k) for k in fields})
            for c in base.standard_configs(clip_seconds=10.0)]


class Audioset(base.VattBuilder):
    """AudioSet video + audio clips with multi-label targets."""

    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  manual_dir holds class_labels_indices.csv, the *_segments.csv files and the clip files
  (`<YTID>_<start>.mp4`, ...). Nothing is downloaded.
  """

    def _info(self) -> tfds.core.DatasetInfo:
        feats = base.video_features(self.builder_config)
        feats["labels"] = tfds.features.Sequence(
            tfds.features.ClassLabel(num_classes=self.builder_config.num_classes))
        feats["start"] = np.float32
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(feats),
            metadata=tfds.core.MetadataDict(),
            homepage="https://research.google.com/audioset/",
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        mids, names = self._read_classes(root)
        self.info.metadata["class_names"] = names
        self.info.metadata["class_mids"] = list(mids)
        media = base.index_media(root)
        out = {}
        for split in SPLITS:
            path = os.path.join(root, f"{split}_segments.csv")
            if os.path.exists(path):
                out[split] = self._generate(path, split, mids, media)
        if not out:
            raise ValueError(f"No *_segments.csv under {root} (expected one of {SPLITS})")
        return out

    def _read_classes(self, root: str):
        text, _ = base.load_text(os.path.join(root, "class_labels_indices.csv"))
        mids, names = {}, []
        for i, row in enumerate(csv.DictReader(io.StringIO(text))):
            try:
                idx = int(row["index"])
                mids[row["mid"].strip()] = idx
                names.append(row["display_name"].strip())
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                self.report.skip("meta", f"class_labels_indices.csv line {i + 2}", base.BAD_ROW, str(e))
        if len(mids) > self.builder_config.num_classes:
            raise ValueError(f"{len(mids)} classes but config num_classes={self.builder_config.num_classes}")
        return mids, names

    @staticmethod
    def _find(media: base.MediaIndex, ytid: str, start: float, end: float) -> str | None:
        keys = [ytid, f"{ytid}_{int(start)}", f"{ytid}_{int(start)}_{int(end)}", f"{ytid}_{start:.3f}_{end:.3f}",
                f"{ytid}_{start:.1f}_{end:.1f}", f"{ytid}_{int(start * 1000)}_{int(end * 1000)}",
                f"{ytid}_{start:.3f}", f"{ytid}_{int(start * 1000)}"]
        for k in keys:
            for cand in (k, "Y" + k):
                path = media.find(cand)
                if path is not None:
                    return path
        return None

    def _generate(self, csv_path: str, split: str, mids: dict, media: base.MediaIndex):
        text, _ = base.load_text(csv_path)
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        for i, row in enumerate(csv.reader(lines, skipinitialspace=True)):
            try:
                ytid, start, end = row[0].strip(), float(row[1]), float(row[2])
                labels = sorted({mids[m.strip()] for m in row[3].split(",") if m.strip() in mids})
                if len(row) != 4 or not ytid:
                    raise ValueError("expected 4 columns")
            except (IndexError, ValueError, KeyError) as e:
                self.report.skip(split, f"{os.path.basename(csv_path)} row {i + 1}", base.BAD_ROW, str(e))
                continue
            item = f"{ytid}_{int(start)}"
            if not labels:
                self.report.skip(split, item, base.BAD_ROW, "no known label")
                continue
            # Clip files are already cut to the segment: decode from their start.
            ex = self.encode_clip_file(self._find(media, ytid, start, end), split, item)
            if ex is None:
                continue
            ex.update({"video_id": ytid, "labels": labels, "start": start})
            self.report.ok(split)
            yield item, ex
