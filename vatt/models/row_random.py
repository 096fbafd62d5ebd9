"""Per-example random streams: dropout masks and DropToken subsets that do not depend on how a
batch is cut into pieces.

A plain PRNG key draws a mask for the whole array at once, so row r's mask depends on the batch
size and on where the row sits: the mask of rows 0..7 drawn for a batch of 8 is not the first 8
rows of the mask drawn for a batch of 64. Contrastive gradient accumulation (GradCache,
vatt.train.grad_cache) re-runs the backbones on chunks of the global batch and must see exactly
the randomness the whole batch would, so it tags each row with its global example index:

  RowKeys(key, rows)   key: one PRNG key (per step, modality and layer, derived as usual);
                       rows: int32 [R], the global example index of each row of the array.

Row r draws with fold_in(key, rows[r]) (vmapped), whatever the other rows are. Keys are derived
(split / fold_in) on `key` only, so a RowKeys flows through the model exactly where a key does.
With a plain key (or None) every function here calls what the model called before, so models
that are not given example indices (fine-tuning, evaluation, VATT.__call__) trace the same
program and draw the same numbers as before.
"""

from __future__ import annotations

import dataclasses
from typing import Union

import jax
import jax.numpy as jnp
from flax import nnx


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RowKeys:
    """One PRNG key plus the global example index of each row it will draw for.

    key: a PRNG key (typed or raw uint32[2]); rows: int32 [R].
    """
    key: jax.Array
    rows: jax.Array


Key = Union[jax.Array, RowKeys]


def with_rows(key: jax.Array | None, rows: jax.Array | None) -> Key | None:
    """`key` tagged with example indices `rows` [R] (None: `key` unchanged)."""
    if key is None or rows is None:
        return key
    return RowKeys(key, rows)


def split(key: Key, num: int) -> tuple[Key, ...]:
    """jax.random.split for a key or RowKeys: `num` keys (the rows carried along)."""
    if isinstance(key, RowKeys):
        return tuple(RowKeys(k, key.rows) for k in jax.random.split(key.key, num))
    return tuple(jax.random.split(key, num))


def fold_in(key: Key, data: int) -> Key:
    """jax.random.fold_in for a key or RowKeys."""
    if isinstance(key, RowKeys):
        return RowKeys(jax.random.fold_in(key.key, data), key.rows)
    return jax.random.fold_in(key, data)


def shared(key: Key) -> jax.Array:
    """The key of a draw shared by every row (DropToken's "batch" mode: one permutation)."""
    return key.key if isinstance(key, RowKeys) else key


def repeat_rows(rows: jax.Array | None, k: int) -> jax.Array | None:
    """Example indices [B] -> [B*k]: row b*k + j (candidate j of example b) gets b*k + j, so
    the k candidates of one example draw distinct masks and no two examples share one."""
    if rows is None:
        return None
    return (rows[:, None] * k + jnp.arange(k, dtype=rows.dtype)).reshape(-1)


def row_keys(key: RowKeys) -> jax.Array:
    """The per-row keys [R]: fold_in(key, rows[r])."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key.key, key.rows)


def _check_rows(key: RowKeys, shape: tuple[int, ...]) -> None:
    if not shape or shape[0] != key.rows.shape[0]:
        raise ValueError(f"a per-example draw of shape {shape} needs one example index per row; "
                         f"got {key.rows.shape[0]} indices")


def bernoulli(key: RowKeys, p: float, shape: tuple[int, ...]) -> jax.Array:
    """bool [R, ...] with P(True) = p, row r from its own key."""
    _check_rows(key, shape)
    return jax.vmap(lambda k: jax.random.bernoulli(k, p, shape[1:]))(row_keys(key))


def uniform(key: RowKeys, shape: tuple[int, ...]) -> jax.Array:
    """float32 [R, ...] uniform in [0, 1), row r from its own key."""
    _check_rows(key, shape)
    return jax.vmap(lambda k: jax.random.uniform(k, shape[1:]))(row_keys(key))


def dropout(layer: nnx.Dropout, x: jax.Array, *, deterministic: bool,
            key: Key | None) -> jax.Array:
    """layer(x) with a per-example mask when `key` is a RowKeys (x [R, ...]: row r masked from
    its own key); otherwise exactly layer(x, deterministic=..., rngs=key)."""
    if not isinstance(key, RowKeys):
        return layer(x, deterministic=deterministic, rngs=key)
    if deterministic or layer.rate == 0.0:
        return x
    if layer.rate == 1.0:
        return jnp.zeros_like(x)
    if layer.broadcast_dims:
        raise ValueError("per-example dropout does not broadcast masks over dims")
    keep = 1.0 - layer.rate
    mask = bernoulli(key, keep, x.shape)
    return jax.lax.select(mask, x / keep, jnp.zeros_like(x))
