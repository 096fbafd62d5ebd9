"""Independent NumPy (float64) implementations of the official VATT TF2 forward passes
(google-research/google-research, vatt/), inference mode, written from the official code's
description: the T5 text tower, the ViT video and WaT audio towers (pre-LN transformer with
scaled attention, LayerNorm'd position tables, AGG token), the modality-agnostic UniversalVATT
(one shared transformer; per-modality raw-to-embedding layers, Dense-GELU pre- and
post-projections, LayerNorm'd position tables and AGG vectors) and the FAC heads (BatchNorm with
its moving statistics). Shared by tests/test_t5_text.py and tests/test_convert.py.

Weights are plain dicts of NumPy arrays keyed like the official checkpoint (Keras kernels
[in, out]); nothing here imports vatt.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf


def np_bucket(rel: np.ndarray, num_buckets: int = 32, max_distance: int = 64) -> np.ndarray:
    """Bidirectional T5 bucket of key - query, written from the official description."""
    half = num_buckets // 2
    exact = half // 2
    before = -rel  # > 0 when the key comes first
    offset = np.where(before < 0, half, 0)
    dist = np.abs(before).astype(np.float64)
    with np.errstate(divide="ignore"):
        log_bucket = exact + np.floor(np.log(dist / exact) / np.log(max_distance / exact)
                                      * (half - exact))
    return offset + np.where(dist < exact, dist, np.minimum(log_bucket, half - 1)).astype(int)


def np_gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def np_rms_norm(x, weight, eps=1e-6):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def np_layer_norm(x, gamma, beta, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def np_softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def np_t5_text(ids: np.ndarray, w: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    """Official VATT text module with t5 base_lm, inference: ids [B, L] -> (final hidden states
    [B, 1+L, D], every layer's output). Keys of `w` follow the official checkpoint names."""
    b, length = ids.shape
    words = w["embedding"][ids]
    agg = np.broadcast_to(w["agg_embedding"], (b, 1, words.shape[-1]))
    x = np_gelu(np.concatenate([agg, words], axis=1) @ w["pre_proj"])
    mask = np.concatenate([np.ones((b, 1)), (ids != 0).astype(np.float64)], axis=1)
    n, d = length + 1, x.shape[-1]
    heads = w["relative_attention_bias"].shape[1]
    # Layer 0 computes bias = rel_bias[bucket(memory - context)] + (1 - mask) * -1e9; every
    # later layer receives that same tensor.
    pos = np.arange(n)
    bias = w["relative_attention_bias"][np_bucket(pos[None, :] - pos[:, None])]  # [q, k, h]
    bias = bias.transpose(2, 0, 1)[None] + (1.0 - mask)[:, None, None, :] * -1e9

    def split(t):
        return t.reshape(b, n, heads, d // heads).transpose(0, 2, 1, 3)

    outs = []
    for lw in w["layers"]:
        h = np_rms_norm(x, lw["self_attention/layer_norm/weight"])
        q, k, v = (split(h @ lw[f"self_attention/attention/{m}"]) for m in "qkv")
        attn = np_softmax(q @ k.transpose(0, 1, 3, 2) + bias) @ v  # no 1/sqrt(d_kv)
        x = x + attn.transpose(0, 2, 1, 3).reshape(b, n, d) @ lw["self_attention/attention/o"]
        h = np_layer_norm(x, lw["feed_forward/layer_norm/gamma"],
                          lw["feed_forward/layer_norm/beta"])
        x = x + np_gelu(h @ lw["feed_forward/mlp/wi"]) @ lw["feed_forward/mlp/wo"]
        outs.append(x)
    return np_rms_norm(x, w["final_layer_norm/weight"]), outs


def np_batch_norm(x, w: dict, prefix: str, eps: float = 1e-5):
    """Keras BatchNormalization at inference: moving statistics."""
    mean, var = w[f"{prefix}/moving_mean"], w[f"{prefix}/moving_variance"]
    return (x - mean) / np.sqrt(var + eps) * w[f"{prefix}/gamma"] + w[f"{prefix}/beta"]


def np_encoder(x: np.ndarray, w: dict, prefix: str, num_layers: int, num_heads: int,
               eps: float = 1e-6, mask: np.ndarray | None = None) -> np.ndarray:
    """The official pre-norm TransformerEncoder (``<prefix>tx/...``): x [B, N, D] -> final LN'd
    hidden states. Attention logits are divided by sqrt(d_head); the MLP is Dense-GELU-Dense.
    mask [B, N] (1 = real token): (1 - mask) * -1e9 is added to the logits of every query."""
    b, n, d = x.shape
    bias = 0.0 if mask is None else (1.0 - mask)[:, None, None, :] * -1e9

    def split(t):
        return t.reshape(b, n, num_heads, d // num_heads).transpose(0, 2, 1, 3)

    def dense(h, name):
        return h @ w[f"{name}/kernel"] + w[f"{name}/bias"]

    for i in range(num_layers):
        s = f"{prefix}tx/layers/{i}/"
        h = np_layer_norm(x, w[f"{s}layer_norm/gamma"], w[f"{s}layer_norm/beta"], eps)
        q, k, v = (split(dense(h, f"{s}mha/{m}")) for m in "qkv")
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // num_heads) + bias
        attn = (np_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
        x = x + dense(attn, f"{s}mha/o")
        h = np_layer_norm(x, w[f"{s}feed_forward/layer_norm/gamma"],
                          w[f"{s}feed_forward/layer_norm/beta"], eps)
        x = x + dense(np_gelu(dense(h, f"{s}feed_forward/mlp/wi")), f"{s}feed_forward/mlp/wo")
    return np_layer_norm(x, w[f"{prefix}tx/final_layer_norm/gamma"],
                         w[f"{prefix}tx/final_layer_norm/beta"], eps)


def _with_agg(tokens: np.ndarray, agg: np.ndarray) -> np.ndarray:
    b = tokens.shape[0]
    return np.concatenate([np.broadcast_to(agg, (b, 1, agg.shape[-1])), tokens], axis=1)


def np_dense_gelu(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    """Keras Dense(activation="gelu") (exact GELU): the official pre-/post-projections."""
    return np_gelu(x @ w[f"{name}/kernel"] + w[f"{name}/bias"])


def _voxels_to_patches(video: np.ndarray, w: dict, conv: str) -> tuple[np.ndarray, tuple]:
    """Conv3D ``<conv>`` with stride = kernel: video [B, T, H, W, C] -> ([B, N, D], grid)."""
    kernel = w[f"{conv}/kernel"]  # [t, h, w, C, D]
    t, h, ww, c, d = kernel.shape
    b, big_t, big_h, big_w, _ = video.shape
    gt, gh, gw = big_t // t, big_h // h, big_w // ww
    patches = video.reshape(b, gt, t, gh, h, gw, ww, c)
    x = np.einsum("bxtyhzwc,thwcd->bxyzd", patches, kernel) + w[f"{conv}/bias"]
    return x.reshape(b, gt * gh * gw, d), (gt, gh, gw)


def _wave_to_patches(audio: np.ndarray, w: dict, conv: str) -> np.ndarray:
    """Conv1D ``<conv>`` [P, 1, D] with stride = P: waveform [B, S] -> [B, S/P, D]."""
    kernel = w[f"{conv}/kernel"]
    p = kernel.shape[0]
    b, s = audio.shape
    return audio.reshape(b, s // p, p) @ kernel[:, 0, :] + w[f"{conv}/bias"]


def _spatio_temporal_pos(w: dict, pe: str, grid: tuple) -> np.ndarray:
    """SpatioTemporalEmbeddings at the stored grid: LN(temporal + vertical + horizontal)."""
    gt, gh, gw = grid
    pos = (w[f"{pe}temporal_position_embeddings/embeddings"][:gt, None, None]
           + w[f"{pe}vertical_position_embeddings/embeddings"][None, :gh, None]
           + w[f"{pe}horizontal_position_embeddings/embeddings"][None, None, :gw])
    pos = pos.reshape(gt * gh * gw, -1)
    return np_layer_norm(pos, w[f"{pe}layernorm/gamma"], w[f"{pe}layernorm/beta"])


def _temporal_pos(w: dict, pe: str, n: int) -> np.ndarray:
    """TemporalEmbeddings at the stored length: LN(table[:n])."""
    return np_layer_norm(w[f"{pe}temporal_position_embeddings/embeddings"][:n],
                         w[f"{pe}layernorm/gamma"], w[f"{pe}layernorm/beta"])


def np_vit_video(video: np.ndarray, w: dict, prefix: str, num_layers: int,
                 num_heads: int) -> np.ndarray:
    """Official ViTx3D: video [B, T, H, W, C] -> pooled AGG output [B, D]. With the
    pre_projection / post_projection of a fine-tuned modality-agnostic model when ``w`` holds
    ``<prefix>pre_proj`` / ``<prefix>post_proj``: Dense-GELU after the voxel projection, and
    after the final LayerNorm."""
    x, grid = _voxels_to_patches(video, w, f"{prefix}voxel_to_patch")
    if f"{prefix}pre_proj/kernel" in w:
        x = np_dense_gelu(x, w, f"{prefix}pre_proj")
    x = _with_agg(x + _spatio_temporal_pos(w, f"{prefix}pos_embedding_lookup/", grid),
                  w[f"{prefix}agg_embedding"])
    pooled = np_encoder(x, w, prefix, num_layers, num_heads)[:, 0]
    if f"{prefix}post_proj/kernel" in w:
        pooled = np_dense_gelu(pooled, w, f"{prefix}post_proj")
    return pooled


def np_wat_audio(audio: np.ndarray, w: dict, prefix: str, num_layers: int,
                 num_heads: int) -> np.ndarray:
    """Official WaT: waveform [B, S] -> pooled AGG output [B, D]."""
    x = _wave_to_patches(audio, w, f"{prefix}wave_to_patch")
    x = _with_agg(x + _temporal_pos(w, f"{prefix}pos_embedding_lookup/", x.shape[1]),
                  w[f"{prefix}agg_embedding"])
    return np_encoder(x, w, prefix, num_layers, num_heads)[:, 0]


def np_uvatt(video: np.ndarray, audio: np.ndarray, ids: np.ndarray, w: dict, prefix: str,
             num_layers: int, num_heads: int) -> dict:
    """Official UniversalVATT (``<prefix>`` = ".../unified_transformer/"), inference, at the
    stored position-table sizes: {"video": [B, Dp], "audio": [B, Dp], "text": [B, Dp]} pooled
    outputs. Per modality: raw-to-embedding (Conv3D / Conv1D / word table) -> pre_proj Dense-GELU
    -> + LayerNorm'd positions -> prepend the modality's AGG vector -> the ONE shared encoder
    (text: padding mask, AGG always attended) -> AGG output -> post_proj Dense-GELU."""
    pe, raw = f"{prefix}pos_embedding_lookup/", f"{prefix}raw_to_embeddings/"
    x, grid = _voxels_to_patches(video, w, f"{raw}video")
    tokens = {"video": x, "audio": _wave_to_patches(audio, w, f"{raw}audio"),
              "text": w[f"{raw}text/embeddings"][ids]}
    masks = {"text": np.concatenate([np.ones((ids.shape[0], 1)), (ids != 0) * 1.0], axis=1)}
    out = {}
    for m, agg in (("video", "vid"), ("audio", "aud"), ("text", "txt")):
        x = np_dense_gelu(tokens[m], w, f"{prefix}pre_proj/{m}")
        pos = (_spatio_temporal_pos(w, f"{pe}{m}/", grid) if m == "video"
               else _temporal_pos(w, f"{pe}{m}/", x.shape[1]))
        x = _with_agg(x + pos, w[f"{prefix}{agg}_agg_embedding"])
        pooled = np_encoder(x, w, prefix, num_layers, num_heads, mask=masks.get(m))[:, 0]
        out[m] = np_dense_gelu(pooled, w, f"{prefix}post_proj/{m}")
    return out


def t5_weights(w: dict, prefix: str, num_layers: int) -> dict:
    """The official text module's flat weights (``<prefix>`` = ".../txt_backbone/") in the
    nested layout np_t5_text reads."""
    lm = f"{prefix}base_lm/"
    names = ("self_attention/layer_norm/weight", "feed_forward/layer_norm/gamma",
             "feed_forward/layer_norm/beta")
    return {
        "embedding": w[f"{prefix}embedding/embeddings"],
        "agg_embedding": w[f"{prefix}agg_embedding"],
        "pre_proj": w[f"{prefix}pre_proj/kernel"],
        "relative_attention_bias":
            w[f"{lm}layers/0/self_attention/attention/relative_attention_bias/embeddings"],
        "final_layer_norm/weight": w[f"{lm}final_layer_norm/weight"],
        "layers": [{
            **{n: w[f"{lm}layers/{i}/{n}"] for n in names},
            **{f"self_attention/attention/{m}": w[f"{lm}layers/{i}/self_attention/attention/{m}/kernel"]
               for m in "qkvo"},
            "feed_forward/mlp/wi": w[f"{lm}layers/{i}/feed_forward/mlp/wi/kernel"],
            "feed_forward/mlp/wo": w[f"{lm}layers/{i}/feed_forward/mlp/wo/kernel"],
        } for i in range(num_layers)],
    }


def np_fac_heads(video: np.ndarray, audio: np.ndarray, text: np.ndarray, w: dict,
                 prefix: str) -> dict:
    """Official FACHead at inference on pooled features -> {"video": {"va", "vt"},
    "audio": {"va"}, "text": {"vt"}}."""
    relu = lambda z: np.maximum(z, 0.0)
    hid = video @ w[f"{prefix}vid_to_hid/kernel"]
    hid = np_batch_norm(hid, w, f"{prefix}hid_to_va/pre_bn")
    va = np_batch_norm(relu(hid) @ w[f"{prefix}hid_to_va/dense/kernel"], w,
                       f"{prefix}hid_to_va/bn")
    vt = np_batch_norm(relu(va) @ w[f"{prefix}va_to_vat/dense/kernel"], w,
                       f"{prefix}va_to_vat/bn")
    a = audio @ w[f"{prefix}aud_to_va/kernel"] + w[f"{prefix}aud_to_va/bias"]
    t = text @ w[f"{prefix}txt_to_vat/kernel"] + w[f"{prefix}txt_to_vat/bias"]
    return {"video": {"va": va, "vt": vt}, "audio": {"va": a}, "text": {"vt": t}}
