"""Input pipeline: built datasets -> per-host numpy batches in the vatt batch format.

  from vatt.data import pipeline
  cfg = pipeline.default_config(); cfg.name = "howto100m/default"; cfg.data_dir = "/data/tfds"
  it = pipeline.make_iterator(cfg, global_batch_size=256, training=True, seed=0,
                              process_index=jax.process_index(), process_count=jax.process_count())
  batch = next(it)   # video [b,T,H,W,3] in [-1,1], audio [b,S], text [b,K,L], text_mask [b,K]
  state = it.get_state()   # JSON-able; it.set_state(state) resumes exactly

b = global_batch_size / process_count: each host reads, by index from the ArrayRecord files,
only its slice of every global batch. Training streams are infinite and stateless: the example
at global position g and its augmentation are a pure function of (seed, epoch, g)
(vatt.data.positions: a weighted interleave of the mixture, a per-epoch index shuffle of each
source, augmentation seeded by (seed, source, epoch, position in epoch)). The state is therefore
one number, the global positions consumed ({"position": step * global batch}); resuming reads
nothing it does not train on, on any number of hosts. Evaluation makes one pass over contiguous
host shares, pads the last batches with zeros and adds `valid` [b] (1 = real example); every host
yields the same number of batches.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterator

import ml_collections
import numpy as np
import tensorflow as tf

from vatt.data import positions
from vatt.data import sources as src_lib
from vatt.data import tokenizer as tok
from vatt.data import transforms as T
from vatt.data.pipeline_config import default_config  # noqa: F401 (re-exported)
from vatt.data.tf_setup import hide_accelerators

STATE_VERSION = 2


def _sources(cfg: ml_collections.ConfigDict) -> list[src_lib.Source]:
    specs = src_lib.parse_mixture(cfg.mixture) if cfg.mixture else [(cfg.name, cfg.split, 1.0)]
    out = []
    for name, split, w in specs:
        if name.startswith("dmvr:"):
            out.append(src_lib.dmvr_source(name[5:], w, cfg.dmvr_fps, cfg.dmvr_sample_rate,
                                           num_classes=cfg.dmvr_num_classes))
        else:
            out.append(src_lib.tfds_source(name, split, w, cfg.data_dir, cfg.caption_key))
    return out


def _modalities(cfg, sources: list[src_lib.Source]) -> set[str]:
    if cfg.modalities != "auto":
        mods = {m.strip() for m in cfg.modalities.split(",") if m.strip()}
    else:
        mods = set()
        if all(s.has_video for s in sources):
            mods.add("video")
        if all(s.has_audio for s in sources):
            mods.add("audio")
        if any(s.caption_key for s in sources):
            mods.add("text")
        if len(sources) == 1 and sources[0].label_kind:
            mods.add("label")
    for s in sources:
        if "video" in mods and not s.has_video:
            raise ValueError(f"config.data.modalities asks for video but {s.name} has none; drop 'video'.")
        if "audio" in mods and not s.has_audio:
            raise ValueError(f"config.data.modalities asks for audio but {s.name} has none; drop 'audio'.")
    return mods


class _Processor:
    """Builds the per-example transform of one source (same output structure for all sources)."""

    def __init__(self, cfg, source: src_lib.Source, mods: set[str], training: bool, tokenizer,
                 num_classes: int):
        self.cfg, self.s, self.mods, self.training = cfg, source, mods, training
        self.tokenizer, self.num_classes = tokenizer, num_classes
        self.stride = source.fps / cfg.target_fps
        self.span = T.span(cfg.num_frames, self.stride)
        self.samples = cfg.audio_samples or int(round(cfg.num_frames / cfg.target_fps * source.sample_rate))
        self.views = 1 if training else cfg.eval_num_clips * cfg.eval_num_crops

    def __call__(self, ex: dict, seed: tf.Tensor) -> dict:
        cfg = self.cfg
        s_time, s_crop, s_flip, s_col, s_noise = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
        out = {}
        if self.s.has_video:
            enc = ex["video"]
            n = tf.shape(enc)[0]
            if self.training:
                starts = T.random_start(n, self.span, s_time)[None]
            else:
                starts = T.even_starts(n, self.span, cfg.eval_num_clips)
            audio_starts = tf.cast(tf.round(tf.cast(starts, tf.float32) / self.s.fps * self.s.sample_rate), tf.int32)
        else:  # audio-only: windows over the waveform
            length = tf.shape(ex["audio"])[0]
            if self.training:
                hi = tf.maximum(length - self.samples, 0) + 1
                audio_starts = tf.random.stateless_uniform([1], s_time, 0, hi, dtype=tf.int32)
            else:
                audio_starts = T.even_starts(length, self.samples, cfg.eval_num_clips)
        if "video" in self.mods:
            out["video"] = self._video(enc, starts, s_crop, s_flip, s_col)
        if "audio" in self.mods:
            waves = [T.audio_window(ex["audio"], audio_starts[i], self.samples)
                     for i in range(1 if self.training else cfg.eval_num_clips)]
            if not self.training and self.s.has_video:  # one audio window per clip, repeated per crop
                waves = [w for w in waves for _ in range(cfg.eval_num_crops)]
            audio = tf.stack(waves)
            if self.training and cfg.audio_noise > 0:
                std = cfg.audio_noise
                if cfg.get("audio_noise_scale", "absolute") == "peak":
                    std = std * tf.reduce_max(tf.abs(audio))
                audio = T.add_noise(audio, s_noise, std)
            out["audio"] = audio[0] if audio.shape[0] == 1 else audio
        if "text" in self.mods:
            if self.s.caption_key:
                cap = ex[self.s.caption_key]
                cap = tf.reshape(cap, [-1])
                out["text"], out["text_mask"] = T.captions_to_ids(cap, self.tokenizer, cfg.num_captions)
            else:  # e.g. AudioSet in a pretraining mixture: no caption, fully masked
                out["text"] = tf.zeros([cfg.num_captions, cfg.max_text_len], tf.int32)
                out["text_mask"] = tf.zeros([cfg.num_captions], tf.float32)
        if "label" in self.mods:
            if self.s.label_kind == "single":
                out["label"] = tf.cast(ex["label"], tf.int32)
            elif self.s.label_kind == "multi":
                out["labels"] = tf.reduce_max(tf.one_hot(ex["labels"], self.num_classes), axis=0)
        return out

    def _video(self, enc, starts, s_crop, s_flip, s_col) -> tf.Tensor:
        cfg = self.cfg
        shape3 = tf.io.extract_jpeg_shape(enc[0])  # [h, w, c] of the stored frames
        shape = shape3[:2]
        n = tf.shape(enc)[0]
        size = cfg.frame_size
        if self.training:
            if cfg.crop == "inception":
                window = T.inception_window(shape3, s_crop, area=(cfg.min_area, 1.0))
            elif cfg.crop == "vgg":
                window = T.vgg_window(shape, s_crop, size, tuple(cfg.vgg_resize))
            else:
                raise ValueError(f"config.data.crop must be 'inception' or 'vgg', got {cfg.crop!r}")
            idx = T.frame_indices(n, starts[0], cfg.num_frames, self.stride)
            # The flip is applied to the small uint8 crops, before the resize (T.decode_window).
            flip = T.flip_draw(s_flip) if cfg.flip else None
            frames = T.decode_window(tf.gather(enc, idx), window, size, flip)
            prob = cfg.get("color_jitter_prob", 1.0) if cfg.color_jitter > 0 else 0.0
            if prob >= 1.0:  # jitter and the map to [-1, 1] in one pass
                frames = T.colour_jitter(frames, s_col, cfg.color_jitter, signed=True)
            elif prob > 0.0:
                # The draw uses a seed folded from the jitter's, so the jitter itself (when
                # applied) is the one prob=1 gives.
                apply = tf.random.stateless_uniform([], T.fold_in(s_col, 0x0B)) < prob
                frames = tf.cond(apply,
                                 lambda: T.colour_jitter(frames, s_col, cfg.color_jitter, signed=True),
                                 lambda: frames * 2.0 - 1.0)
            else:
                frames = frames * 2.0 - 1.0
            return tf.ensure_shape(frames, [cfg.num_frames, size, size, 3])
        windows = T.centre_windows(shape, cfg.eval_num_crops, cfg.eval_crop_fraction)
        views = []
        for c in range(cfg.eval_num_clips):
            sel = tf.gather(enc, T.frame_indices(n, starts[c], cfg.num_frames, self.stride))
            for r in range(cfg.eval_num_crops):
                views.append(T.decode_window(sel, windows[r], size) * 2.0 - 1.0)
        video = tf.stack(views)
        video = tf.ensure_shape(video, [self.views, cfg.num_frames, size, size, 3])
        return video[0] if self.views == 1 else video


def _element_seed(seed: int, src: int, epoch, position) -> tf.Tensor:
    """[2] int64 seed of one example's augmentation: (run seed, source, epoch, in-epoch position)."""
    s = tf.constant([seed, 0x5EED], tf.int64)
    s = T.fold_in(s, src)
    s = T.fold_in(s, epoch)
    return T.fold_in(s, position)


