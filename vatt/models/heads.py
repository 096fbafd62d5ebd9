"""Common-space projection heads (MMV, Alayrac et al. 2020) on the pooled backbone outputs.

Output spaces (embeddings are NOT L2-normalised; the losses normalise):

kind="fac" (default; fine-and-coarse):
  video -> S_va [va_dim]:  Linear(va) -> BN -> ReLU -> Linear(va) -> BN          (video_va)
  S_va(video) -> S_vt [vt_dim]: ReLU -> Linear(vt) -> BN                          (video_va_to_vt)
  audio -> S_va [va_dim]:  Linear(va)  (+BN with bn_placement="paper")            (audio_va)
  text  -> S_vt [vt_dim]:  Linear(vt)  (+BN with bn_placement="paper")            (text_vt)
kind="shared" (one space S of width va_dim for all modalities):
  video -> S: Linear -> BN -> ReLU -> Linear -> BN (video); audio -> S: Linear (audio);
  text -> S: Linear (text); out["video"]["va"] is out["video"]["vt"] (the same array).
kind="disjoint" (separate spaces straight from the backbone):
  video -> S_va [va_dim]: 2-layer MLP (video_va); video -> S_vt [vt_dim]: 2-layer MLP (video_vt);
  audio -> S_va: Linear (audio_va); text -> S_vt: Linear (text_vt).

bias_before_bn: whether a Linear feeding a BatchNorm carries a bias. BN subtracts the batch mean,
so such a bias does nothing; the official FAC head has none (vid_to_hid, hid_to_va and va_to_vat
are bias-free), which is what the paper variants use (model.head.bias_before_bn=False) so that
the released checkpoints map one to one (vatt.convert); tiny keeps its biases (True).

Batch norm: nnx.BatchNorm, momentum 0.9, eps 1e-5, batch statistics when training and running
averages at evaluation. Under jax.jit over a globally sharded batch the mean/variance reductions
span the global batch, i.e. this is synchronised BN with no axis_name needed. Text [B, K, D] is
flattened to [B*K, D] for BN (every candidate caption counts, padded ones included: kept simple).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from flax import nnx

HEAD_KINDS = ("fac", "shared", "disjoint")
BN_PLACEMENTS = ("official", "paper")


class LinearBN(nnx.Module):
    """[optional ReLU] -> Linear -> [optional BN]. x [..., D_in] -> [..., D_out]."""

    def __init__(self, d_in: int, d_out: int, *, use_bn: bool, pre_relu: bool = False,
                 bn_momentum: float = 0.9, bn_eps: float = 1e-5, bias_before_bn: bool = True,
                 rngs: nnx.Rngs):
        self.pre_relu = pre_relu
        self.fc = nnx.Linear(d_in, d_out, use_bias=bias_before_bn or not use_bn, rngs=rngs)
        self.bn = (nnx.BatchNorm(d_out, momentum=bn_momentum, epsilon=bn_eps, rngs=rngs)
                   if use_bn else None)

    def __call__(self, x: jax.Array, *, training: bool) -> jax.Array:
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])  # BN over all leading dims (text: B*K candidates).
        if self.pre_relu:
            x = jax.nn.relu(x)
        x = self.fc(x)
        if self.bn is not None:
            x = self.bn(x, use_running_average=not training)
        return x.reshape(*lead, x.shape[-1])


class ProjectionMLP(nnx.Module):
    """Linear -> BN -> ReLU -> Linear -> BN. x [B, D_in] -> [B, D_out]."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, *, bn_momentum: float = 0.9,
                 bn_eps: float = 1e-5, bias_before_bn: bool = True, rngs: nnx.Rngs):
        bn = dict(bn_momentum=bn_momentum, bn_eps=bn_eps, bias_before_bn=bias_before_bn,
                  rngs=rngs)
        self.layer1 = LinearBN(d_in, d_hidden, use_bn=True, **bn)
        self.layer2 = LinearBN(d_hidden, d_out, use_bn=True, pre_relu=True, **bn)

    def __call__(self, x: jax.Array, *, training: bool) -> jax.Array:
        return self.layer2(self.layer1(x, training=training), training=training)


class CommonSpaceHeads(nnx.Module):
    """Maps pooled features {"video": [B, Dv], "audio": [B, Da], "text": [B, K, Dt]} (any subset)
    to {"video": {"va": [B, va], "vt": [B, vt]}, "audio": {"va": [B, va]},
    "text": {"vt": [B, K, vt]}} (dims per the module docstring; shared kind: all va_dim)."""

    def __init__(self, d_video: int, d_audio: int, d_text: int, *, kind: str = "fac",
                 va_dim: int = 512, vt_dim: int = 256, bn_placement: str = "official",
                 bn_momentum: float = 0.9, bn_eps: float = 1e-5, bias_before_bn: bool = True,
                 rngs: nnx.Rngs):
        if kind not in HEAD_KINDS:
            raise ValueError(f"model.head.kind={kind!r}; choose one of {HEAD_KINDS}.")
        if bn_placement not in BN_PLACEMENTS:
            raise ValueError(f"model.head.bn_placement={bn_placement!r}; choose 'official' or "
                             "'paper'.")
        self.kind = kind
        bn = dict(bn_momentum=bn_momentum, bn_eps=bn_eps, bias_before_bn=bias_before_bn,
                  rngs=rngs)
        lin_bn = bn_placement == "paper"  # BN after the audio/text linear layers too.
        if kind == "fac":
            self.video_va = ProjectionMLP(d_video, va_dim, va_dim, **bn)
            self.video_va_to_vt = LinearBN(va_dim, vt_dim, use_bn=True, pre_relu=True, **bn)
            self.audio_va = LinearBN(d_audio, va_dim, use_bn=lin_bn, **bn)
            self.text_vt = LinearBN(d_text, vt_dim, use_bn=lin_bn, **bn)
        elif kind == "shared":
            self.video = ProjectionMLP(d_video, va_dim, va_dim, **bn)
            self.audio = LinearBN(d_audio, va_dim, use_bn=lin_bn, **bn)
            self.text = LinearBN(d_text, va_dim, use_bn=lin_bn, **bn)
        else:
            self.video_va = ProjectionMLP(d_video, va_dim, va_dim, **bn)
            self.video_vt = ProjectionMLP(d_video, vt_dim, vt_dim, **bn)
            self.audio_va = LinearBN(d_audio, va_dim, use_bn=lin_bn, **bn)
            self.text_vt = LinearBN(d_text, vt_dim, use_bn=lin_bn, **bn)

    def __call__(self, pooled: dict[str, jax.Array], *,
                 training: bool) -> dict[str, dict[str, jax.Array]]:
        out: dict[str, dict[str, jax.Array]] = {}
        t = dict(training=training)
        if "video" in pooled:
            v = pooled["video"].astype(jnp.float32)
            if self.kind == "fac":
                va = self.video_va(v, **t)
                out["video"] = {"va": va, "vt": self.video_va_to_vt(va, **t)}
            elif self.kind == "shared":
                s = self.video(v, **t)
                out["video"] = {"va": s, "vt": s}
            else:
                out["video"] = {"va": self.video_va(v, **t), "vt": self.video_vt(v, **t)}
        if "audio" in pooled:
            a = pooled["audio"].astype(jnp.float32)
            out["audio"] = {"va": (self.audio if self.kind == "shared" else self.audio_va)(a, **t)}
        if "text" in pooled:
            x = pooled["text"].astype(jnp.float32)
            out["text"] = {"vt": (self.text if self.kind == "shared" else self.text_vt)(x, **t)}
        return out
