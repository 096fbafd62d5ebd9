"""Pre-LayerNorm transformer encoder (VATT / ViT style).

Block: x + Drop(MHA(LN(x))) then x + Drop(MLP(LN(x))), MLP = Linear -> GELU -> Drop -> Linear;
the encoder ends with a final LayerNorm (and, with ``final_dropout``, a dropout after it, as the
official encoder). ``attention_dropout_rate`` > 0 drops attention probabilities (official 0.1):
while training, attention is then written out (einsum + softmax + dropout) since
``jax.nn.dot_product_attention`` has no dropout; evaluation always takes the fused path.
Parameters are float32; activations run in ``dtype`` (e.g. bfloat16). Attention goes through ``jax.nn.dot_product_attention`` so the implementation
("xla" or "cudnn" flash attention) is a config switch. Each block can be rematerialised with
``nnx.remat`` and a named ``jax.checkpoint_policies`` policy.

Parameter paths: ``blocks/<i>/{ln_attn, attn/{query,key,value,out}, ln_mlp, mlp/{fc1,fc2}}``,
``final_ln``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from vatt.models import row_random

ATTENTION_IMPLS = ("xla", "cudnn")
# Remat policy names -> jax.checkpoint policies. "none" disables remat; "full" recomputes
# everything in the backward pass (same as "nothing_saveable").
REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _dense_init() -> Any:
    return nnx.initializers.xavier_uniform()


class MultiHeadAttention(nnx.Module):
    """Multi-head self-attention. x [B, N, D] -> [B, N, D]."""

    def __init__(self, d_model: int, num_heads: int, *, dtype: Any, attention_impl: str | None,
                 attention_dropout_rate: float = 0.0, rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.attention_dropout_rate = float(attention_dropout_rate)
        self.attn_dropout = (nnx.Dropout(self.attention_dropout_rate)
                             if self.attention_dropout_rate > 0.0 else None)
        self.attention_impl = None if attention_impl in (None, "", "xla") else attention_impl
        lin = dict(dtype=dtype, kernel_init=_dense_init(), rngs=rngs)
        self.query = nnx.Linear(d_model, d_model, **lin)
        self.key = nnx.Linear(d_model, d_model, **lin)
        self.value = nnx.Linear(d_model, d_model, **lin)
        self.out = nnx.Linear(d_model, d_model, **lin)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None,
                 key: row_random.Key | None = None) -> jax.Array:
        """x [B, N, D]; mask [B, N] bool (True = attend to this key) or None; key: PRNG key
        (or RowKeys) of the attention-probability dropout (None, or a rate of 0: none)."""
        b, n, d = x.shape
        split = lambda t: t.reshape(b, n, self.num_heads, d // self.num_heads)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        attn_mask = None if mask is None else mask[:, None, None, :]  # [B, 1, 1(query), N(key)]
        if key is not None and self.attn_dropout is not None:
            y = self._attend_with_dropout(q, k, v, attn_mask, key)
        else:
            y = jax.nn.dot_product_attention(q, k, v, mask=attn_mask,
                                             implementation=self.attention_impl)
        return self.out(y.reshape(b, n, d))

    def _attend_with_dropout(self, q: jax.Array, k: jax.Array, v: jax.Array,
                             attn_mask: jax.Array | None, key: row_random.Key) -> jax.Array:
        """softmax(q k^T / sqrt(d_head)) with dropout on the probabilities, then @ v."""
        scale = 1.0 / float(q.shape[-1]) ** 0.5
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
        if attn_mask is not None:
            logits = jnp.where(attn_mask, logits, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        weights = row_random.dropout(self.attn_dropout, weights, deterministic=False, key=key)
        return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class MLP(nnx.Module):
    """Linear(mlp_dim) -> GELU -> dropout -> Linear(d_model). use_bias=False: the bias-free
    T5 feed-forward (vatt.models.t5_text)."""

    def __init__(self, d_model: int, mlp_dim: int, *, dtype: Any, dropout_rate: float,
                 use_bias: bool = True, rngs: nnx.Rngs):
        lin = dict(dtype=dtype, use_bias=use_bias, kernel_init=_dense_init(), rngs=rngs)
        self.fc1 = nnx.Linear(d_model, mlp_dim, **lin)
        self.fc2 = nnx.Linear(mlp_dim, d_model, **lin)
        self.dropout = nnx.Dropout(dropout_rate)

    def __call__(self, x: jax.Array, *, deterministic: bool,
                 key: row_random.Key | None) -> jax.Array:
        h = jax.nn.gelu(self.fc1(x), approximate=False)
        h = row_random.dropout(self.dropout, h, deterministic=deterministic, key=key)
        return self.fc2(h)


class EncoderBlock(nnx.Module):
    """Pre-LN transformer block. x [B, N, D] -> [B, N, D]."""

    def __init__(self, d_model: int, mlp_dim: int, num_heads: int, *, dtype: Any,
                 dropout_rate: float, attention_impl: str | None,
                 attention_dropout_rate: float = 0.0, rngs: nnx.Rngs):
        self.ln_attn = nnx.LayerNorm(d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        self.attn = MultiHeadAttention(d_model, num_heads, dtype=dtype,
                                       attention_impl=attention_impl,
                                       attention_dropout_rate=attention_dropout_rate, rngs=rngs)
        self.ln_mlp = nnx.LayerNorm(d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        self.mlp = MLP(d_model, mlp_dim, dtype=dtype, dropout_rate=dropout_rate, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate)

    def __call__(self, x: jax.Array, mask: jax.Array | None,
                 key: row_random.Key | None) -> jax.Array:
        """x [B, N, D]; mask [B, N] or None; key: dropout PRNG key (or RowKeys: per-example
        masks, vatt.models.row_random), None = deterministic."""
        det = key is None
        k1 = k2 = k3 = None
        if key is not None:
            k1, k2, k3 = row_random.split(key, 3)
        # The attention-probability key is derived only when that dropout is on, so a model
        # without it traces exactly the program it always had.
        k_attn = (row_random.fold_in(key, 3)
                  if key is not None and self.attn.attention_dropout_rate > 0.0 else None)
        drop = lambda t, k: row_random.dropout(self.dropout, t, deterministic=det, key=k)
        x = x + drop(self.attn(self.ln_attn(x), mask, k_attn), k1)
        y = self.mlp(self.ln_mlp(x), deterministic=det, key=k2)
        return x + drop(y, k3)


def _apply_block(block: EncoderBlock, x: jax.Array, mask: jax.Array | None,
                 key: row_random.Key | None) -> jax.Array:
    return block(x, mask, key)


class Encoder(nnx.Module):
    """Stack of pre-LN blocks plus a final LayerNorm [plus dropout: ``final_dropout``].

    Call: x [B, N, D], mask [B, N] bool or None, dropout_key (None = no dropout; a RowKeys:
    per-example masks) ->
    (y [B, N, D] after the final LN, per-block outputs list of [B, N, D] if return_all else []).
    """

    def __init__(self, num_layers: int, d_model: int, mlp_dim: int, num_heads: int, *,
                 dtype: Any = jnp.float32, dropout_rate: float = 0.1,
                 attention_impl: str | None = "xla", remat_policy: str = "none",
                 attention_dropout_rate: float = 0.0, final_dropout: bool = False,
                 rngs: nnx.Rngs):
        self.num_layers = num_layers
        self.d_model = d_model
        self.blocks = nnx.List([
            EncoderBlock(d_model, mlp_dim, num_heads, dtype=dtype, dropout_rate=dropout_rate,
                         attention_impl=attention_impl,
                         attention_dropout_rate=attention_dropout_rate, rngs=rngs)
            for _ in range(num_layers)
        ])
        self.final_ln = nnx.LayerNorm(d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        # No Dropout module unless asked for: the variables (and checkpoints) stay as they were.
        self.final_dropout = nnx.Dropout(dropout_rate) if final_dropout else None
        if remat_policy not in ("none", "", None) and remat_policy not in REMAT_POLICIES:
            raise ValueError(f"Unknown remat_policy {remat_policy!r}; choose 'none' or one of "
                             f"{sorted(REMAT_POLICIES)}.")
        self.remat_policy = remat_policy or "none"

    def __call__(self, x: jax.Array, mask: jax.Array | None = None,
                 dropout_key: row_random.Key | None = None,
                 return_all: bool = False) -> tuple[jax.Array, list[jax.Array]]:
        apply = _apply_block
        if self.remat_policy != "none":
            apply = nnx.remat(_apply_block, policy=REMAT_POLICIES[self.remat_policy])
        outs = []
        for i, block in enumerate(self.blocks):
            key = None if dropout_key is None else row_random.fold_in(dropout_key, i)
            x = apply(block, x, mask, key)
            if return_all:
                outs.append(x)
        y = self.final_ln(x)
        if self.final_dropout is not None and dropout_key is not None:
            # Blocks use fold_in(key, i) for i < num_layers: num_layers is free.
            y = row_random.dropout(self.final_dropout, y, deterministic=False,
                                   key=row_random.fold_in(dropout_key, self.num_layers))
        return y, outs
