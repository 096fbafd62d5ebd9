"""Raw-signal tokenizers with learned positions and the AGG token.

Every tokenizer maps a raw input to position-encoded tokens [B, N, D] (dropout not yet applied)
and owns its modality's AGG token ``agg_token`` [D]. The AGG token is prepended by the backbone
AFTER position encoding and DropToken, so it carries no position.

- VideoTokenizer: video [B, T, H, W, 3] -> voxels t x h x w (einops reshape) -> Linear(t*h*w*3, D)
  (equivalent to a 3D conv with kernel = stride) [-> pre_proj, see below]. Positions: learned
  factorised temporal [Tp, D], vertical [Hp, D] and horizontal [Wp, D] tables, broadcast-summed,
  LayerNorm'd (official code), added. 32x224x224 with 4x16x16 voxels -> 8x14x14 = 1568 tokens.
- AudioTokenizer: waveform [B, S] -> segments of P samples -> Linear(P, D) [-> pre_proj]; one
  learned temporal table [S/P, D], LayerNorm'd as for video, added. 153600 / 128 = 1200 tokens.
- TextTokenizer: ids [B, L] (pad id 0) -> word embedding [V, E] (learned nnx.Param, or a user
  matrix from .npy, frozen as ``FrozenParam`` when ``freeze_embedding``) -> Linear(E, D) -> + learned
  absolute positions [max_len, D]. Returns the pad mask too.

``pre_proj=True`` (official modality-agnostic VATT-MA, and the ViT/WaT of MA fine-tuned
checkpoints): a Dense(D, GELU) "pre-transformer projection" follows the raw-to-embedding layer,
before positions are added. For video and audio it is a new Linear(D, D) ``pre_proj`` after the
voxel / segment projection; for text the word-vector projection ``embedding_proj`` (E -> D) is that
Dense, so it gains the GELU. ``pos_layernorm=True`` (text; official MA) LayerNorms the text
position table before adding it, as video and audio always do.

Position tables are stored at the config's input size and resized when the input grid differs
(e.g. 320 px fine-tuning: 8x20x20); at the stored size the table is returned as is.
``pos_interpolation``: "spline" (official, ``spline_resize_table``) or "linear"
(``jax.image.resize``). ``init_scheme``: "official" (Keras' initialisers of the official code:
voxel / waveform projections Glorot-uniform with Conv3D / Conv1D fans, position tables truncated
normal with stddev d^-0.5, AGG tokens Glorot-normal, Dense layers Glorot-uniform) or "legacy"
(N(0, 0.02) tables and tokens, LeCun-normal projections).
"""

from __future__ import annotations

import functools
import io
import math
from typing import Any, Callable, Sequence

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vatt import paths

_POS_INIT = nnx.initializers.normal(stddev=0.02)
INIT_SCHEMES = ("official", "legacy")
POS_INTERPOLATIONS = ("spline", "linear")
# Keras' truncated normals cut at 2 stddev; this undoes the shrinkage (Glorot-normal's constant).
_TRUNC_STD = 0.87962566103423978


def _check(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"model.{name}={value!r}; choose one of {choices}.")
    return value


def conv_glorot_uniform(taps: int) -> Callable[..., jax.Array]:
    """Keras' Glorot-uniform of a convolution with `taps` kernel positions, for its kernel
    flattened to a Linear [taps * c_in, d]: fan_in = taps * c_in, fan_out = taps * d (Keras
    counts the receptive field in both fans), limit sqrt(6 / (fan_in + fan_out))."""
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        fan_in, d = shape
        limit = math.sqrt(6.0 / (fan_in + taps * d))
        return jax.random.uniform(key, shape, dtype, -limit, limit)
    return init


def position_init(init_scheme: str, d_model: int) -> Callable[..., jax.Array]:
    """A position table's initialiser: official truncated normal (stddev d^-0.5, cut at 2 stddev,
    as Keras' TruncatedNormal) or the legacy N(0, 0.02)."""
    if init_scheme == "official":
        return nnx.initializers.truncated_normal(stddev=d_model ** -0.5)
    return _POS_INIT