class DataIterator:
    """Iterator of numpy batches with a JSON-able position (`get_state` / `set_state`).

    Training state: {"version", "kind": "train", "seed", "position"}: global positions consumed
    (step * global batch); evaluation state: {"version", "kind": "eval", "batches"}.
    """

    def __init__(self, make_dataset, state: dict, training: bool, num_batches: int | None,
                 global_batch_size: int):
        self._make = make_dataset
        self._state = state
        self._training = training
        self._global_batch_size = global_batch_size
        self._it: Iterator | None = None
        self.num_batches = num_batches  # evaluation: batches per host (same on every host)

    def __iter__(self):
        return self

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("a training iterator is infinite")
        return self.num_batches

    def __next__(self) -> dict[str, np.ndarray]:
        if self._it is None:
            self._it = self._make(self._state).as_numpy_iterator()
        batch = next(self._it)
        if self._training:
            self._state["position"] += self._global_batch_size
        else:
            self._state["batches"] += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return copy.deepcopy(self._state)

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") == 1:
            raise ValueError(
                "this checkpoint's data position was saved by the sequential tf.data reader "
                "(iterator state version 1), whose stream order the random-access reader does not "
                "reproduce: finish that run with the vatt version that started it, or start a new "
                "run with --config.init_from=<its checkpoint> to keep its weights")
        if state.get("version") != STATE_VERSION or state.get("kind") != self._state["kind"]:
            raise ValueError(f"iterator state {state} does not match this pipeline "
                             f"(version {STATE_VERSION}, {self._state['kind']})")
        self._state = copy.deepcopy(state)
        self._it = None


