"""DropToken (VATT): keep a random subset of a modality's tokens during pretraining.

Applied after position encoding and before the AGG token is prepended, on video and audio only,
and only when training. Kept count = int(round(keep_rate * num_tokens)) exactly.
Modes: "batch" (official code: one random permutation shared by the whole batch) and "sample"
(an independent subset per sample). Kept tokens stay in their original order.
With a RowKeys (vatt.models.row_random) "sample" draws row b's subset from (key, example index
of b), so it does not depend on the rest of the batch; "batch" uses the shared key either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vatt.models import row_random

DROPTOKEN_MODES = ("batch", "sample")


def num_kept(num_tokens: int, keep_rate: float) -> int:
    """Number of tokens kept by DropToken: int(round(keep_rate * num_tokens)), at least 1."""
    return max(1, int(round(keep_rate * num_tokens)))


def drop_tokens(tokens: jax.Array, keep_rate: float, key: row_random.Key,
                mode: str = "batch") -> jax.Array:
    """tokens [B, N, D] -> [B, int(round(keep_rate * N)), D] (a random, order-preserving subset)."""
    if mode not in DROPTOKEN_MODES:
        raise ValueError(f"Unknown droptoken_mode {mode!r}; choose one of {DROPTOKEN_MODES}.")
    b, n, _ = tokens.shape
    k = num_kept(n, keep_rate)
    if k >= n:
        return tokens
    if mode == "batch":
        idx = jnp.sort(jax.random.permutation(row_random.shared(key), n)[:k])
        return jnp.take(tokens, idx, axis=1)
    # Per sample: the k smallest of N uniform draws = a uniform random k-subset.
    if isinstance(key, row_random.RowKeys):
        scores = row_random.uniform(key, (b, n))
    else:
        scores = jax.random.uniform(key, (b, n))
    idx = jnp.sort(jnp.argsort(scores, axis=1)[:, :k], axis=1)
    return jnp.take_along_axis(tokens, idx[:, :, None], axis=1)
