"""T5 encoder text tower: the text backbone of the official VATT BBS / MBS / LBS (t5_small).

Forward (ids [B, L] int, pad id 0):
  word vectors [B, L, E] (the frozen word2vec table in the official code; learned or loaded here)
  -> prepend a learned E-wide AGG vector: [B, 1+L, E]; the AGG position is always unmasked
  -> pre_proj: bias-free Dense(E -> D) + exact GELU
  -> dropout -> N blocks -> final RMSNorm -> dropout; the AGG row is the caption embedding.
Block (pre-norm, no bias anywhere in the projections):
  x + Drop(Attn(RMSNorm(x)))  with Attn = softmax(q k^T + bias) v, logits NOT divided by
                               sqrt(d_head), dropout on the attention weights;
  x + Drop(MLP(LayerNorm(x))) with MLP = Dense(mlp_dim) -> GELU -> Drop -> Dense(D).
The FFN norm is a full LayerNorm (scale and offset) while the attention and final norms are
RMSNorms, exactly as the official checkpoints hold them (``feed_forward/layer_norm/{gamma,beta}``
vs ``self_attention/layer_norm/weight``). There are no absolute positions: one T5 relative
position bias (32 buckets, max distance 64, bidirectional; a [buckets, heads] table) is computed
once, the padding mask is folded into it as -1e9 on padded keys, and the same [B, H, N, N] bias
is added to the logits of every block (the official code computes it in layer 0 and hands it on).

Parameter paths: ``tokenizer/{embedding, agg_token, pre_proj/kernel}``,
``encoder/{relative_attention_bias, blocks/<i>/{ln_attn/scale, attn/{query,key,value,out}/kernel,
ln_mlp/{scale,bias}, mlp/{fc1,fc2}/kernel}, final_ln/scale}``. The official code stores the
relative-bias table under layer 0; it lives on the encoder here so that every block has the same
parameters (``summary.param_counts`` scales one block up, and the blocks stay scannable). With
E=300, D=512, 6 layers, MLP 2048, 8 heads this is 19,038,252 parameters, the count of the
official t5_small text tower without its word table.

Attention is written out (einsum + softmax) rather than through ``jax.nn.dot_product_attention``:
the official tower drops out attention weights, which that API cannot do, and a caption is only
17 tokens long, so ``model.attention_impl`` does not apply to this tower.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vatt.models import row_random
from vatt.models.backbone import RngsLike, stream_key
from vatt.models.tokenizers import embed_words, word_embedding
from vatt.models.transformer import MLP, REMAT_POLICIES

# The additive logit of a padded key (official value): exp(-1e9 - max) is exactly 0 in float32.
MASK_LOGIT = -1e9


def relative_position_bucket(relative_position: Any, *, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 64) -> jax.Array:
    """T5 bucket of each relative position (key index - query index), int32, same shape.

    Bidirectional: half of the buckets for keys before the query, half for keys after it. Within
    a half, distances below half of it get one bucket each; larger ones share log-spaced buckets
    up to ``max_distance``; anything farther falls in the half's last bucket. E.g. with 32 / 64:
    0 -> 0, -1 -> 1, +1 -> 17, -8 -> 8, -16 -> 10, -32 -> 13, -64 and beyond -> 15, +64 -> 31.
    """
    rel = jnp.asarray(relative_position, jnp.int32)
    n = -rel  # > 0: the key precedes the query
    bucket = jnp.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (n < 0).astype(jnp.int32) * num_buckets
        n = jnp.abs(n)
    else:
        n = jnp.maximum(n, 0)
    max_exact = num_buckets // 2
    # Guard log(0): those entries take the exact branch anyway.
    ratio = jnp.maximum(n, 1).astype(jnp.float32) / max_exact
    large = max_exact + (jnp.log(ratio) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).astype(jnp.int32)
    large = jnp.minimum(large, num_buckets - 1)
    return bucket + jnp.where(n < max_exact, n, large)


def _dense(d_in: int, d_out: int, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
    # Keras Dense default init (glorot uniform), no bias, as every T5 projection.
    return nnx.Linear(d_in, d_out, use_bias=False, dtype=dtype,
                      kernel_init=nnx.initializers.xavier_uniform(), rngs=rngs)


class T5Attention(nnx.Module):
    """Bias-free multi-head self-attention with unscaled logits and an additive logit bias.

    x [B, N, D], bias [B or 1, H, N, N] (relative positions + padding mask) -> [B, N, D].
    """

    def __init__(self, d_model: int, num_heads: int, *, dtype: Any, dropout_rate: float,
                 rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.query = _dense(d_model, d_model, dtype, rngs)
        self.key = _dense(d_model, d_model, dtype, rngs)
        self.value = _dense(d_model, d_model, dtype, rngs)
        self.out = _dense(d_model, d_model, dtype, rngs)
        self.dropout = nnx.Dropout(dropout_rate)

    def __call__(self, x: jax.Array, bias: jax.Array, key: row_random.Key | None) -> jax.Array:
        b, n, d = x.shape
        split = lambda t: t.reshape(b, n, self.num_heads, d // self.num_heads)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        # No 1/sqrt(d_head) (T5). The logits are unscaled and carry -1e9 on padded keys, so they
        # are accumulated and soft-maxed in float32 even when activations are bfloat16.
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        weights = jax.nn.softmax(logits + bias, axis=-1).astype(v.dtype)
        weights = row_random.dropout(self.dropout, weights, deterministic=key is None, key=key)
        y = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return self.out(y.reshape(b, n, d))


class T5Block(nnx.Module):
    """RMSNorm -> attention -> residual; LayerNorm -> bias-free GELU MLP -> residual.

    x [B, N, D], bias [B or 1, H, N, N], key (None = deterministic) -> [B, N, D].
    """

    def __init__(self, d_model: int, mlp_dim: int, num_heads: int, *, dtype: Any,
                 dropout_rate: float, rngs: nnx.Rngs):
        self.ln_attn = nnx.RMSNorm(d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        self.attn = T5Attention(d_model, num_heads, dtype=dtype, dropout_rate=dropout_rate,
                                rngs=rngs)
        # A full LayerNorm before the FFN: what the official VATT T5 uses there (Keras
        # LayerNormalization, with an offset), unlike stock T5. Two-pass variance, as Keras.
        self.ln_mlp = nnx.LayerNorm(d_model, epsilon=1e-6, dtype=dtype, use_fast_variance=False,
                                    rngs=rngs)
        self.mlp = MLP(d_model, mlp_dim, dtype=dtype, dropout_rate=dropout_rate, use_bias=False,
                       rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate)

    def __call__(self, x: jax.Array, bias: jax.Array, key: row_random.Key | None) -> jax.Array:
        det = key is None
        k1 = k2 = k3 = k4 = None
        if key is not None:
            k1, k2, k3, k4 = row_random.split(key, 4)
        drop = lambda t, k: row_random.dropout(self.dropout, t, deterministic=det, key=k)
        x = x + drop(self.attn(self.ln_attn(x), bias, k1), k2)
        y = self.mlp(self.ln_mlp(x), deterministic=det, key=k3)
        return x + drop(y, k4)


def _apply_block(block: T5Block, x: jax.Array, bias: jax.Array,
                 key: row_random.Key | None) -> jax.Array:
    return block(x, bias, key)


class T5Encoder(nnx.Module):
    """Dropout -> T5 blocks sharing one relative-position bias -> final RMSNorm -> dropout.

    Call: x [B, N, D] (already projected; no positions added), mask [B, N] bool (True = real
    token) or None, dropout_key (None = no dropout) ->
    (y [B, N, D] after the final norm, per-block outputs list of [B, N, D] if return_all else []).
    Same contract as ``vatt.models.transformer.Encoder``.
    """

    def __init__(self, num_layers: int, d_model: int, mlp_dim: int, num_heads: int, *,
                 num_buckets: int = 32, max_distance: int = 64, dtype: Any = jnp.float32,
                 dropout_rate: float = 0.1, remat_policy: str = "none", rngs: nnx.Rngs):
        self.num_layers = num_layers
        self.d_model = d_model
        self.num_heads = num_heads
        self.num_buckets = int(num_buckets)
        self.max_distance = int(max_distance)
        # Keras Embedding's default init, U(-0.05, 0.05).
        self.relative_attention_bias = nnx.Param(jax.random.uniform(
            rngs.params(), (self.num_buckets, num_heads), jnp.float32, -0.05, 0.05))
        self.blocks = nnx.List([
            T5Block(d_model, mlp_dim, num_heads, dtype=dtype, dropout_rate=dropout_rate,
                    rngs=rngs)
            for _ in range(num_layers)
        ])
        self.final_ln = nnx.RMSNorm(d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate)
        if remat_policy not in ("none", "", None) and remat_policy not in REMAT_POLICIES:
            raise ValueError(f"Unknown remat_policy {remat_policy!r}; choose 'none' or one of "
                             f"{sorted(REMAT_POLICIES)}.")
        self.remat_policy = remat_policy or "none"

    def position_bias(self, length: int, mask: jax.Array | None = None) -> jax.Array:
        """The logit bias of every block: [1, H, N, N] (no mask) or [B, H, N, N] float32.

        Entry [b, h, q, k] = table[bucket(k - q), h], plus -1e9 where key k is padding.
        """
        pos = np.arange(length)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], bidirectional=True,
                                           num_buckets=self.num_buckets,
                                           max_distance=self.max_distance)  # [N(q), N(k)]
        values = jnp.take(self.relative_attention_bias[...], buckets, axis=0)  # [N, N, H]
        bias = jnp.transpose(values, (2, 0, 1))[None].astype(jnp.float32)
        if mask is not None:
            bias = bias + jnp.where(mask, 0.0, MASK_LOGIT)[:, None, None, :].astype(jnp.float32)
        return bias

    def __call__(self, x: jax.Array, mask: jax.Array | None = None,
                 dropout_key: row_random.Key | None = None,
                 return_all: bool = False) -> tuple[jax.Array, list[jax.Array]]:
        apply: Callable[..., jax.Array] = _apply_block
        if self.remat_policy != "none":
            apply = nnx.remat(_apply_block, policy=REMAT_POLICIES[self.remat_policy])
        det = dropout_key is None
        fold = (lambda i: None) if det else (lambda i: row_random.fold_in(dropout_key, i))
        drop = lambda t, k: row_random.dropout(self.dropout, t, deterministic=det, key=k)
        bias = self.position_bias(x.shape[1], mask)
        # Keys 0..L-1 for the blocks, L for the input dropout and L+1 for the final one.
        x = drop(x, fold(self.num_layers))
        outs = []
        for i, block in enumerate(self.blocks):
            x = apply(block, x, bias, fold(i))
            if return_all:
                outs.append(x)
        y = drop(self.final_ln(x), fold(self.num_layers + 1))
        return y, outs


class T5TextTokenizer(nnx.Module):
    """ids [B, L] int (pad 0) -> (tokens [B, 1+L, D] with the AGG token first, mask [B, 1+L]).

    The AGG vector is prepended in word-vector space (E wide) and goes through the same
    pre-projection as the words (official); it carries no position (there are none).
    """

    def __init__(self, d_model: int, vocab_size: int, embedding_dim: int, *,
                 embedding_path: str = "", freeze_embedding: bool = False,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.dtype = dtype
        self.embedding = word_embedding(vocab_size, embedding_dim, embedding_path=embedding_path,
                                        freeze_embedding=freeze_embedding, rngs=rngs)
        # Keras glorot_normal of a [E] vector: truncated normal whose std is sqrt(1 / E).
        std = math.sqrt(1.0 / embedding_dim) / 0.87962566103423978
        self.agg_token = nnx.Param(
            nnx.initializers.truncated_normal(stddev=std)(rngs.params(), (embedding_dim,)))
        self.pre_proj = _dense(embedding_dim, d_model, dtype, rngs)

    def __call__(self, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        words = embed_words(self.embedding, ids, self.dtype)
        b = ids.shape[0]
        agg = jnp.broadcast_to(self.agg_token[...].astype(words.dtype), (b, 1, words.shape[-1]))
        tokens = jax.nn.gelu(self.pre_proj(jnp.concatenate([agg, words], axis=1)),
                             approximate=False)
        mask = jnp.concatenate([jnp.ones((b, 1), bool), ids != 0], axis=1)
        return tokens, mask


class T5TextBackbone(nnx.Module):
    """The T5 text tower behind the ModalityBackbone interface.

    Call: ids [B, L] int (pad 0) ->
      {"pooled": [B, D] float32 (AGG row after the final norm),
       "layers": list of [B, D] (AGG row of every block; only if return_layers)}.
    ``droptoken`` is accepted for interface parity and ignored: text never uses DropToken.
    """

    def __init__(self, tokenizer: T5TextTokenizer, encoder: T5Encoder):
        self.tokenizer = tokenizer
        self.encoder = encoder

    def __call__(self, ids: jax.Array, *, training: bool = False, rngs: RngsLike = None,
                 return_layers: bool = False, droptoken: bool = True,
                 rows: jax.Array | None = None) -> dict[str, Any]:
        """rows: int32 [B], the global example index of each row: per-example dropout masks
        (vatt.models.row_random); None: one mask for the batch, as before."""
        del droptoken
        dropout_key = row_random.with_rows(stream_key(rngs, "dropout", training), rows)
        tokens, mask = self.tokenizer(ids)
        y, outs = self.encoder(tokens, mask, dropout_key, return_all=return_layers)
        out: dict[str, Any] = {"pooled": y[:, 0].astype(jnp.float32)}
        if return_layers:
            out["layers"] = [o[:, 0].astype(jnp.float32) for o in outs]
        return out
