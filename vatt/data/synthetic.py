"""The embedded synthetic world: video, audio and captions that share latent factors.

Every clip shows one object on a noisy background. Five latent factors drive all
three modalities, each modality seeing some of them:

| factor    | values | video                  | audio                         | caption |
|-----------|--------|------------------------|-------------------------------|---------|
| colour    | 8      | object colour          | pitch (fundamental frequency) | yes     |
| shape     | 4      | object shape           | timbre (waveform / harmonics) | yes     |
| size      | 3      | object radius          | loudness                      | yes     |
| direction | 4      | motion direction       | pitch contour (rise/fall/...) | yes     |
| speed     | 2      | pixels per frame       | rhythm (amplitude beats)      | yes     |

That is 8*4*3*4*2 = 768 distinct factor combinations, hence 768 distinct
canonical captions. The held-out evaluation split uses distinct combinations,
one canonical caption per clip (like MSR-VTT 1k-A), so retrieval is well defined.

Nuisance variation (background level and noise, start position, colour
brightness, audio phase, noise and onset) is drawn per clip, so the model must
learn the factors, not memorise clips.

Determinism: an example is a pure function of (seed, split, global index), drawn
from its own Philox stream. A global batch at step s holds indices
[s*B, (s+1)*B) and each host renders only its contiguous share, so the data are
identical on any number of devices or hosts and a resumed run continues exactly
(the stream position is just the step). Only numpy is used: no TensorFlow, no files.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "white")
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "medium", "big")
DIRECTIONS = ("left", "right", "up", "down")
SPEEDS = ("slowly", "quickly")
FACTOR_NAMES = ("colour", "shape", "size", "direction", "speed")
FACTOR_VALUES = (COLOURS, SHAPES, SIZES, DIRECTIONS, SPEEDS)
NUM_COMBINATIONS = int(np.prod([len(v) for v in FACTOR_VALUES]))

_RGB = np.array([
    (1.0, 0.1, 0.1), (0.1, 0.9, 0.1), (0.15, 0.3, 1.0), (1.0, 1.0, 0.1),
    (0.1, 1.0, 1.0), (1.0, 0.1, 1.0), (1.0, 0.55, 0.0), (1.0, 1.0, 1.0)], np.float32)
_RADIUS_FRACTION = (0.12, 0.18, 0.26)        # of the frame side
_SPEED_FRACTION = (0.03, 0.08)               # of the frame side per frame
_DIRECTION_VECTORS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # (dx, dy); y grows downwards
_PITCH_HZ = 200.0 * 1.3 ** np.arange(len(COLOURS))  # 200 Hz .. 1.25 kHz
_LOUDNESS = (0.3, 0.55, 0.8)
_BEATS_HZ = (2.5, 7.5)

# Vocabulary: pad = 0, unknown = 1, then every word any caption template can use.
_TEMPLATE_WORDS = ("a", "the", "an", "object", "thing", "moves", "moving", "goes", "going",
                   "is", "and", "shape", "something", "coloured", "sized", "towards")
VOCAB: tuple[str, ...] = ("<pad>", "<unk>") + tuple(dict.fromkeys(
    _TEMPLATE_WORDS + COLOURS + SHAPES + SIZES + DIRECTIONS + SPEEDS))
WORD_TO_ID = {w: i for i, w in enumerate(VOCAB)}

_SPLIT_CODES = {"train": 0, "eval": 1}


def canonical_caption(factors: tuple[int, ...]) -> str:
    """The one caption used at evaluation: names all five factors."""
    c, s, z, d, v = factors
    return f"a {SIZES[z]} {COLOURS[c]} {SHAPES[s]} moves {DIRECTIONS[d]} {SPEEDS[v]}"


def _candidate_captions(factors: tuple[int, ...], rng: np.random.Generator, k: int) -> list[str]:
    """K captions for a training clip: one names every factor, the rest name subsets.

    Mirrors HowTo100M narration, where neighbouring captions describe the clip
    only partly; MIL-NCE must cope with that.
    """
    c, s, z, d, v = (FACTOR_VALUES[i][f] for i, f in enumerate(factors))
    full = [
        f"a {z} {c} {s} moves {d} {v}",
        f"the {c} {s} is {z} and goes {d} {v}",
        f"{v} moving {d} a {z} {c} {s}",
        f"a {c} {z} {s} going {d} {v}",
    ]
    partial = [
        f"the {c} {s}", f"something {c} moving {d}", f"a {z} {s} goes {v}",
        f"an object moves {d} {v}", f"a {c} thing", f"{z} {c} shape",
        f"the {s} is going {d}", f"something {v} and {z}",
    ]
    captions = [full[rng.integers(len(full))]]
    picks = rng.choice(len(partial), size=max(k - 1, 0), replace=k - 1 > len(partial))
    captions += [partial[i] for i in picks]
    return captions


def tokenize(caption: str, max_len: int) -> np.ndarray:
    """Word ids [max_len], padded with 0 and truncated at max_len; unknown words map to 1."""
    ids = [WORD_TO_ID.get(w, 1) for w in caption.lower().split()][:max_len]
    out = np.zeros((max_len,), np.int32)
    out[:len(ids)] = ids
    return out


def decode_factors(combination: int) -> tuple[int, ...]:
    """Maps a combination index in [0, NUM_COMBINATIONS) to one value index per factor."""
    out = []
    for values in reversed(FACTOR_VALUES):
        combination, r = divmod(combination, len(values))
        out.append(r)
    return tuple(reversed(out))


@dataclasses.dataclass(frozen=True)
class WorldSpec:
    """Shapes of the rendered clips.

    num_frames, frame_size: video [T, H, W, 3]; fps: frames per second of the clip;
    audio_rate: samples per second; the audio window covers exactly the video's
    duration (num_frames / fps seconds), as VATT syncs the two.
    """
    num_frames: int = 8
    frame_size: int = 32
    fps: float = 10.0
    audio_rate: int = 8000
    max_words: int = 12
    num_captions: int = 2
    no_text_fraction: float = 0.1

    @property
    def audio_samples(self) -> int:
        return int(round(self.num_frames / self.fps * self.audio_rate))


def render_video(factors: tuple[int, ...], spec: WorldSpec, rng: np.random.Generator) -> np.ndarray:
    """float32 [T, H, W, 3] in [-1, 1]: the object moving over a noisy background."""
    c, s, z, d, v = factors
    t_len, side = spec.num_frames, spec.frame_size
    radius = _RADIUS_FRACTION[z] * side
    step = _SPEED_FRACTION[v] * side * np.asarray(_DIRECTION_VECTORS[d], np.float32)
    start = rng.uniform(0, side, size=2).astype(np.float32)
    centres = start[None, :] + np.arange(t_len, dtype=np.float32)[:, None] * step[None, :]  # [T, 2]
    coords = np.arange(side, dtype=np.float32) + 0.5
    # Toroidal offsets: the object wraps around the frame edges and never leaves the view.
    dx = (coords[None, None, :] - centres[:, 0, None, None] + side / 2) % side - side / 2  # [T,1,W]
    dy = (coords[None, :, None] - centres[:, 1, None, None] + side / 2) % side - side / 2  # [T,H,1]
    adx, ady = np.abs(dx), np.abs(dy)
    if s == 0:    # circle
        mask = dx ** 2 + dy ** 2 <= radius ** 2
    elif s == 1:  # square
        mask = np.maximum(adx, ady) <= 0.85 * radius
    elif s == 2:  # triangle pointing up
        mask = (dy >= -radius) & (dy <= 0.8 * radius) & (adx <= 0.6 * (dy + radius))
    else:         # cross
        arm = radius / 3
        mask = ((adx <= arm) & (ady <= radius)) | ((ady <= arm) & (adx <= radius))
    background = rng.uniform(0.0, 0.25)
    frames = background + rng.normal(0.0, 0.05, size=(t_len, side, side, 3)).astype(np.float32)
    colour = _RGB[c] * rng.uniform(0.8, 1.0)
    frames = np.where(mask[..., None], colour, frames)
    return np.clip(frames * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)


def render_audio(factors: tuple[int, ...], spec: WorldSpec, rng: np.random.Generator) -> np.ndarray:
    """float32 [S] mono waveform in [-1, 1] carrying colour, shape, size, direction, speed."""
    c, s, z, d, v = factors
    n = spec.audio_samples
    t = np.arange(n, dtype=np.float64) / spec.audio_rate
    duration = n / spec.audio_rate
    f0 = _PITCH_HZ[c]
    # Pitch contour by direction: falling, rising, steady, vibrato.
    if d == 0:
        freq = f0 * (1.0 - 0.15 * t / duration)
    elif d == 1:
        freq = f0 * (1.0 + 0.15 * t / duration)
    elif d == 2:
        freq = np.full_like(t, f0)
    else:
        freq = f0 * (1.0 + 0.04 * np.sin(2 * np.pi * 6.0 * t))
    phase = 2 * np.pi * np.cumsum(freq) / spec.audio_rate + rng.uniform(0, 2 * np.pi)
    if s == 0:    # pure tone
        wave = np.sin(phase)
    elif s == 1:  # square-like: odd harmonics
        wave = sum(np.sin(k * phase) / k for k in (1, 3, 5, 7)) * 0.9
    elif s == 2:  # sawtooth-like: all harmonics
        wave = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4, 5)) * 0.7
    else:         # hollow: fundamental plus a strong octave and twelfth
        wave = 0.6 * np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.4 * np.sin(3 * phase)
    beats = 0.5 * (1 + np.sign(np.sin(2 * np.pi * _BEATS_HZ[v] * t + rng.uniform(0, 2 * np.pi))))
    envelope = 0.15 + 0.85 * beats
    audio = _LOUDNESS[z] * envelope * wave / np.max(np.abs(wave) + 1e-6)
    audio += rng.normal(0.0, 0.02, size=n)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def render_example(factors: tuple[int, ...], spec: WorldSpec, rng: np.random.Generator,
                   with_text: bool, captions: list[str] | None = None) -> dict[str, np.ndarray]:
    """One clip in the batch format of the whole project (without the batch axis)."""
    video = render_video(factors, spec, rng)
    audio = render_audio(factors, spec, rng)
    if captions is None:
        captions = _candidate_captions(factors, rng, spec.num_captions)
    text = np.stack([tokenize(cap, spec.max_words) for cap in captions])
    text_mask = np.full((len(captions),), 1.0 if with_text else 0.0, np.float32)
    if not with_text:
        text = np.zeros_like(text)
    combination = int(np.ravel_multi_index(factors, [len(v) for v in FACTOR_VALUES]))
    return {"video": video, "audio": audio, "text": text, "text_mask": text_mask,
            "factors": np.asarray(factors, np.int32), "combination": np.int32(combination)}


def _stack(examples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


class SyntheticWorld:
    """Deterministic generator of training batches and the held-out evaluation split."""

    def __init__(self, spec: WorldSpec, seed: int):
        self.spec = spec
        self.seed = int(seed)

    def _rng(self, split: str, index: int) -> np.random.Generator:
        return np.random.Generator(np.random.Philox(key=[self.seed, _SPLIT_CODES[split] * 2**32 + index]))

    def train_example(self, index: int) -> dict[str, np.ndarray]:
        """Training clip `index`: random factors, K candidate captions, sometimes no text."""
        rng = self._rng("train", index)
        factors = decode_factors(int(rng.integers(NUM_COMBINATIONS)))
        with_text = bool(rng.uniform() >= self.spec.no_text_fraction)
        return render_example(factors, self.spec, rng, with_text)

    def train_batch(self, step: int, global_batch_size: int, process_index: int = 0,
                    process_count: int = 1) -> dict[str, np.ndarray]:
        """This host's contiguous share of global batch `step`.

        Returns host arrays with leading dim global_batch_size // process_count:
        video [b,T,H,W,3], audio [b,S], text [b,K,L], text_mask [b,K], factors [b,5],
        combination [b].
        """
        if global_batch_size % process_count:
            raise ValueError(f"batch_size {global_batch_size} is not divisible by the "
                             f"{process_count} processes")
        per_host = global_batch_size // process_count
        first = step * global_batch_size + process_index * per_host
        return _stack([self.train_example(first + i) for i in range(per_host)])

    def eval_combinations(self, num_clips: int) -> np.ndarray:
        """Distinct factor combinations of the held-out split (a seeded permutation)."""
        if not 0 < num_clips <= NUM_COMBINATIONS:
            raise ValueError(f"eval num_clips must be in [1, {NUM_COMBINATIONS}] so that every "
                             f"caption is distinct; got {num_clips}")
        rng = np.random.Generator(np.random.Philox(key=[self.seed, 2**40]))
        return rng.permutation(NUM_COMBINATIONS)[:num_clips]

    def eval_example(self, index: int, combination: int) -> dict[str, np.ndarray]:
        factors = decode_factors(int(combination))
        rng = self._rng("eval", index)
        return render_example(factors, self.spec, rng, with_text=True,
                              captions=[canonical_caption(factors)])

    def eval_batches(self, num_clips: int, batch_size: int, process_index: int = 0,
                     process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """The held-out split in global batches of `batch_size` (this host's share of each).

        The last batch is padded by repeating clip 0; `valid` [b] marks real clips.
        Text holds one canonical caption per clip: text [b, 1, L].
        """
        combos = self.eval_combinations(num_clips)
        per_host = batch_size // process_count
        for start in range(0, num_clips, batch_size):
            examples, valid = [], []
            for i in range(process_index * per_host, (process_index + 1) * per_host):
                index = start + i
                ok = index < num_clips
                examples.append(self.eval_example(index if ok else 0, combos[index if ok else 0]))
                valid.append(ok)
            batch = _stack(examples)
            batch["valid"] = np.asarray(valid, np.float32)
            yield batch

    def caption_of(self, combination: int) -> str:
        return canonical_caption(decode_factors(int(combination)))


def world_from_config(data_cfg) -> SyntheticWorld:
    """The synthetic world of a config's `data` section (name "synthetic").

    The one seed rule: the world is `data.world_seed`, independent of the run's `seed` (which
    draws the initialisation, dropout and DropToken). Pretraining, fine-tuning, probes and
    zero-shot evaluation of the same config therefore see the same world and the same held-out
    split whatever the training seed, as they would with a real dataset.
    """
    spec = WorldSpec(num_frames=data_cfg.num_frames, frame_size=data_cfg.frame_size,
                     fps=data_cfg.fps, audio_rate=data_cfg.audio_rate,
                     max_words=data_cfg.max_words, num_captions=data_cfg.num_captions,
                     no_text_fraction=data_cfg.no_text_fraction)
    return SyntheticWorld(spec, int(data_cfg.world_seed))
