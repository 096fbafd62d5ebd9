"""Shared parts of the vatt tfds builders: media config, build report, common features.

Every builder reads a user's local copy (`dl_manager.manual_dir`); nothing is downloaded. Bad
inputs never stop a build: each is skipped (or padded) and recorded in a `BuildReport`, which is
printed at the end of the build and saved as `build_summary.json` next to the data. Builders
that have captions also save the word vocabulary of their training captions as `vocab.txt`.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import json
import os
from typing import Any

import numpy as np
from etils import epath
import tensorflow_datasets as tfds

from vatt.data import decode as decode_lib
from vatt.data import tokenizer as tok

SUMMARY_FILENAME = "build_summary.json"
BAD_ROW = "bad_row"
EMPTY_CAPTION = "empty_caption"
NON_UTF8_CAPTION = "non_utf8_caption"
NO_AUDIO = "no_audio_track_zero_filled"
AUDIO_PADDED = "audio_shorter_zero_padded"
SHORT_CLIP = "shorter_than_clip_kept"


@dataclasses.dataclass(eq=False)
class MediaConfig(tfds.core.BuilderConfig):
    """How media is stored.

    fps: frames per second kept (frames are JPEG-encoded, as DMVR stores them).
    short_side: frames resized so the shorter side has this many pixels (aspect kept).
    sample_rate: audio stored as a float32 mono waveform at this rate.
    clip_seconds: length of a stored clip (HowTo100M window around a caption; AudioSet/UCF/MSR-VTT
      keep at most this many seconds from the start, 0 = whole file).
    num_captions: K neighbouring captions stored with each HowTo100M clip (MIL-NCE candidates).
    vocab_size: word vocabulary size (pad 0, unk 1 included).
    jpeg_quality: JPEG quality of stored frames.
    """

    fps: float = 10.0
    short_side: int = 256
    sample_rate: int = 48000
    clip_seconds: float = 0.0
    num_captions: int = 8
    vocab_size: int = tok.DEFAULT_VOCAB_SIZE
    jpeg_quality: int = 90


def standard_configs(clip_seconds: float, tiny_clip_seconds: float | None = None) -> list[MediaConfig]:
    """`default`: 10 fps, 256 px, 48 kHz (VATT); `small`: 10 fps, 128 px, 16 kHz;
    `tiny`: 5 fps, 32 px, 8 kHz (tests and notebooks)."""
    return [
        MediaConfig(name="default", description="10 fps, short side 256, 48 kHz (VATT).",
                    fps=10.0, short_side=256, sample_rate=48000, clip_seconds=clip_seconds),
        MediaConfig(name="small", description="10 fps, short side 128, 16 kHz.",
                    fps=10.0, short_side=128, sample_rate=16000, clip_seconds=clip_seconds),
        MediaConfig(name="tiny", description="5 fps, short side 32, 8 kHz (tests).",
                    fps=5.0, short_side=32, sample_rate=8000,
                    clip_seconds=clip_seconds if tiny_clip_seconds is None else tiny_clip_seconds,
                    num_captions=4),
    ]


class BuildReport:
    """Counts of written / skipped / padded items per split, with the offending files."""

    def __init__(self) -> None:
        self.written: collections.Counter = collections.Counter()
        self.skipped: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.padded: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.items: list[dict[str, str]] = []

    def ok(self, split: str) -> None:
        self.written[split] += 1

    def skip(self, split: str, item: str, reason: str, detail: str = "") -> None:
        self.skipped[split][reason] += 1
        self.items.append({"split": split, "item": item, "action": "skipped", "reason": reason,
                           "detail": detail[:200]})

    def pad(self, split: str, item: str, reason: str) -> None:
        self.padded[split][reason] += 1
        self.items.append({"split": split, "item": item, "action": "kept", "reason": reason})

    def to_json(self) -> dict[str, Any]:
        return {"written": dict(self.written),
                "skipped": {k: dict(v) for k, v in self.skipped.items()},
                "kept_with_fix": {k: dict(v) for k, v in self.padded.items()},
                "items": self.items}

    def format(self, name: str) -> str:
        lines = [f"Build summary for {name}:"]
        for split in sorted(set(self.written) | set(self.skipped) | set(self.padded)):
            sk = sum(self.skipped[split].values())
            lines.append(f"  {split}: {self.written[split]} written, {sk} skipped"
                         + (f" ({dict(self.skipped[split])})" if sk else "")
                         + (f", kept with fix: {dict(self.padded[split])}" if self.padded[split] else ""))
        for it in self.items:
            lines.append(f"    [{it['action']}] {it['split']}: {it['item']}: {it['reason']}")
        return "\n".join(lines)


def video_features(cfg: MediaConfig) -> dict:
    return {
        "video": tfds.features.Video(shape=(None, None, None, 3), encoding_format="jpeg"),
        "audio": tfds.features.Audio(shape=(None,), dtype=np.float32, sample_rate=cfg.sample_rate),
        "has_audio": np.bool_,
        "video_id": tfds.features.Text(),
    }


def load_text(path: str) -> tuple[str, bool]:
    """File content decoded as UTF-8; the flag is False when invalid bytes had to be escaped."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="surrogateescape"), False