def agg_init(init_scheme: str) -> Callable[..., jax.Array]:
    """An AGG token's initialiser: official Keras Glorot-normal of a [d] vector (fans d and d:
    truncated normal of std sqrt(1/d)) or the legacy N(0, 0.02)."""
    if init_scheme != "official":
        return _POS_INIT

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        std = math.sqrt(1.0 / shape[-1]) / _TRUNC_STD
        return nnx.initializers.truncated_normal(stddev=std)(key, shape, dtype)
    return init


class FrozenParam(nnx.Variable):
    """A weight that is used but never trained (e.g. user word2vec embeddings with freeze=True).

    Not an ``nnx.Param``: ``nnx.split(model, nnx.Param, ...)`` and ``nnx.Optimizer(model, tx,
    wrt=nnx.Param)`` leave it out, so gradients and updates never touch it.
    """


def interpolate_table(table: jax.Array, length: int, method: str = "linear") -> jax.Array:
    """Resizes a position table [n, D] to [length, D]; exact identity when n == length.

    method: "linear" (jax.image.resize) or "spline" (the official polyharmonic spline,
    ``spline_resize_table``).
    """
    if table.shape[0] == length:
        return table
    if _check("pos_interpolation", method, POS_INTERPOLATIONS) == "spline":
        return spline_resize_table(table, length)
    return jax.image.resize(table, (length, table.shape[1]), method="linear")


@functools.lru_cache(maxsize=64)
def spline_resize_matrix(n: int, length: int) -> np.ndarray:
    """The [length, n] float64 matrix M with resized = M @ table: the official resize of a
    position table (ExpandableEmbedding, vatt/modeling/common/transformers.py).

    The official code fits a polyharmonic spline of order 3 (tfa.image.interpolate_spline:
    kernel r^3 plus an affine term, no regularisation) through row i at coordinate i / n and
    reads it at j / length. In one dimension that spline is the natural cubic spline (zero second
    derivative at both ends, continued linearly beyond them), which is computed here from its
    tridiagonal system: the same function, without the ill-conditioned dense solve (1200 audio
    rows). The fit is linear in the table, so it is one fixed matrix per (n, length). The spline
    passes through every row and reproduces affine tables exactly; a 1-row target reads
    coordinate 0, i.e. row 0; a 1-row table stays constant (the official fit is singular there).
    """
    if n == 1:
        return np.ones((length, 1))
    eye = np.eye(n)
    # Knots at 0..n-1 (the official i / n scaled by n: a natural spline is affine-invariant).
    second = np.zeros((n, n))  # table -> second derivatives at the knots (0 at both ends)
    if n > 2:
        k = n - 2
        tri = 4.0 * np.eye(k) + np.eye(k, k=1) + np.eye(k, k=-1)
        diff2 = 6.0 * (eye[:-2] - 2.0 * eye[1:-1] + eye[2:])          # [n-2, n]
        second[1:-1] = np.linalg.solve(tri, diff2)
    out = np.zeros((length, n))
    for j in range(length):
        u = j * n / length                     # the target coordinate j / length, in knot units
        i = (j * n) // length                  # its interval [i, i + 1] (exact integer floor)
        if i >= n - 1:                         # at or past the last knot: linear continuation
            slope = eye[n - 1] - eye[n - 2] + (2.0 * second[n - 1] + second[n - 2]) / 6.0
            out[j] = eye[n - 1] + (u - (n - 1)) * slope
            continue
        a, b = i + 1 - u, u - i
        out[j] = (second[i] * a ** 3 + second[i + 1] * b ** 3) / 6.0 \
            + (eye[i] - second[i] / 6.0) * a + (eye[i + 1] - second[i + 1] / 6.0) * b
    return out


