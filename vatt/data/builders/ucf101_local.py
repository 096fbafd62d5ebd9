"""UCF101 from a local copy, with the three official train/test splits.

Layout (manual_dir): `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` and `ucfTrainTestlist/{classInd.txt,
trainlist0N.txt, testlist0N.txt}`. The lists spell `HandStandPushups` while the folder is
`HandstandPushups`: paths are matched case-insensitively, and by name without extension (a copy
transcoded to .mp4 or .mkv is found; FFmpeg reads whatever the container is). Splits `train1, test1, train2, test2,
train3, test3` (config field `ucf_splits` keeps only some of them: each stores every video once).
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds

from vatt.data import decode as decode_lib
from vatt.data.builders import base


@dataclasses.dataclass(eq=False)
class Ucf101Config(base.MediaConfig):
    ucf_splits: tuple = (1, 2, 3)


def _configs() -> list[Ucf101Config]:
    fields = [f.name for f in dataclasses.fields(base.MediaConfig)]
    out = []
    for c in base.standard_configs(clip_seconds=0.0):
        out.append(Ucf101Config(**{k: getattr(c, k) for k in fields}))
    out.append(Ucf101Config(name="default_split1", description="default, split 1 only.",
                            fps=10.0, short_side=256, sample_rate=48000, ucf_splits=(1,)))
    return out


class Ucf101Local(base.VattBuilder):
    """UCF101 action recognition (101 classes) from a local copy."""

    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  manual_dir holds `UCF-101/` (the extracted UCF101.rar) and `ucfTrainTestlist/` (the extracted
  UCF101TrainTestSplits-RecognitionTask.zip). Nothing is downloaded.
  """

    def _info(self) -> tfds.core.DatasetInfo:
        feats = base.video_features(self.builder_config)
        feats["label"] = tfds.features.ClassLabel(num_classes=101)
        feats["filename"] = tfds.features.Text()
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(feats),
            supervised_keys=("video", "label"),
            homepage="https://www.crcv.ucf.edu/data/UCF101.php",
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        lists = os.path.join(root, "ucfTrainTestlist")
        classes = {}
        for line in open(os.path.join(lists, "classInd.txt"), encoding="utf-8", errors="replace"):
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit():
                classes[parts[1].lower()] = int(parts[0]) - 1
        # By "Class/v_Class_gXX_cYY" whatever the extension: copies transcoded to .mp4 are
        # common, and the listed .avi is preferred when both are there.
        index = base.index_media(os.path.join(root, "UCF-101"), relative=True)
        out = {}
        for s in self.builder_config.ucf_splits:
            for kind in ("train", "test"):
                name = f"{kind}{s}"
                out[name] = self._generate(os.path.join(lists, f"{kind}list0{s}.txt"), name, classes, index)
        return out

    def _generate(self, list_path: str, split: str, classes: dict, index: base.MediaIndex):
        for i, line in enumerate(open(list_path, encoding="utf-8", errors="replace")):
            parts = line.split()
            if not parts:
                continue
            rel = parts[0]
            cls = rel.split("/")[0].lower()
            if cls not in classes:
                self.report.skip(split, f"{os.path.basename(list_path)} line {i + 1}", base.BAD_ROW,
                                 f"unknown class in {rel!r}")
                continue
            stem, ext = os.path.splitext(rel)
            path = index.find(stem, prefer_ext=ext)
            if path is None:
                self.report.skip(split, rel, decode_lib.MISSING, index.missing_detail(stem))
                continue
            item = os.path.relpath(path, os.path.dirname(os.path.dirname(path)))
            ex = self.encode_clip_file(path, split, item)
            if ex is None:
                continue
            ex.update({"video_id": os.path.splitext(os.path.basename(path))[0],
                       "label": classes[cls], "filename": item})
            self.report.ok(split)
            yield item, ex