def clean_caption(text: Any) -> tuple[str | None, str | None]:
    """(caption, None) for a usable caption or (None, reason) for an empty / non-UTF-8 / bad one."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return None, NON_UTF8_CAPTION
    if not isinstance(text, str):
        return None, BAD_ROW
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped invalid bytes
        return None, NON_UTF8_CAPTION
    text = " ".join(text.split())
    if not text:
        return None, EMPTY_CAPTION
    return text, None


class VattBuilder(tfds.core.GeneratorBasedBuilder):
    """Base: a manual-dir builder that writes a build summary (and a vocabulary) after building.

    Subclasses implement `_info`, `_split_generators` and call `self.report.*` for every item.
    Captions added with `self.add_training_captions` make up the vocabulary.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # tfds' default probes `importlib_resources`, a package it does not declare (missing in a
        # plain install); the file of the class is what it computes anyway.
        return epath.Path(inspect.getfile(cls))

    def _generate_examples(self, examples):
        # tfds requires this method; our builders build each split's generator in
        # `_split_generators` and return it directly, so this only passes examples through.
        yield from examples

    @property
    def report(self) -> BuildReport:
        if getattr(self, "_report", None) is None:
            self._report = BuildReport()
        return self._report

    def add_training_captions(self, captions: list[str]) -> None:
        if getattr(self, "_word_counts", None) is None:
            self._word_counts = collections.Counter()
        self._word_counts.update(w for c in captions for w in tok.words(c))

    def decode(self, path: str, **kw) -> decode_lib.Clip:
        cfg = self.builder_config
        kw.setdefault("fps", cfg.fps)
        kw.setdefault("short_side", cfg.short_side)
        kw.setdefault("sample_rate", cfg.sample_rate)
        return decode_lib.decode_clip(path, **kw)

    def encode_clip_file(self, path: str, split: str, item: str) -> dict | None:
        """Decodes a whole clip file (at most `clip_seconds`) into example fields, or records it
        as skipped with the decoder's reason and returns None."""
        try:
            clip = self.decode(path, end=self.builder_config.clip_seconds or None)
        except decode_lib.DecodeError as e:
            self.report.skip(split, item, e.reason, e.detail)
            return None
        return self.encode_media(clip, split, item)

    def encode_media(self, clip: decode_lib.Clip, split: str, item: str) -> dict:
        """Example fields for a decoded clip; records zero-filled / padded audio in the report."""
        out = {"audio": clip.audio, "has_audio": bool(clip.has_audio)}
        if clip.frames is not None:
            out["video"] = decode_lib.encode_jpeg(clip.frames, self.builder_config.jpeg_quality)
        if not clip.has_audio:
            self.report.pad(split, item, NO_AUDIO)
        elif clip.audio_padded:
            self.report.pad(split, item, AUDIO_PADDED)
        return out

    def _download_and_prepare(self, dl_manager, download_config=None):  # pytype: disable=signature-mismatch
        self._report = BuildReport()
        self._word_counts = collections.Counter()
        super()._download_and_prepare(dl_manager, download_config=download_config)
        # self.data_dir is the temporary build directory here; tfds renames it when done.
        summary = self.report.to_json()
        summary["config"] = {k: getattr(self.builder_config, k) for k in
                             ("name", "fps", "short_side", "sample_rate", "clip_seconds", "num_captions")}
        if self._word_counts:
            vocab = tok.build_vocab(self._word_counts, self.builder_config.vocab_size)
            tok.save_vocab(os.path.join(self.data_dir, tok.VOCAB_FILENAME), vocab)
            summary["vocab_size"] = len(vocab)
        with open(os.path.join(self.data_dir, SUMMARY_FILENAME), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
        print(self.report.format(self.info.full_name), flush=True)


def read_summary(data_path: str) -> dict:
    """The `build_summary.json` of a built dataset directory (`builder.data_dir`)."""
    with open(os.path.join(data_path, SUMMARY_FILENAME), encoding="utf-8") as f:
        return json.load(f)


def index_media(root: str, exts: tuple[str, ...]) -> dict[str, str]:
    """Map lower-cased file stem -> path for all files under `root` with one of `exts`."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for fn in files:
            stem, ext = os.path.splitext(fn)
            if ext.lower() in exts:
                out.setdefault(stem.lower(), os.path.join(dirpath, fn))
    return out


VIDEO_EXTS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".flv")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
