"""Pre-LayerNorm transformer encoder (VATT / ViT style).

Block: x + Drop(MHA(LN(x))) then x + Drop(MLP(LN(x))), MLP = Linear -> GELU -> Drop -> Linear;
the encoder ends with a final LayerNorm. Parameters are float32; activations run in ``dtype``
(e.g. bfloat16). Attention goes through ``jax.nn.dot_product_attention`` so the implementation
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
                 rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.attention_impl = None if attention_impl in (None, "", "xla") else attention_impl
        lin = dict(dtype=dtype, kernel_init=_dense_init(), rngs=rngs)
        self.query = nnx.Linear(d_model, d_model, **lin)
        self.key = nnx.Linear(d_model, d_model, **lin)
        self.value = nnx.Linear(d_model, d_model, **lin)
        self.out = nnx.Linear(d_model, d_model, **lin)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """x [B, N, D]; mask [B, N] bool (True = attend to this key) or None."""
        b, n, d = x.shape
        split = lambda t: t.reshape(b, n, self.num_heads, d // self.num_heads)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        attn_mask = None if mask is None else mask[:, None, None, :]  # [B, 1, 1(query), N(key)]
        y = jax.nn.dot_product_attention(q, k, v, mask=attn_mask,
                                         implementation=self.attention_impl)
        return self.out(y.reshape(b, n, d))


class MLP(nnx.Module):
    """Linear(mlp_dim) -> GELU -> dropout -> Linear(d_model). use_bias=False: the bias-free
    T5 feed-forward (vatt.models.t5_text)."""

    def __init__(self, d_model: int, mlp_dim: int, *, dtype: Any, dropout_rate: float,
                 use_bias: bool = True, rngs: nnx.Rngs):
        lin = dict(dtype=dtype, use_bias=use_bias, kernel_init=_dense_init(), rngs=rngs)
        self.fc1 = nnx.Linear(d_model, mlp_dim, **lin)
        self.fc2 = nnx.Linear(mlp_dim, d_model, **lin)
        self.dropout = nnx.Dropout(dropout_rate)

    def __call__(self, x: jax.Array, *, deterministic: bool, key: jax.Array | None) -> jax.Array:
        h = jax.nn.gelu(self.fc1(x), approximate=False)
        h = self.dropout(h, deterministic=deterministic, rngs=key)
        return self.fc2(h)


class EncoderBlock(nnx.Module):
    """Pre-LN transformer block. x [B, N, D] -> [B, N, D]."""

    def __init__(self, d_model: int, mlp_dim: int, num_heads: int, *, dtype: Any,
                 dropout_rate: float, attention_impl: str | None, rngs: nnx.Rngs):
        self.ln_attn = nnx.LayerNorm(d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        self.attn = MultiHeadAttention(d_model, num_heads, dtype=dtype,
                                       attention_impl=attention_impl, rngs=rngs)
        self.ln_mlp = nnx.LayerNorm(d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        self.mlp = MLP(d_model, mlp_dim, dtype=dtype, dropout_rate=dropout_rate, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate)

    def __call__(self, x: jax.Array, mask: jax.Array | None, key: jax.Array | None) -> jax.Array:
        """x [B, N, D]; mask [B, N] or None; key: dropout PRNG key, None = deterministic."""
        det = key is None
        k1 = k2 = k3 = None
        if key is not None:
            k1, k2, k3 = jax.random.split(key, 3)
        x = x + self.dropout(self.attn(self.ln_attn(x), mask), deterministic=det, rngs=k1)
        y = self.mlp(self.ln_mlp(x), deterministic=det, key=k2)
        return x + self.dropout(y, deterministic=det, rngs=k3)


def _apply_block(block: EncoderBlock, x: jax.Array, mask: jax.Array | None,
                 key: jax.Array | None) -> jax.Array:
    return block(x, mask, key)


class Encoder(nnx.Module):
    """Stack of pre-LN blocks plus a final LayerNorm.

    Call: x [B, N, D], mask [B, N] bool or None, dropout_key (None = no dropout) ->
    (y [B, N, D] after the final LN, per-block outputs list of [B, N, D] if return_all else []).
    """

    def __init__(self, num_layers: int, d_model: int, mlp_dim: int, num_heads: int, *,
                 dtype: Any = jnp.float32, dropout_rate: float = 0.1,
                 attention_impl: str | None = "xla", remat_policy: str = "none",
                 rngs: nnx.Rngs):
        self.num_layers = num_layers
        self.d_model = d_model
        self.blocks = nnx.List([
            EncoderBlock(d_model, mlp_dim, num_heads, dtype=dtype, dropout_rate=dropout_rate,
                         attention_impl=attention_impl, rngs=rngs)
            for _ in range(num_layers)
        ])
        self.final_ln = nnx.LayerNorm(d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        if remat_policy not in ("none", "", None) and remat_policy not in REMAT_POLICIES:
            raise ValueError(f"Unknown remat_policy {remat_policy!r}; choose 'none' or one of "
                             f"{sorted(REMAT_POLICIES)}.")
        self.remat_policy = remat_policy or "none"

    def __call__(self, x: jax.Array, mask: jax.Array | None = None,
                 dropout_key: jax.Array | None = None,
                 return_all: bool = False) -> tuple[jax.Array, list[jax.Array]]:
        apply = _apply_block
        if self.remat_policy != "none":
            apply = nnx.remat(_apply_block, policy=REMAT_POLICIES[self.remat_policy])
        outs = []
        for i, block in enumerate(self.blocks):
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            x = apply(block, x, mask, key)
            if return_all:
                outs.append(x)
        return self.final_ln(x), outs
