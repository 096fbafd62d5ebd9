"""Shared parts of the vatt tfds builders: media config, build report, common features.

Every builder reads a user's local copy (`dl_manager.manual_dir`); nothing is downloaded. Bad
inputs never stop a build: each is skipped (or padded) and recorded in a `BuildReport`, which is
printed at the end of the build and saved as `build_summary.json` next to the data. Builders
that have captions also save the word vocabulary of their training captions as `vocab.txt`.

Media files are found by name without extension (`index_media`): whether a file is readable
media is FFmpeg's to decide when it is decoded, so a `.mpg`, a `.ts`, a transcoded copy or a
file with no extension is found, and a file that is there but cannot be read is reported with
the decoder's reason (`corrupt_file`, `no_video_stream`, `unsupported_codec`, ...), never as
`missing_file`. Only metadata, subtitle, image and partial-download files are never taken.
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
AUDIO_EMPTY = "audio_track_empty_zero_filled"  # a track whose packets gave no samples
AUDIO_UNSUPPORTED = "audio_codec_unsupported_zero_filled"  # no decoder for it in this FFmpeg
AUDIO_PADDED = "audio_shorter_zero_padded"
SHORT_CLIP = "shorter_than_clip_kept"
# Why a clip's audio is zeros, by decode.Clip.audio_status.
_ZERO_AUDIO_REASONS = {decode_lib.AUDIO_ABSENT: NO_AUDIO, decode_lib.AUDIO_EMPTY: AUDIO_EMPTY,
                       decode_lib.AUDIO_UNSUPPORTED: AUDIO_UNSUPPORTED}


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

    def pad(self, split: str, item: str, reason: str, detail: str = "") -> None:
        self.padded[split][reason] += 1
        it = {"split": split, "item": item, "action": "kept", "reason": reason}
        if detail:
            it["detail"] = detail[:200]
        self.items.append(it)

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

    def encode_clip_file(self, path: str | None, split: str, item: str) -> dict | None:
        """Decodes a whole clip file (at most `clip_seconds`) into example fields, or records it
        as skipped (`missing_file` when `path` is None, else the decoder's reason) and returns
        None. A file shorter than `clip_seconds` is kept and reported (`SHORT_CLIP`)."""
        if path is None:
            self.report.skip(split, item, decode_lib.MISSING)
            return None
        seconds = self.builder_config.clip_seconds
        try:
            clip = self.decode(path, end=seconds or None)
        except decode_lib.DecodeError as e:
            self.report.skip(split, item, e.reason, e.detail)
            return None
        self.check_length(clip, seconds, split, item)
        return self.encode_media(clip, split, item)

    def check_length(self, clip: decode_lib.Clip, seconds: float, split: str, item: str) -> None:
        """Reports a clip with fewer frames than a `seconds` window holds (0: no window)."""
        want = int(seconds * self.builder_config.fps + 1e-6)
        if seconds > 0 and clip.frames is not None and clip.frames.shape[0] < want:
            self.report.pad(split, item, SHORT_CLIP, f"{clip.frames.shape[0]} of {want} frames")

    def encode_media(self, clip: decode_lib.Clip, split: str, item: str) -> dict:
        """Example fields for a decoded clip; records zero-filled / padded audio in the report."""
        out = {"audio": clip.audio, "has_audio": bool(clip.has_audio)}
        if clip.frames is not None:
            out["video"] = decode_lib.encode_jpeg(clip.frames, self.builder_config.jpeg_quality)
        if not clip.has_audio:
            self.report.pad(split, item, _ZERO_AUDIO_REASONS.get(clip.audio_status, NO_AUDIO))
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


# Extensions of media containers: preferred when several files share a stem (a video next to
# its .jpg thumbnail and .en.vtt subtitles, as youtube-dl leaves them).
VIDEO_EXTS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".mpe",
              ".m1v", ".m2v", ".vob", ".ts", ".mts", ".m2ts", ".m2t", ".tp", ".trp", ".3gp",
              ".3g2", ".wmv", ".asf", ".ogv", ".ogm", ".mxf", ".dv", ".divx", ".xvid", ".f4v",
              ".rm", ".rmvb", ".nut", ".y4m", ".h264", ".264", ".hevc", ".mj2", ".qt")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".mka",
              ".aif", ".aiff", ".aifc", ".au", ".snd", ".mp2", ".ac3", ".amr", ".caf", ".w64",
              ".wv", ".ape", ".spx")
# Never media, whatever FFmpeg would make of them: metadata, subtitles, images (a thumbnail
# would decode as a one-frame video), archives and partial downloads.
NON_MEDIA_EXTS = frozenset((
    ".json", ".csv", ".tsv", ".txt", ".md", ".xml", ".html", ".htm", ".yaml", ".yml", ".log",
    ".ini", ".py", ".pkl", ".npy", ".npz", ".tfrecord", ".parquet", ".srt", ".vtt", ".ass",
    ".ssa", ".sub", ".idx", ".sbv", ".lrc", ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif",
    ".tiff", ".gif", ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".part",
    ".ytdl", ".tmp", ".crdownload", ".pdf", ".nfo", ".sfv", ".md5", ".sha1", ".sha256", ".lock",
    ".ds_store"))


@dataclasses.dataclass
class MediaIndex:
    """Media files under a folder by lower-cased key (the file's stem, or its path relative to
    the folder without extension), whatever their extension: which files FFmpeg can read is
    FFmpeg's to decide when they are decoded, not the file name's."""

    entries: dict[str, list[tuple[int, str, str]]]  # key -> [(rank, exact key, path)]
    others: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # key -> non-media paths

    def missing_detail(self, key: str) -> str:
        """What is there instead of a media file for `key` (for a `missing_file` report)."""
        near = self.others.get(key.lower())
        return f"no media file, only: {', '.join(os.path.basename(p) for p in near[:3])}" if near else ""

    def find(self, key: str, prefer_ext: str = "") -> str | None:
        """The file for `key`: one with extension `prefer_ext` (what a file list names) first,
        then a known media extension before an unknown one, the exact-case key before another
        case (YouTube ids are case-sensitive), then the first path in order."""
        cands = self.entries.get(key.lower())
        if not cands:
            return None
        prefer_ext = prefer_ext.lower()
        return min(cands, key=lambda c: (not (prefer_ext and c[2].lower().endswith(prefer_ext)),
                                         c[0], c[1] != key, c[2]))[2]

    def __len__(self) -> int:
        return len(self.entries)


def _rank(ext: str) -> int | None:
    """0: a known media extension, 1: anything else FFmpeg may read, None: never media."""
    ext = ext.lower()
    if ext in VIDEO_EXTS or ext in AUDIO_EXTS:
        return 0
    return None if ext in NON_MEDIA_EXTS else 1


def index_media(root: str, relative: bool = False) -> MediaIndex:
    """All candidate media files under `root`, by stem (`relative`: by "dir/stem" relative to
    `root`, "/"-separated). Folders are walked in sorted order, so the choice among files with
    the same key does not depend on the file system's listing order."""
    entries: dict[str, list[tuple[int, str, str]]] = collections.defaultdict(list)
    others: dict[str, list[str]] = collections.defaultdict(list)
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for fn in sorted(files):
            if fn.startswith("."):
                continue  # hidden files: macOS "._x.mp4" resource forks, editor droppings
            stem, ext = os.path.splitext(fn)
            path = os.path.join(dirpath, fn)
            key = os.path.relpath(os.path.join(dirpath, stem), root).replace(os.sep, "/") if relative else stem
            rank = _rank(ext)
            if rank is None:
                # "<id>.mp4.part" is no media file for "<id>" but worth naming when it is missing.
                for k in {key.lower(), os.path.splitext(key)[0].lower()}:
                    others[k].append(path)
                continue
            entries[key.lower()].append((rank, key, path))
    return MediaIndex(dict(entries), dict(others))
