"""Model configuration helpers: ``model_config(variant)`` returns the ``config.model`` ConfigDict.

Key layout (shared with the trainer, see SPEC.md)::

  backbone: "modality_specific" | "shared"
  video: num_layers, d_model, mlp_dim, num_heads, patch_size (t, h, w), input_size (T, H, W),
         droptoken_keep, pre_proj, post_proj_dim
  audio: num_layers, d_model, mlp_dim, num_heads, patch_size (samples), input_samples,
         droptoken_keep, pre_proj, post_proj_dim
  text:  kind "t5"|"transformer", num_layers, d_model, mlp_dim, num_heads, vocab_size, max_len,
         embedding_dim, embedding_path ('' = learned), freeze_embedding,
         num_relative_buckets, max_relative_distance (kind "t5" only),
         pre_proj, post_proj_dim, pos_layernorm (kind "transformer" only)
  shared (backbone == "shared" only): num_layers, d_model, mlp_dim, num_heads
  head:  kind "fac"|"shared"|"disjoint", va_dim, vt_dim, bn_placement "official"|"paper",
         bn_momentum, bn_eps, bias_before_bn (False = official bias-free Linear before each BN)
  dropout_rate, attention_dropout_rate, final_dropout, init_scheme, pos_interpolation, dtype,
  attention_impl, remat_policy, droptoken_mode

Official numerics (the official TF2 code), each a default of the paper variants (bbs, mbs, lbs,
ma_medium) with tiny / ma_tiny keeping the earlier behaviour (their programs and numbers are
unchanged):
  attention_dropout_rate  dropout on the attention probabilities of the video / audio / MA
                          encoders (official 0.1; tiny 0.0). The T5 text tower always drops its
                          attention weights at dropout_rate.
  final_dropout           dropout (dropout_rate) after the encoder's final LayerNorm (official
                          True; tiny False).
  init_scheme             "official": Keras' initialisers (voxel / waveform projections
                          Glorot-uniform with Conv3D / Conv1D fans, fan_in = k*c_in and
                          fan_out = k*d for a kernel of k taps; position tables truncated normal
                          with stddev d^-0.5; AGG tokens Glorot-normal; Dense layers
                          Glorot-uniform); "legacy": N(0, 0.02) tables and tokens, LeCun-normal
                          projections (tiny).
  pos_interpolation       "spline": position tables are resized with the official polyharmonic
                          spline (order 3) on the official grid (row i of n at i/n); "linear":
                          jax.image.resize (tiny).
  text.freeze_embedding   True freezes the word table read from text.embedding_path (the official
                          word2vec setting); True without a file is an error. Default False: a
                          learned table, or a loaded one that keeps training.

For the shared (modality-agnostic) backbone the per-modality ``num_layers/mlp_dim/num_heads`` are
ignored and ``d_model`` of every modality must equal ``shared.d_model`` (the tokenizers project to
the shared width).

Modality-agnostic projections of the official VATT-MA (uvatt.py), one switch per modality:
``pre_proj`` adds a Dense(d_model, GELU) after the raw-to-embedding layer (video / audio: a new
d x d layer after the voxel / segment projection; text: GELU after the word-vector projection,
which is the official Dense(d, GELU)); ``post_proj_dim`` > 0 adds a Dense(post_proj_dim, GELU)
after the final LayerNorm (the pooled output and the heads' input then have that width);
``text.pos_layernorm`` LayerNorms the text position table as for video and audio. ma_medium turns
them all on (post_proj_dim 1024; exactly the official ut_medium checkpoint's variables); ma_tiny
and the modality-specific variants leave them off. The same ``pre_proj`` / ``post_proj_dim`` of
video or audio give the ViT / WaT of an official MA fine-tuned checkpoint.

Text tower (``text.kind``): "t5" is the official BBS/MBS/LBS text backbone, a T5 encoder with a
relative position bias (vatt.models.t5_text; the default of bbs/mbs/lbs); "transformer" is the
pre-LN encoder of the video/audio towers fed by word vectors + learned absolute positions (the
default of tiny; the shared MA variants always use it, as the official modality-agnostic model).

Paper variants (VATT, Akbari et al. 2021): BBS (video Base, audio Base, text Small), MBS (Medium,
Base, Small), LBS (Large, Base, Small), MA-Medium (one shared Medium transformer). Inputs: video
32x224x224 with 4x16x16 voxels (1568 tokens), audio 153600 samples (3.2 s at 48 kHz) with 128-sample
segments (1200 tokens), text vocabulary 2^16, 16 words, DropToken keep 0.5 on video and audio.

Tiny (CPU) variant: widths 32/64 and 1 layer on 8x32x32 video and 3200 audio samples, for tests and
laptop runs. Build any other small model by overriding numbers::

  cfg = model_config("tiny"); cfg.video.num_layers = 2; cfg.video.input_size = (4, 32, 32)
"""

from __future__ import annotations

from typing import Any

import ml_collections

# (num_layers, d_model, mlp_dim, num_heads) of the paper's transformer sizes.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (1, 32, 64, 2),
    "small": (6, 512, 2048, 8),
    "base": (12, 768, 3072, 12),
    "medium": (12, 1024, 4096, 16),
    "large": (24, 1024, 4096, 16),
}