def _read_records(sources: list[src_lib.Source]):
    """(source ids [n], example indices [n]) -> serialized records [n], one batched read per source."""
    def read(source_ids: np.ndarray, examples: np.ndarray) -> np.ndarray:
        out = np.empty(source_ids.shape[0], object)
        for s in np.unique(source_ids):
            sel = np.nonzero(source_ids == s)[0]
            out[sel] = list(sources[int(s)].read(examples[sel]))
        return out
    return read


def _with_records(read, n: int):
    def add(d: dict) -> dict:
        records = tf.numpy_function(read, [d["source"], d["example"]], tf.string, stateful=False)
        return {**d, "record": tf.ensure_shape(records, [n])}
    return add


def make_iterator(
    config: ml_collections.ConfigDict,
    *,
    global_batch_size: int,
    training: bool,
    seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    state: dict | None = None,
) -> DataIterator:
    """Per-host iterator over batches of `global_batch_size // process_count` examples.

    Batch keys (present when the sources have them / config.modalities asks):
      video float32 [b, T, H, W, 3] in [-1, 1]   (eval with V = clips*crops > 1: [b, V, T, H, W, 3])
      audio float32 [b, S]                       (eval with V > 1: [b, V, S])
      text int32 [b, K, L], text_mask float32 [b, K]
      label int32 [b] (single-label sources), labels float32 [b, C] multi-hot (AudioSet)
      valid float32 [b] (evaluation only: 0 for padding)

    Training: host `process_index` reads its slice of every global batch; which example fills each
    global position (and its augmentation) is vatt.data.positions' pure function of (seed, epoch,
    position), so a resumed or re-sharded run reads exactly what it trains on. Decoding runs in
    tf.data's parallel map: TensorFlow kernels on a C++ thread pool, without the GIL.
    """
    hide_accelerators()
    cfg = config
    if global_batch_size % process_count:
        raise ValueError(f"global_batch_size={global_batch_size} is not divisible by process_count={process_count}")
    b = global_batch_size // process_count
    sources = _sources(cfg)
    empty = [s.name for s in sources if s.num_examples == 0]
    if empty:
        raise ValueError(f"{empty[0]} has no examples; check its build summary (build_summary.json)")
    mods = _modalities(cfg, sources)
    if not training and len(sources) > 1:
        raise ValueError("evaluation reads one dataset; set config.data.mixture = ''")
    tokenizer = None
    if "text" in mods:
        path = cfg.vocab_path or next((s.vocab_path for s in sources if s.vocab_path), None)
        if not path:
            raise ValueError("No vocabulary: set config.data.vocab_path to a vocab.txt "
                             "(built datasets with captions store one next to their data), or "
                             "with config.data.tokenizer='dmvr' to the official howto100m_en.txt.")
        tokenizer = tok.tf_tokenizer(path, cfg.get("tokenizer", "words"), cfg.max_text_len,
                                     cfg.get("prepend_bos", False), cfg.get("append_eos", False))
    num_classes = max([s.num_classes for s in sources] + [0])
    procs = [_Processor(cfg, s, mods, training, tokenizer, num_classes) for s in sources]
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_optimization.map_parallelization = True
    read = _read_records(sources)

    if training:
        init = {"version": STATE_VERSION, "kind": "train", "seed": int(seed), "position": 0}
        plan = positions.mixture_plan([s.weight for s in sources])
        sizes = [s.num_examples for s in sources]

        def make(st: dict) -> tf.data.Dataset:
            run_seed, start = int(st["seed"]), int(st["position"])

            def host_batch(k):
                first = positions.host_slice(k, start, global_batch_size, b, process_index)
                return positions.training_positions(first, b, run_seed, plan, sizes)

            def process(d):
                def branch(si):
                    return lambda: procs[si](sources[si].parse(d["record"]),
                                             _element_seed(run_seed, si, d["epoch"], d["position"]))
                if len(sources) == 1:
                    return branch(0)()
                return tf.switch_case(tf.cast(d["source"], tf.int32), [branch(si) for si in range(len(sources))])

            ds = tf.data.Dataset.range(2**62).map(host_batch).map(_with_records(read, b)).unbatch()
            ds = ds.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            ds = ds.batch(b, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
            return ds.with_options(options)

        it = DataIterator(make, init, True, None, global_batch_size)
    else:
        s, proc = sources[0], procs[0]
        begin, end = positions.eval_share(s.num_examples, process_index, process_count)
        num_batches = math.ceil(math.ceil(s.num_examples / process_count) / b)
        init = {"version": STATE_VERSION, "kind": "eval", "batches": 0}

        def host_batch(k):
            idx = begin + k * b + tf.range(b, dtype=tf.int64)
            return {"source": tf.zeros([b], tf.int64), "example": tf.minimum(idx, s.num_examples - 1),
                    "valid": idx < end}

        def process(d):
            out = proc(s.parse(d["record"]), _element_seed(seed, 0, 0, d["example"]))
            valid = tf.cast(d["valid"], tf.float32)
            # Padding rows (past this host's share) are all zeros, as the evaluators expect.
            out = {k: v * tf.cast(valid, v.dtype) for k, v in out.items()}
            out["valid"] = valid
            return out

        def make(st: dict) -> tf.data.Dataset:
            ds = tf.data.Dataset.range(st["batches"], num_batches).map(host_batch)
            ds = ds.map(_with_records(read, b)).unbatch()
            ds = ds.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            ds = ds.batch(b, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
            return ds.with_options(options)

        it = DataIterator(make, init, False, num_batches, global_batch_size)
    if state is not None:
        it.set_state(state)
    return it
