"""HowTo100M from a local copy: clips cut around ASR caption timestamps, with K neighbour captions.

Layout (manual_dir): `caption.json` ({video_id: {"text": [...], "start": [...], "end": [...]}},
seconds) and the videos anywhere below manual_dir as `<video_id>.<any extension>` (mp4, webm,
mkv, mpg, ts, ...: FFmpeg reads the content, whatever the name says; see `base.index_media`).

Clips: captions of a video are visited in time order; a caption whose window (clip_seconds
centred on the caption, moved inside the video) does not overlap the previous clip's window starts
a new clip; `end` is where its frames end (earlier than start + clip_seconds in a short video). Each clip stores the K captions nearest to its centre caption (the centre caption
first, then by distance of their centres), their start/end times relative to the clip start.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow_datasets as tfds

from vatt.data import decode as decode_lib
from vatt.data.builders import base


class Howto100m(base.VattBuilder):
    """HowTo100M video + audio + narration clips for MIL-NCE pretraining."""

    BUILDER_CONFIGS = base.standard_configs(clip_seconds=8.0, tiny_clip_seconds=3.0)
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Place `caption.json` and the videos (`<video_id>.mp4`, `.webm`, `.mpg`, ... in any
  sub-folder) in manual_dir. Nothing is downloaded.
  """

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        feats = base.video_features(cfg)
        feats.update({
            "start": np.float32,
            "end": np.float32,
            "caption": tfds.features.Sequence(tfds.features.Text()),
            "caption_start": tfds.features.Sequence(np.float32),
            "caption_end": tfds.features.Sequence(np.float32),
        })
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(feats),
            homepage="https://www.di.ens.fr/willow/research/howto100m/",
            description="HowTo100M clips around narration, with K neighbouring captions (MIL-NCE).",
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate(os.fspath(dl_manager.manual_dir), "train")}

    def _load_captions(self, root: str, split: str) -> dict:
        path = os.path.join(root, "caption.json")
        text, _ = base.load_text(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); nothing can be built from it") from None
        return data

    def _clip_windows(self, vid: str, entry, duration: float, split: str) -> list[dict]:
        cfg = self.builder_config
        if not isinstance(entry, dict) or not all(k in entry for k in ("text", "start", "end")):
            self.report.skip(split, vid, base.BAD_ROW, "caption entry needs text/start/end lists")
            return [], []
        caps = []
        for i, (t, s, e) in enumerate(zip(entry["text"], entry["start"], entry["end"])):
            text, why = base.clean_caption(t)
            try:
                s, e = float(s), float(e)
            except (TypeError, ValueError):
                why = why or base.BAD_ROW
            if why:
                self.report.skip(split, f"{vid}#caption{i}", why)
                continue
            caps.append((s, max(e, s), text))
        caps.sort(key=lambda c: c[0])
        length = cfg.clip_seconds if cfg.clip_seconds > 0 else max(duration, 1e-3)
        clips, last_end = [], -1.0
        for s, e, text in caps:
            centre = 0.5 * (s + e)
            start = min(max(0.0, centre - length / 2), max(0.0, duration - length))
            # Not clamped to `duration`: containers estimate it (MPEG-PS/TS from timestamps, a
            # frame short at times); the decoder stops where the frames do, and a clip shorter
            # than the window is reported (SHORT_CLIP).
            end = start + length
            if start < last_end - 1e-6:
                continue
            order = sorted(caps, key=lambda c: (abs(0.5 * (c[0] + c[1]) - centre), c[0]))[: cfg.num_captions]
            clips.append({"start": start, "end": end, "captions": order})
            last_end = end
        return clips, [c[2] for c in caps]

    def _generate(self, root: str, split: str):
        captions = self._load_captions(root, split)
        media = base.index_media(root)
        for vid in sorted(captions):
            if not isinstance(captions[vid], dict):
                self.report.skip(split, vid, base.BAD_ROW, "caption entry is not an object")
                continue
            path = media.find(vid)
            if path is None:
                self.report.skip(split, vid, decode_lib.MISSING, media.missing_detail(vid))
                continue
            try:
                duration = decode_lib.probe_duration(path)
            except decode_lib.DecodeError as e:
                self.report.skip(split, vid, e.reason, e.detail)
                continue
            clips, all_texts = self._clip_windows(vid, captions[vid], duration, split)
            counted = False
            for ci, clip in enumerate(clips):
                item = f"{vid}@{clip['start']:.2f}"
                try:
                    decoded = self.decode(path, start=clip["start"], end=clip["end"])
                except decode_lib.DecodeError as e:
                    self.report.skip(split, item, e.reason, e.detail)
                    continue
                ex = self.encode_media(decoded, split, item)
                # Against the configured window, not the window clamped to the video: a video
                # shorter than clip_seconds gives a short clip, and that is reported.
                self.check_length(decoded, self.builder_config.clip_seconds or clip["end"] - clip["start"],
                                  split, item)
                texts = [c[2] for c in clip["captions"]]
                ex.update({
                    "video_id": vid,
                    "start": clip["start"],
                    "end": clip["start"] + decoded.frames.shape[0] / self.builder_config.fps,
                    "caption": texts,
                    "caption_start": [c[0] - clip["start"] for c in clip["captions"]],
                    "caption_end": [c[1] - clip["start"] for c in clip["captions"]],
                })
                if not counted:  # every caption of a video with at least one written clip, once
                    self.add_training_captions(all_texts)
                    counted = True
                self.report.ok(split)
                yield f"{vid}/{ci}", ex