def spline_resize_table(table: jax.Array, length: int) -> jax.Array:
    """Resizes a position table [n, D] to [length, D] with the official polyharmonic spline
    (``spline_resize_matrix``); differentiable in the table, any float dtype."""
    matrix = jnp.asarray(spline_resize_matrix(int(table.shape[0]), int(length)), jnp.float32)
    out = jnp.matmul(matrix, table.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
    return out.astype(table.dtype)


def _pre_proj(d_model: int, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
    """The official pre-transformer projection Dense(D) (GELU applied by _apply_pre_proj);
    Keras' Dense initialisation (Glorot uniform kernel, zero bias)."""
    return nnx.Linear(d_model, d_model, dtype=dtype,
                      kernel_init=nnx.initializers.xavier_uniform(), rngs=rngs)


def _apply_pre_proj(pre_proj: nnx.Linear | None, tokens: jax.Array) -> jax.Array:
    return tokens if pre_proj is None else jax.nn.gelu(pre_proj(tokens), approximate=False)


class VideoTokenizer(nnx.Module):
    """video [B, T, H, W, 3] -> tokens [B, (T/t)(H/h)(W/w), D] with positions added."""

    def __init__(self, d_model: int, patch_size: Sequence[int], input_size: Sequence[int], *,
                 pre_proj: bool = False, init_scheme: str = "legacy",
                 pos_interpolation: str = "linear", dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.init_scheme = _check("init_scheme", init_scheme, INIT_SCHEMES)
        self.pos_interpolation = _check("pos_interpolation", pos_interpolation,
                                        POS_INTERPOLATIONS)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.input_size = tuple(int(s) for s in input_size)
        t, h, w = self.patch_size
        grid = [s // p for s, p in zip(self.input_size, self.patch_size)]
        if any(s % p for s, p in zip(self.input_size, self.patch_size)):
            raise ValueError(f"video input_size {self.input_size} not divisible by patch_size "
                             f"{self.patch_size}.")
        self.dtype = dtype
        official = self.init_scheme == "official"
        kernel = dict(kernel_init=conv_glorot_uniform(t * h * w)) if official else {}
        self.voxel_proj = nnx.Linear(t * h * w * 3, d_model, dtype=dtype, rngs=rngs, **kernel)
        self.pre_proj = _pre_proj(d_model, dtype, rngs) if pre_proj else None
        pos_init = position_init(self.init_scheme, d_model)
        self.temporal_pos = nnx.Param(pos_init(rngs.params(), (grid[0], d_model)))
        self.vertical_pos = nnx.Param(pos_init(rngs.params(), (grid[1], d_model)))
        self.horizontal_pos = nnx.Param(pos_init(rngs.params(), (grid[2], d_model)))
        self.pos_ln = nnx.LayerNorm(d_model, epsilon=1e-6, rngs=rngs)
        self.agg_token = nnx.Param(agg_init(self.init_scheme)(rngs.params(), (d_model,)))

    def grid(self, video_shape: Sequence[int]) -> tuple[int, int, int]:
        """Token grid (T/t, H/h, W/w) of a video of shape [B, T, H, W, 3]."""
        return tuple(s // p for s, p in zip(video_shape[1:4], self.patch_size))  # type: ignore

    def position_embedding(self, grid: Sequence[int]) -> jax.Array:
        """Summed + LayerNorm'd factorised position embedding [gt*gh*gw, D] for a token grid."""
        gt, gh, gw = grid
        method = getattr(self, "pos_interpolation", "linear")
        tp = interpolate_table(self.temporal_pos[...], gt, method)
        vp = interpolate_table(self.vertical_pos[...], gh, method)
        hp = interpolate_table(self.horizontal_pos[...], gw, method)
        pos = tp[:, None, None, :] + vp[None, :, None, :] + hp[None, None, :, :]
        return self.pos_ln(pos.reshape(gt * gh * gw, -1))

    def __call__(self, video: jax.Array) -> jax.Array:
        t, h, w = self.patch_size
        if any(s % p for s, p in zip(video.shape[1:4], self.patch_size)):
            raise ValueError(f"video shape {video.shape} not divisible by patch {self.patch_size}.")
        # Voxel order (t, h, w, c) matches a Conv3D kernel [t, h, w, c, D] flattened.
        voxels = einops.rearrange(video.astype(self.dtype),
                                  "b (gt t) (gh h) (gw w) c -> b (gt gh gw) (t h w c)",
                                  t=t, h=h, w=w)
        tokens = _apply_pre_proj(self.pre_proj, self.voxel_proj(voxels))
        return tokens + self.position_embedding(self.grid(video.shape)).astype(tokens.dtype)


class AudioTokenizer(nnx.Module):
    """waveform [B, S] -> tokens [B, S/P, D] with positions added."""

    def __init__(self, d_model: int, patch_size: int, input_samples: int, *,
                 pre_proj: bool = False, init_scheme: str = "legacy",
                 pos_interpolation: str = "linear", dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.init_scheme = _check("init_scheme", init_scheme, INIT_SCHEMES)
        self.pos_interpolation = _check("pos_interpolation", pos_interpolation,
                                        POS_INTERPOLATIONS)
        if input_samples % patch_size:
            raise ValueError(f"audio input_samples {input_samples} not divisible by patch_size "
                             f"{patch_size}.")
        self.patch_size = int(patch_size)
        self.input_samples = int(input_samples)
        self.dtype = dtype
        official = self.init_scheme == "official"
        # The official Conv1D over a 1-channel waveform: patch_size taps of 1 channel.
        kernel = dict(kernel_init=conv_glorot_uniform(self.patch_size)) if official else {}
        self.segment_proj = nnx.Linear(self.patch_size, d_model, dtype=dtype, rngs=rngs,
                                       **kernel)
        self.pre_proj = _pre_proj(d_model, dtype, rngs) if pre_proj else None
        self.temporal_pos = nnx.Param(position_init(self.init_scheme, d_model)(
            rngs.params(), (input_samples // patch_size, d_model)))
        self.pos_ln = nnx.LayerNorm(d_model, epsilon=1e-6, rngs=rngs)
        self.agg_token = nnx.Param(agg_init(self.init_scheme)(rngs.params(), (d_model,)))

    def position_embedding(self, num_tokens: int) -> jax.Array:
        """LayerNorm'd temporal position embedding [num_tokens, D]."""
        return self.pos_ln(interpolate_table(self.temporal_pos[...], num_tokens,
                                             getattr(self, "pos_interpolation", "linear")))

    def __call__(self, audio: jax.Array) -> jax.Array:
        if audio.shape[-1] % self.patch_size:
            raise ValueError(f"audio length {audio.shape[-1]} not divisible by {self.patch_size}.")
        segments = einops.rearrange(audio.astype(self.dtype), "b (n p) -> b n p", p=self.patch_size)
        tokens = _apply_pre_proj(self.pre_proj, self.segment_proj(segments))
        return tokens + self.position_embedding(tokens.shape[1]).astype(tokens.dtype)


def load_embedding_matrix(path: str, vocab_size: int, embedding_dim: int) -> np.ndarray:
    """Loads a [vocab_size, embedding_dim] float matrix from .npy (no pickle; local or gs://)."""
    matrix = np.load(io.BytesIO(paths.read_bytes(path)), allow_pickle=False)
    if matrix.shape != (vocab_size, embedding_dim):
        raise ValueError(
            f"model.text.embedding_path={path!r} holds shape {matrix.shape}; expected "
            f"(vocab_size, embedding_dim) = ({vocab_size}, {embedding_dim}). Set "
            "model.text.vocab_size / model.text.embedding_dim to match the file.")
    return matrix.astype(np.float32)


def word_embedding(vocab_size: int, embedding_dim: int, *, embedding_path: str = "",
                   freeze_embedding: bool = False, rngs: nnx.Rngs) -> nnx.Variable:
    """The word table [vocab_size, embedding_dim]: learned (an nnx.Param, N(0, 1) init), or the
    user matrix of ``embedding_path`` (.npy), a ``FrozenParam`` when ``freeze_embedding``.
    ``freeze_embedding`` without ``embedding_path`` is an error: a frozen random table."""
    if freeze_embedding and not embedding_path:
        raise ValueError(
            "model.text.freeze_embedding=True needs model.text.embedding_path: a frozen word "
            "table must come from a file (the official word2vec .npy); without one it would be "
            "a frozen random table. Set model.text.embedding_path=<[vocab_size, embedding_dim] "
            ".npy>, or model.text.freeze_embedding=False to learn the table.")
    if embedding_path:
        matrix = jnp.asarray(load_embedding_matrix(embedding_path, vocab_size, embedding_dim))
        # Official VATT freezes its word2vec table: FrozenParam keeps it out of the optimizer.
        return FrozenParam(matrix) if freeze_embedding else nnx.Param(matrix)
    return nnx.Param(
        nnx.initializers.normal(stddev=1.0)(rngs.params(), (vocab_size, embedding_dim)))


def embed_words(embedding: nnx.Variable, ids: jax.Array, dtype: Any) -> jax.Array:
    """ids [B, L] int -> word vectors [B, L, E] in ``dtype``; no gradient into a FrozenParam."""
    table = embedding[...]
    if isinstance(embedding, FrozenParam):
        table = jax.lax.stop_gradient(table)
    return jnp.take(table, ids, axis=0).astype(dtype)


class TextTokenizer(nnx.Module):
    """ids [B, L] int (pad 0) -> (tokens [B, L, D], mask [B, L] bool: True = real word)."""

    def __init__(self, d_model: int, vocab_size: int, max_len: int, embedding_dim: int, *,
                 embedding_path: str = "", freeze_embedding: bool = False,
                 pre_proj: bool = False, pos_layernorm: bool = False,
                 init_scheme: str = "legacy", dtype: Any = jnp.float32, rngs: nnx.Rngs):
        init_scheme = _check("init_scheme", init_scheme, INIT_SCHEMES)
        official = init_scheme == "official"
        self.max_len = int(max_len)
        self.pre_proj_gelu = bool(pre_proj)
        self.dtype = dtype
        self.embedding = word_embedding(vocab_size, embedding_dim, embedding_path=embedding_path,
                                        freeze_embedding=freeze_embedding, rngs=rngs)
        # Official: a Keras Dense (Glorot-uniform kernel).
        kernel = dict(kernel_init=nnx.initializers.xavier_uniform()) if official else {}
        self.embedding_proj = nnx.Linear(embedding_dim, d_model, dtype=dtype, rngs=rngs, **kernel)
        self.pos = nnx.Param(position_init(init_scheme, d_model)(rngs.params(), (max_len, d_model)))
        self.pos_ln = (nnx.LayerNorm(d_model, epsilon=1e-6, rngs=rngs) if pos_layernorm
                       else None)
        self.agg_token = nnx.Param(agg_init(init_scheme)(rngs.params(), (d_model,)))

    def __call__(self, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        length = ids.shape[-1]
        if length > self.max_len:
            raise ValueError(f"text length {length} > model.text.max_len {self.max_len}.")
        tokens = self.embedding_proj(embed_words(self.embedding, ids, self.dtype))
        if self.pre_proj_gelu:
            tokens = jax.nn.gelu(tokens, approximate=False)
        # Absolute positions: shorter captions use the first `length` rows.
        pos = self.pos[...][:length]
        if self.pos_ln is not None:
            pos = self.pos_ln(pos)
        tokens = tokens + pos.astype(tokens.dtype)
        return tokens, ids != 0