# Variant name -> (video size, audio size, text size) for the modality-specific backbones.
MODALITY_SPECIFIC_VARIANTS: dict[str, tuple[str, str, str]] = {
    "tiny": ("tiny", "tiny", "tiny"),
    "bbs": ("base", "base", "small"),
    "mbs": ("medium", "base", "small"),
    "lbs": ("large", "base", "small"),
}
SHARED_VARIANTS: dict[str, str] = {"ma_medium": "medium", "ma_tiny": "tiny"}
VARIANTS: tuple[str, ...] = tuple(MODALITY_SPECIFIC_VARIANTS) + tuple(SHARED_VARIANTS)
# Variants with the official modality-agnostic pre/post projections (see the module docstring).
OFFICIAL_MA_PROJECTIONS = ("ma_medium",)


def transformer_size(size: str) -> dict[str, int]:
    """Returns {num_layers, d_model, mlp_dim, num_heads} of a named size (tiny/small/base/...)."""
    if size not in SIZES:
        raise ValueError(f"Unknown transformer size {size!r}; choose one of {sorted(SIZES)}.")
    num_layers, d_model, mlp_dim, num_heads = SIZES[size]
    return dict(num_layers=num_layers, d_model=d_model, mlp_dim=mlp_dim, num_heads=num_heads)


def _projections(variant: str) -> dict[str, Any]:
    """pre_proj / post_proj_dim of one modality: the official MA's for ma_medium, else off."""
    on = variant in OFFICIAL_MA_PROJECTIONS
    return dict(pre_proj=on, post_proj_dim=1024 if on else 0)


def _modality(size: str, **extra: Any) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({**transformer_size(size), **extra})


def model_config(variant: str = "tiny") -> ml_collections.ConfigDict:
    """Returns the ``config.model`` ConfigDict of a named variant.

    Args:
      variant: "tiny", "bbs", "mbs", "lbs", "ma_medium" (paper shapes) or "ma_tiny" (CPU shared).

    Returns:
      ConfigDict with the key layout of the module docstring; every number may be overridden.
    """
    variant = variant.lower().replace("-", "_")
    tiny = variant in ("tiny", "ma_tiny")
    if variant in MODALITY_SPECIFIC_VARIANTS:
        v_size, a_size, t_size = MODALITY_SPECIFIC_VARIANTS[variant]
        backbone = "modality_specific"
    elif variant in SHARED_VARIANTS:
        v_size = a_size = t_size = SHARED_VARIANTS[variant]
        backbone = "shared"
    else:
        raise ValueError(f"Unknown model variant {variant!r}; choose one of {list(VARIANTS)}.")

    cfg = ml_collections.ConfigDict()
    cfg.variant = variant
    cfg.backbone = backbone
    cfg.video = _modality(
        v_size,
        patch_size=(4, 16, 16) if not tiny else (4, 8, 8),
        input_size=(32, 224, 224) if not tiny else (8, 32, 32),
        droptoken_keep=0.5,
        **_projections(variant),
    )
    cfg.audio = _modality(
        a_size,
        patch_size=128 if not tiny else 64,
        input_samples=153_600 if not tiny else 3_200,
        droptoken_keep=0.5,
        **_projections(variant),
    )
    cfg.text = _modality(
        t_size,
        # Official BBS/MBS/LBS text tower: T5 (t5_small). Tiny keeps the cheap pre-LN tower, and the
        # shared (MA) variants run text through the one shared transformer.
        kind="t5" if variant in ("bbs", "mbs", "lbs") else "transformer",
        vocab_size=2**16 if not tiny else 1024,
        max_len=16,
        # 300 = word2vec width of the official code; the embedding is followed by a learned
        # projection to d_model either way.
        embedding_dim=300 if not tiny else 16,
        embedding_path="",
        # Official: the frozen word2vec table (embedding_path=<.npy>, freeze_embedding=True).
        # Freezing without a file is an error (a random frozen table would be useless).
        freeze_embedding=False,
        # T5 relative position bias (official t5_small): bidirectional buckets over key - query.
        num_relative_buckets=32,
        max_relative_distance=64,
        **_projections(variant),
        pos_layernorm=variant in OFFICIAL_MA_PROJECTIONS,
    )
    if backbone == "shared":
        cfg.shared = ml_collections.ConfigDict(transformer_size(v_size))
    cfg.head = ml_collections.ConfigDict(
        dict(kind="fac", va_dim=512 if not tiny else 32, vt_dim=256 if not tiny else 16,
             bn_placement="official", bn_momentum=0.9, bn_eps=1e-5,
             # Official FAC heads: no bias on a Linear that feeds a BatchNorm (BN cancels it);
             # tiny keeps its biases so its programs and checkpoints stay as they were.
             bias_before_bn=tiny)
    )
    cfg.dropout_rate = 0.1
    # Official numerics (module docstring); tiny / ma_tiny keep the earlier behaviour.
    cfg.attention_dropout_rate = 0.0 if tiny else 0.1
    cfg.final_dropout = not tiny
    cfg.init_scheme = "legacy" if tiny else "official"
    cfg.pos_interpolation = "linear" if tiny else "spline"
    cfg.dtype = "float32"
    cfg.attention_impl = "xla"
    cfg.remat_policy = "none"
    cfg.droptoken_mode = "batch"
    return cfg
