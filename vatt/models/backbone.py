"""A modality backbone = tokenizer (+ positions, AGG token) followed by a transformer encoder.

Forward: tokens (+pos) -> dropout -> DropToken (video/audio, training only) -> prepend AGG
(no position) -> pre-LN encoder -> final LN [-> dropout: model.final_dropout]
[-> post_proj: Dense(d_post, GELU)]; the AGG output is the clip embedding ("pooled"). The optional ``post_proj`` is the official modality-agnostic
model's post-transformer projection (and that of the ViT/WaT of MA fine-tuned checkpoints); the
official code applies it to every token, here to the AGG token only, the one output used.
For the modality-agnostic variant the same ``Encoder`` object is used by every modality's
``ModalityBackbone`` (``VATT.backbone(modality)`` builds that view).
"""

from __future__ import annotations

from typing import Any, Mapping, Union

import jax
import jax.numpy as jnp
from flax import nnx
from flax.errors import TraceContextError

from vatt.models import row_random
from vatt.models.droptoken import drop_tokens
from vatt.models.tokenizers import AudioTokenizer, TextTokenizer, VideoTokenizer
from vatt.models.transformer import Encoder


RngsLike = Union[nnx.Rngs, Mapping[str, jax.Array], None]


def stream_key(rngs: RngsLike, name: str, training: bool) -> jax.Array | None:
    """A key for stream `name` ('dropout' | 'droptoken') when training, else None.

    rngs: an nnx.Rngs (its stream is advanced, falling back to 'default'), or a mapping
    {name: key} of raw PRNG keys (used as given; handy inside a functional jax.grad step).
    """
    if not training:
        return None
    if rngs is None:
        raise ValueError(f"training=True needs rngs with a {name!r} stream at call time, e.g. "
                         f"model(..., training=True, rngs=nnx.Rngs(dropout=k1, droptoken=k2)).")
    if isinstance(rngs, Mapping):
        return rngs[name]
    try:
        return rngs[name]() if name in rngs else rngs.default()
    except TraceContextError as e:
        raise ValueError(
            "The nnx.Rngs passed to the model was created outside the current transform (e.g. "
            "captured by a function given to jax.grad) and cannot be advanced there. Create the "
            "nnx.Rngs inside that function, pass it as an argument of the nnx transform, or pass "
            "rngs={'dropout': key1, 'droptoken': key2} (raw keys).") from e


def fold_rngs(rngs: RngsLike, data: int) -> RngsLike:
    """Mapping of raw keys -> the same mapping with every key folded with `data` (so each
    modality draws different randomness); nnx.Rngs and None are returned unchanged."""
    if isinstance(rngs, Mapping):
        return {k: jax.random.fold_in(v, data) for k, v in rngs.items()}
    return rngs


class ModalityBackbone(nnx.Module):
    """Tokenizer + encoder of one modality.

    Call: x (video [B,T,H,W,3] | audio [B,S] | text ids [B,L]) ->
      {"pooled": [B, D] float32 (AGG output after the final LN [and post_proj]),
       "layers": list of [B, D] (AGG output of every block; only if return_layers)}.
    """

    def __init__(self, tokenizer: VideoTokenizer | AudioTokenizer | TextTokenizer,
                 encoder: Encoder, *, droptoken_keep: float = 1.0,
                 droptoken_mode: str = "batch", dropout_rate: float = 0.1,
                 post_proj: nnx.Linear | None = None):
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.post_proj = post_proj
        self.droptoken_keep = float(droptoken_keep)
        self.droptoken_mode = droptoken_mode
        self.embed_dropout = nnx.Dropout(dropout_rate)

    @property
    def output_dim(self) -> int:
        """Width of "pooled": the post-projection's, else the encoder's."""
        return self.post_proj.out_features if self.post_proj is not None else self.encoder.d_model

    def __call__(self, x: jax.Array, *, training: bool = False, rngs: RngsLike = None,
                 return_layers: bool = False, droptoken: bool = True,
                 rows: jax.Array | None = None) -> dict[str, Any]:
        """droptoken=False disables DropToken even when training (fine-tuning).

        rows: int32 [B], the global example index of each row of x. Given, every dropout mask
        and DropToken "sample" subset of row b is drawn from (key, rows[b])
        (vatt.models.row_random), so a row's randomness does not depend on the rest of the
        batch: what contrastive gradient accumulation needs (vatt.train.grad_cache). None:
        one draw for the whole batch, as before.
        """
        dropout_key = row_random.with_rows(stream_key(rngs, "dropout", training), rows)
        mask = None
        if isinstance(self.tokenizer, TextTokenizer):
            tokens, mask = self.tokenizer(x)
        else:
            tokens = self.tokenizer(x)
        k_embed = k_enc = None
        if dropout_key is not None:
            k_embed, k_enc = row_random.split(dropout_key, 2)
        tokens = row_random.dropout(self.embed_dropout, tokens, deterministic=not training,
                                    key=k_embed)
        # DropToken never on text (it carries the pad mask), never at evaluation.
        if training and droptoken and mask is None and self.droptoken_keep < 1.0:
            key = row_random.with_rows(stream_key(rngs, "droptoken", True), rows)
            tokens = drop_tokens(tokens, self.droptoken_keep, key, self.droptoken_mode)
        b = tokens.shape[0]
        agg = jnp.broadcast_to(self.tokenizer.agg_token[...].astype(tokens.dtype),
                               (b, 1, tokens.shape[-1]))
        tokens = jnp.concatenate([agg, tokens], axis=1)
        if mask is not None:
            mask = jnp.concatenate([jnp.ones((b, 1), bool), mask], axis=1)
        y, outs = self.encoder(tokens, mask, k_enc, return_all=return_layers)
        pooled = y[:, 0]
        if self.post_proj is not None:
            pooled = jax.nn.gelu(self.post_proj(pooled), approximate=False)
        out: dict[str, Any] = {"pooled": pooled.astype(jnp.float32)}
        if return_layers:
            out["layers"] = [o[:, 0].astype(jnp.float32) for o in outs]
        return out
