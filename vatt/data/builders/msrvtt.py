"""MSR-VTT from a local copy, with the 1k-A split used for zero-shot text-to-video retrieval.

Layout (manual_dir): videos `video{0..9999}.mp4` (any extension FFmpeg reads) anywhere below
manual_dir (usually `videos/`),
caption JSON files holding {"videos": [{"video_id", ...}], "sentences": [{"video_id", "caption"}]}
(`MSRVTT_data.json`, or `train_val_videodatainfo.json` + `test_videodatainfo.json`: every JSON
with both keys is merged), and the 1k-A test list: `MSRVTT_JSFUSION_test.csv` (columns
`video_id`, `sentence`) or a text file with `1k` and `test` in its name (one video id a line).
Splits: `test` = the 1k-A clips (field `caption_1k` = their one retrieval caption), `train` = the
other clips of the JSON (the 9k training set of the 1k-A protocol). `caption` holds all (20) captions.
"""

from __future__ import annotations

import collections
import csv
import glob
import io
import json
import os

import tensorflow_datasets as tfds

from vatt.data import decode as decode_lib
from vatt.data.builders import base


class Msrvtt(base.VattBuilder):
    """MSR-VTT video + audio + 20 captions per clip; 1k-A test split."""

    BUILDER_CONFIGS = base.standard_configs(clip_seconds=0.0)
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  manual_dir holds the MSR-VTT videos, its caption JSON and the 1k-A test list
  (MSRVTT_JSFUSION_test.csv). Nothing is downloaded.
  """

    def _info(self) -> tfds.core.DatasetInfo:
        feats = base.video_features(self.builder_config)
        feats["caption"] = tfds.features.Sequence(tfds.features.Text())
        feats["caption_1k"] = tfds.features.Text()
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(feats),
            homepage="https://www.microsoft.com/en-us/research/publication/msr-vtt/",
        )

    def _read_json(self, root: str):
        videos, captions = [], collections.defaultdict(list)
        files = sorted(glob.glob(os.path.join(root, "**", "*.json"), recursive=True))
        for path in files:
            text, utf8 = base.load_text(path)
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                self.report.skip("meta", os.path.basename(path), base.BAD_ROW, str(e))
                continue
            if not isinstance(data, dict) or "videos" not in data or "sentences" not in data:
                continue
            for i, v in enumerate(data["videos"]):
                vid = v.get("video_id") if isinstance(v, dict) else None
                if not isinstance(vid, str):
                    self.report.skip("meta", f"{os.path.basename(path)} videos[{i}]", base.BAD_ROW)
                    continue
                videos.append(vid)
            for i, s in enumerate(data["sentences"]):
                vid = s.get("video_id") if isinstance(s, dict) else None
                cap, why = base.clean_caption(s.get("caption") if isinstance(s, dict) else None)
                if why or not isinstance(vid, str):
                    self.report.skip("meta", f"{os.path.basename(path)} sentences[{i}]", why or base.BAD_ROW)
                    continue
                captions[vid].append(cap)
        if not videos:
            raise ValueError(f"No MSR-VTT caption JSON (with 'videos' and 'sentences') under {root}")
        return list(dict.fromkeys(videos)), captions

    def _read_test_list(self, root: str) -> dict[str, str]:
        """video_id -> its 1k-A caption ('' when the list has no sentence column)."""
        cands = [p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                 if os.path.isfile(p) and ("jsfusion_test" in os.path.basename(p).lower()
                                           or ("1k" in os.path.basename(p).lower()
                                               and "test" in os.path.basename(p).lower()))]
        if not cands:
            raise ValueError(f"No 1k-A test list (MSRVTT_JSFUSION_test.csv) found under {root}")
        path = sorted(cands)[0]
        text, _ = base.load_text(path)
        out = {}
        if path.lower().endswith(".csv"):
            for i, row in enumerate(csv.DictReader(io.StringIO(text))):
                vid = (row.get("video_id") or "").strip()
                if not vid:
                    self.report.skip("meta", f"{os.path.basename(path)} line {i + 2}", base.BAD_ROW)
                    continue
                cap, _ = base.clean_caption(row.get("sentence") or "")
                out[vid] = cap or ""
        else:
            for line in text.splitlines():
                if line.strip():
                    out[line.strip()] = ""
        return out

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        videos, captions = self._read_json(root)
        test = self._read_test_list(root)
        media = base.index_media(root)
        train_ids = [v for v in videos if v not in test]
        return {
            "train": self._generate(train_ids, captions, {}, media, "train"),
            "test": self._generate(list(test), captions, test, media, "test"),
        }

    def _generate(self, ids: list, captions: dict, test: dict, media: base.MediaIndex, split: str):
        for vid in ids:
            path = media.find(vid)
            if path is None:
                self.report.skip(split, vid, decode_lib.MISSING, media.missing_detail(vid))
                continue
            caps = captions.get(vid, [])
            cap_1k = test.get(vid) or (caps[0] if caps else "")
            if not caps and not cap_1k:
                self.report.skip(split, vid, base.EMPTY_CAPTION, "no usable caption")
                continue
            ex = self.encode_clip_file(path, split, vid)
            if ex is None:
                continue
            ex.update({"video_id": vid, "caption": caps or [cap_1k], "caption_1k": cap_1k})
            if split == "train":
                self.add_training_captions(caps)
            self.report.ok(split)
            yield vid, ex
