"""The VATT model: modality backbones (or one shared backbone) plus common-space heads.

Attribute (= checkpoint path) layout:
  modality_specific: video_backbone, audio_backbone, text_backbone (each a ModalityBackbone with
    .tokenizer and .encoder; the text one a T5TextBackbone, same interface, when
    model.text.kind == "t5"), heads.
  shared (VATT-MA): video_tokenizer, audio_tokenizer, text_tokenizer (modality-specific
    tokenizers, input projections, positions and AGG tokens), shared_backbone (one Encoder),
    [video_post_proj, audio_post_proj, text_post_proj (model.<m>.post_proj_dim > 0)], heads.
Official modality-agnostic projections (model.<m>.pre_proj, model.<m>.post_proj_dim,
model.text.pos_layernorm; all on in ma_medium): a Dense(d, GELU) after each raw-to-embedding layer
(the tokenizer's ``pre_proj``; for text its ``embedding_proj`` gains the GELU), LayerNorm'd text
positions, and a Dense(post_proj_dim, GELU) after the final LayerNorm (the backbone's
``post_proj``: ``{m}_backbone/post_proj`` when modality-specific, as in the ViT/WaT of MA
fine-tuned checkpoints).
``VATT.backbone(modality)`` returns a ModalityBackbone for either layout (for the shared layout a
view over the modality's tokenizer and the shared encoder), e.g. to fine-tune one modality.
The forward pass is two halves, ``model(...) == model.project(model.features(...))``: the
backbones to pooled per-modality features, then the common-space heads (with their BatchNorm).
Contrastive gradient accumulation (vatt.train.grad_cache) runs the first half in chunks and the
second once on the whole batch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from vatt.models import row_random
from vatt.models.backbone import ModalityBackbone, RngsLike, fold_rngs
from vatt.models.heads import CommonSpaceHeads
from vatt.models.t5_text import T5Encoder, T5TextBackbone, T5TextTokenizer
from vatt.models.tokenizers import AudioTokenizer, TextTokenizer, VideoTokenizer
from vatt.models.transformer import Encoder

MODALITIES = ("video", "audio", "text")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# model.dtype may also be "auto": bfloat16 compute on accelerators (GPU, TPU), float32 on CPU,
# where bfloat16 matmuls are emulated and slower than float32. Parameters stay float32 either
# way, so a checkpoint does not depend on where it was trained.
DTYPE_CHOICES = tuple(DTYPES) + ("auto",)
ACCELERATOR_BACKENDS = ("gpu", "tpu")
# model.text.kind: the official T5 text tower, or the pre-LN transformer of the other modalities.
TEXT_KINDS = ("t5", "transformer")


def compute_dtype(name: str) -> Any:
    """'float32' | 'bfloat16' | 'float16' | 'auto' -> jnp dtype ('auto': bfloat16 when JAX's
    default backend is an accelerator, else float32)."""
    if name == "auto":
        return jnp.bfloat16 if jax.default_backend() in ACCELERATOR_BACKENDS else jnp.float32
    if name not in DTYPES:
        raise ValueError(f"model.dtype={name!r}; choose one of {sorted(DTYPE_CHOICES)}.")
    return DTYPES[name]


def official_numerics(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    """The official-numerics switches of config.model (vatt.models.configs); keys absent from
    configs written before them read as the earlier behaviour."""
    return dict(attention_dropout_rate=float(cfg.get("attention_dropout_rate", 0.0)),
                final_dropout=bool(cfg.get("final_dropout", False)),
                init_scheme=str(cfg.get("init_scheme", "legacy")),
                pos_interpolation=str(cfg.get("pos_interpolation", "linear")))


def _make_tokenizer(modality: str, cfg: ml_collections.ConfigDict, d_model: int, dtype: Any,
                    rngs: nnx.Rngs) -> VideoTokenizer | AudioTokenizer | TextTokenizer:
    # Keys absent from configs written before them read as off.
    pre_proj = bool(cfg[modality].get("pre_proj", False))
    num = official_numerics(cfg)
    tables = dict(init_scheme=num["init_scheme"], pos_interpolation=num["pos_interpolation"])
    if modality == "video":
        m = cfg.video
        return VideoTokenizer(d_model, m.patch_size, m.input_size, pre_proj=pre_proj, dtype=dtype,
                              rngs=rngs, **tables)
    if modality == "audio":
        m = cfg.audio
        return AudioTokenizer(d_model, m.patch_size, m.input_samples, pre_proj=pre_proj,
                              dtype=dtype, rngs=rngs, **tables)
    m = cfg.text
    return TextTokenizer(d_model, m.vocab_size, m.max_len, m.embedding_dim,
                         embedding_path=m.embedding_path,
                         freeze_embedding=m.freeze_embedding, pre_proj=pre_proj,
                         pos_layernorm=bool(m.get("pos_layernorm", False)),
                         init_scheme=num["init_scheme"], dtype=dtype, rngs=rngs)


def post_proj_dim(cfg: ml_collections.ConfigDict, modality: str) -> int:
    """model.<modality>.post_proj_dim (0 = no post-transformer projection; absent = 0)."""
    return int(cfg[modality].get("post_proj_dim", 0) or 0)


def _make_post_proj(modality: str, cfg: ml_collections.ConfigDict, d_model: int, dtype: Any,
                    rngs: nnx.Rngs) -> nnx.Linear | None:
    """The official post-transformer projection Dense(post_proj_dim) (GELU applied by the
    backbone; Keras' Glorot-uniform kernel, zero bias), or None."""
    dim = post_proj_dim(cfg, modality)
    if not dim:
        return None
    return nnx.Linear(d_model, dim, dtype=dtype, kernel_init=nnx.initializers.xavier_uniform(),
                      rngs=rngs)


def _make_encoder(size: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict, dtype: Any,
                  rngs: nnx.Rngs) -> Encoder:
    num = official_numerics(cfg)
    return Encoder(size.num_layers, size.d_model, size.mlp_dim, size.num_heads, dtype=dtype,
                   dropout_rate=cfg.dropout_rate, attention_impl=cfg.attention_impl,
                   remat_policy=cfg.remat_policy,
                   attention_dropout_rate=num["attention_dropout_rate"],
                   final_dropout=num["final_dropout"], rngs=rngs)


def text_kind(cfg: ml_collections.ConfigDict) -> str:
    """model.text.kind ("transformer" when the key is absent, as in configs written before it)."""
    kind = cfg.text.get("kind", "transformer")
    if kind not in TEXT_KINDS:
        raise ValueError(f"model.text.kind={kind!r}; choose one of {TEXT_KINDS}.")
    if kind == "t5" and cfg.backbone != "modality_specific":
        raise ValueError("model.text.kind='t5' needs model.backbone='modality_specific': the "
                         "shared (VATT-MA) backbone runs text through the shared transformer; "
                         "set model.text.kind='transformer'.")
    if kind == "t5" and (cfg.text.get("pre_proj", False) or post_proj_dim(cfg, "text")
                         or cfg.text.get("pos_layernorm", False)):
        raise ValueError("model.text.pre_proj / post_proj_dim / pos_layernorm belong to the "
                         "modality-agnostic text path; the T5 text tower (model.text.kind='t5') "
                         "has its own pre-projection: set them to False / 0 / False.")
    return kind


def _make_t5_text_backbone(cfg: ml_collections.ConfigDict, dtype: Any,
                           rngs: nnx.Rngs) -> T5TextBackbone:
    m = cfg.text
    tokenizer = T5TextTokenizer(m.d_model, m.vocab_size, m.embedding_dim,
                                embedding_path=m.embedding_path,
                                freeze_embedding=m.freeze_embedding, dtype=dtype, rngs=rngs)
    encoder = T5Encoder(m.num_layers, m.d_model, m.mlp_dim, m.num_heads,
                        num_buckets=m.get("num_relative_buckets", 32),
                        max_distance=m.get("max_relative_distance", 64), dtype=dtype,
                        dropout_rate=cfg.dropout_rate, remat_policy=cfg.remat_policy, rngs=rngs)
    return T5TextBackbone(tokenizer, encoder)


class VATT(nnx.Module):
    """Video-Audio-Text transformer with MMV common-space heads.

    Call: model(video=[B,T,H,W,3] | None, audio=[B,S] | None, text=int [B,K,L] or [B,L] | None,
                training=bool, rngs=nnx.Rngs(dropout=..., droptoken=...) | {"dropout": key,
                "droptoken": key} | None (needed only when training),
                return_layers=False) ->
      {"video": {"pooled": [B,Dv], "va": [B,va], "vt": [B,vt]},
       "audio": {"pooled": [B,Da], "va": [B,va]},
       "text":  {"pooled": [B,K,Dt], "vt": [B,K,vt]}}   (K absent for [B,L] text)
      plus "layers": list of per-block AGG outputs ([B,d] / [B,K,d]) with return_layers=True.
    """

    def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        cfg = config
        self.kind = cfg.backbone
        dtype = compute_dtype(cfg.dtype)
        self.droptoken_keep = {"video": float(cfg.video.droptoken_keep),
                               "audio": float(cfg.audio.droptoken_keep), "text": 1.0}
        self.droptoken_mode = cfg.droptoken_mode
        self.dropout_rate = float(cfg.dropout_rate)
        t5_text = text_kind(cfg) == "t5"
        if cfg.backbone == "modality_specific":
            for m in MODALITIES:
                mc = cfg[m]
                if m == "text" and t5_text:
                    self.text_backbone = _make_t5_text_backbone(cfg, dtype, rngs)
                    continue
                backbone = ModalityBackbone(
                    _make_tokenizer(m, cfg, mc.d_model, dtype, rngs),
                    _make_encoder(mc, cfg, dtype, rngs),
                    droptoken_keep=self.droptoken_keep[m], droptoken_mode=cfg.droptoken_mode,
                    dropout_rate=cfg.dropout_rate,
                    post_proj=_make_post_proj(m, cfg, mc.d_model, dtype, rngs))
                setattr(self, f"{m}_backbone", backbone)
            dims = [post_proj_dim(cfg, m) or cfg[m].d_model for m in MODALITIES]
        elif cfg.backbone == "shared":
            d = cfg.shared.d_model
            for m in MODALITIES:
                setattr(self, f"{m}_tokenizer", _make_tokenizer(m, cfg, d, dtype, rngs))
            self.shared_backbone = _make_encoder(cfg.shared, cfg, dtype, rngs)
            for m in MODALITIES:
                setattr(self, f"{m}_post_proj", _make_post_proj(m, cfg, d, dtype, rngs))
            dims = [post_proj_dim(cfg, m) or d for m in MODALITIES]
        else:
            raise ValueError(f"model.backbone={cfg.backbone!r}; choose 'modality_specific' or "
                             "'shared'.")
        h = cfg.head
        self.heads = CommonSpaceHeads(*dims, kind=h.kind, va_dim=h.va_dim, vt_dim=h.vt_dim,
                                      bn_placement=h.bn_placement, bn_momentum=h.bn_momentum,
                                      bn_eps=h.bn_eps,
                                      bias_before_bn=h.get("bias_before_bn", True), rngs=rngs)

    def backbone(self, modality: str) -> ModalityBackbone | T5TextBackbone:
        """The ModalityBackbone of `modality` (a view over the shared encoder for VATT-MA; the
        T5TextBackbone, same interface, for text of kind "t5")."""
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; choose one of {MODALITIES}.")
        if self.kind == "modality_specific":
            return getattr(self, f"{modality}_backbone")
        return ModalityBackbone(getattr(self, f"{modality}_tokenizer"), self.shared_backbone,
                                droptoken_keep=self.droptoken_keep[modality],
                                droptoken_mode=self.droptoken_mode, dropout_rate=self.dropout_rate,
                                post_proj=getattr(self, f"{modality}_post_proj"))

    def encode(self, modality: str, x: jax.Array, *, training: bool = False,
               rngs: RngsLike = None, return_layers: bool = False,
               rows: jax.Array | None = None) -> dict[str, Any]:
        """Backbone only. Text [B,K,L] is folded to [B*K,L] and unfolded: pooled [B,K,D].

        rows: int32 [B], the global example index of each clip: per-example randomness
        (ModalityBackbone); the K captions of clip b draw as rows b*K..b*K+K-1.
        """
        lead = None
        if modality == "text" and x.ndim == 3:
            lead = x.shape[:2]
            x = x.reshape(-1, x.shape[-1])
            rows = row_random.repeat_rows(rows, lead[1])
        rngs = fold_rngs(rngs, MODALITIES.index(modality))
        out = self.backbone(modality)(x, training=training, rngs=rngs,
                                      return_layers=return_layers, rows=rows)
        if lead is not None:
            out = jax.tree.map(lambda a: a.reshape(*lead, a.shape[-1]), out)
        return out

    def features(self, video: jax.Array | None = None, audio: jax.Array | None = None,
                 text: jax.Array | None = None, *, training: bool = False,
                 rngs: RngsLike = None, return_layers: bool = False,
                 rows: jax.Array | None = None) -> dict[str, dict[str, Any]]:
        """The backbones only: {m: {"pooled": [B, D_m] (text [B, K, D_t]), ["layers"]}} for
        the given modalities, drawn in the order video, audio, text (an nnx.Rngs advances in
        that order). Row b depends on row b of the inputs only (no batch statistics), which is
        what lets vatt.train.grad_cache compute it in chunks.
        rows: int32 [B] global example indices: per-example randomness (see encode)."""
        inputs = {"video": video, "audio": audio, "text": text}
        return {m: self.encode(m, x, training=training, rngs=rngs, return_layers=return_layers,
                               rows=rows)
                for m, x in inputs.items() if x is not None}

    def project(self, features: dict[str, dict[str, Any]], *,
                training: bool = False) -> dict[str, dict[str, Any]]:
        """The common-space heads on `features` (VATT.features' output): a new dict with each
        modality's entries plus its "va" / "vt" embeddings. BatchNorm statistics are those of
        the rows given (the whole global batch under jit)."""
        out = {m: dict(o) for m, o in features.items()}
        spaces = self.heads({m: o["pooled"] for m, o in out.items()}, training=training)
        for m, emb in spaces.items():
            out[m].update(emb)
        return out

    def __call__(self, video: jax.Array | None = None, audio: jax.Array | None = None,
                 text: jax.Array | None = None, *, training: bool = False,
                 rngs: RngsLike = None,
                 return_layers: bool = False) -> dict[str, dict[str, Any]]:
        return self.project(self.features(video, audio, text, training=training, rngs=rngs,
                                          return_layers=return_layers), training=training)


def build_model(model_config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> VATT:
    """Builds the VATT model of ``config.model`` (see vatt.models.configs). rngs needs 'params'."""
    return VATT(model_config, rngs=rngs)
