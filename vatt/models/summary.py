"""Dry-run model summary: parameter table, token counts and forward GFLOPs without allocating
parameters (the model is built with ``nnx.eval_shape``; FLOPs come from XLA's cost analysis of
the lowered, never compiled, training forward pass on abstract inputs).

Parameter-count convention (matches the VATT paper, Akbari et al. 2021, Table 9 / Sec. 4):
- "video" / "audio" / "text": everything of that modality's backbone: tokenizer input projection,
  position tables, AGG token, transformer blocks and final LN. For VATT-MA ("shared") the three
  keys hold only the modality-specific tokenizer parts (projection, positions, AGG) and "shared"
  holds the one transformer.
- The text word-embedding table (vocab x embedding_dim, 2^16 x 300 = 19.7M) is NOT counted in
  "text" nor "total": the official code uses a frozen word2vec table there, and the paper's totals
  leave it out. It is reported separately as "text_word_embedding" (trainable or not).
- "heads": the common-space projection heads (BN scale/bias included; BN running statistics are
  not parameters). "total" = video + audio + text (+ shared) + heads.
The paper's size numbers (Small 20.9M, Base 87.9M, Medium 155.0M, Large 306.1M) match our VIDEO
backbone of that size (voxel projection 4*16*16*3*d included), and its variant totals are the
plain sums of those numbers (BBS 87.9+87.9+20.9 = 197M, MBS 264M, LBS 415M, MA-Medium 155M).
Ours are within 2% of the modality-specific ones (BBS 193.9M, MBS 260.9M, LBS 412.1M): the text
tower is a T5-small (19.04M, lighter than the video Small as its input is a 300-d word vector, not a
voxel), and the heads are counted in our totals. The video, audio and T5 text backbones of the paper
variants equal, to the parameter, those of the official checkpoints' variable lists. MA-Medium is
162,990,336, exactly the official ut_fac_medium checkpoint (shared 151.2M, the per-modality
raw-to-embedding layers, Dense(1024, GELU) pre/post projections, positions and AGG vectors
10.1M, heads 1.7M): 5.2% above the paper's 155M, which is a Medium ViT's size, not the MA model's.

GFLOPs convention: the paper's 375.4 GFLOPs for MBS (video 32x224x224, audio 3.2 s, one caption,
DropToken 0.5) counts one multiply-add as 2 FLOPs (a multiply-add count would be ~200G). XLA's
cost analysis also counts 2 FLOPs per multiply-add (plus element-wise ops), so
``gflops_per_clip`` is XLA "flops" / 1e9 of a batch-of-one training forward with DropToken
(MBS: 402.7, +7.3% vs 375.4); ``gflops_per_clip_matmul_only`` counts matmuls only (MBS: ~393,
+4.7%). The paper's exact counting rule is not stated; a multiply-add count (~197G) is ruled out.
"""

from __future__ import annotations

import collections
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from vatt.models.droptoken import num_kept
from vatt.models.rngs import init_rngs
from vatt.models.vatt_model import MODALITIES, build_model


def _path_str(path: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in path)


def _leaf_size(x: Any) -> int:
    return int(np.prod(x.shape)) if hasattr(x, "shape") else 0


def abstract_model(model_config: ml_collections.ConfigDict) -> nnx.Module:
    """The VATT model with ShapeDtypeStruct leaves (no parameter memory)."""
    return nnx.eval_shape(lambda: build_model(model_config, rngs=init_rngs(0)))


def token_counts(model_config: ml_collections.ConfigDict) -> dict[str, dict[str, int]]:
    """{"tokens": {video, audio, text}, "tokens_kept": {video, audio}} at the config input size."""
    v, a = model_config.video, model_config.audio
    tokens = {
        "video": int(np.prod([s // p for s, p in zip(v.input_size, v.patch_size)])),
        "audio": int(a.input_samples // a.patch_size),
        "text": int(model_config.text.max_len),
    }
    kept = {m: num_kept(tokens[m], model_config[m].droptoken_keep) for m in ("video", "audio")}
    return {"tokens": tokens, "tokens_kept": kept}


def count_params(model: nnx.Module) -> tuple[dict[str, int], dict[str, int]]:
    """(report counts per group per the module convention, per-module table {path: count})."""
    state = nnx.state(model, nnx.Param)
    counts: dict[str, int] = collections.defaultdict(int)
    table: dict[str, int] = collections.defaultdict(int)
    for path, leaf in nnx.to_flat_state(state):
        n = _leaf_size(leaf.get_value() if hasattr(leaf, "get_value") else leaf)
        names = [str(p) for p in path]
        group_path = names[:3] if "blocks" not in names[:3] else names[: names.index("blocks") + 1]
        table[_path_str(group_path)] += n
        top = names[0]
        if top.startswith("text_") and names[-1] == "embedding":
            counts["text_word_embedding"] += n
            continue
        if top == "heads":
            counts["heads"] += n
        elif top == "shared_backbone":
            counts["shared"] += n
        else:
            counts[top.split("_")[0]] += n
    # A frozen embedding is not a Param: count it for information only.
    for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Not(nnx.Param))):
        if str(path[-1]) == "embedding":
            counts["text_word_embedding"] += _leaf_size(leaf.get_value())
    ordered = {k: counts[k] for k in ("video", "audio", "text", "shared", "heads") if k in counts}
    ordered["total"] = sum(ordered.values())
    ordered["text_word_embedding"] = counts.get("text_word_embedding", 0)
    return ordered, dict(table)


def forward_gflops(model_config: ml_collections.ConfigDict, batch_size: int = 1,
                   training: bool = True) -> float:
    """Forward GFLOPs (2 per multiply-add) of one batch (video + audio + one caption per clip),
    from XLA cost analysis of the lowered (not compiled) computation."""
    graphdef, state = nnx.split(abstract_model(model_config))
    v, a, t = model_config.video, model_config.audio, model_config.text

    def forward(state, video, audio, text):
        model = nnx.merge(graphdef, state)
        rngs = init_rngs(dropout=0, droptoken=1) if training else None
        out = model(video=video, audio=audio, text=text, training=training, rngs=rngs)
        return jax.tree.map(lambda x: x, {m: {k: o[k] for k in o if k != "layers"}
                                          for m, o in out.items()})

    args = (
        state,
        jax.ShapeDtypeStruct((batch_size, *v.input_size, 3), jnp.float32),
        jax.ShapeDtypeStruct((batch_size, a.input_samples), jnp.float32),
        jax.ShapeDtypeStruct((batch_size, 1, t.max_len), jnp.int32),
    )
    cost = jax.jit(forward).lower(*args).cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"]) / 1e9 / batch_size


def analytic_gflops(model_config: ml_collections.ConfigDict) -> float:
    """Matmul-only forward GFLOPs (2 per multiply-add) of one clip in training mode: tokenizer
    projections (and pre/post projections), Q/K/V/out projections, attention scores and values,
    MLPs (heads ignored:
    < 0.01 GFLOPs). A cross-check of the XLA count, which also counts element-wise ops."""
    tokens = token_counts(model_config)
    shared = model_config.backbone == "shared"
    v, a, t = model_config.video, model_config.audio, model_config.text
    tok_in = {"video": int(np.prod(v.patch_size)) * 3, "audio": int(a.patch_size),
              "text": int(t.embedding_dim)}
    macs = 0
    for m in MODALITIES:
        size = model_config.shared if shared else model_config[m]
        d, mlp, layers = size.d_model, size.mlp_dim, size.num_layers
        n_in = tokens["tokens"][m]
        n = tokens["tokens_kept"].get(m, n_in) + 1  # + AGG
        macs += n_in * tok_in[m] * d
        if model_config[m].get("pre_proj", False) and m != "text":  # text: the same projection
            macs += n_in * d * d
        macs += layers * (n * (4 * d * d + 2 * d * mlp) + 2 * n * n * d)
        macs += d * int(model_config[m].get("post_proj_dim", 0) or 0)  # on the AGG token only
    return 2 * macs / 1e9


def summarize(model_config: ml_collections.ConfigDict,
              batch_size: int = 1) -> tuple[str, dict[str, Any]]:
    """Returns (per-module parameter table as text, report dict).

    report = {"params": {"video"|"shared", "audio", "text", "heads", "total",
                         "text_word_embedding"},
              "tokens": {"video", "audio", "text"}, "tokens_kept": {"video", "audio"},
              "gflops_per_clip": float}
    """
    model = abstract_model(model_config)
    counts, table = count_params(model)
    report: dict[str, Any] = {"params": counts, **token_counts(model_config)}
    report["gflops_per_clip"] = round(forward_gflops(model_config, batch_size), 3)
    report["gflops_per_clip_matmul_only"] = round(analytic_gflops(model_config), 3)
    width = max(len(k) for k in table) + 2
    lines = [f"{'module':<{width}}{'params':>14}", "-" * (width + 14)]
    lines += [f"{k:<{width}}{v:>14,}" for k, v in table.items()]
    lines.append("-" * (width + 14))
    lines += [f"{'[' + k + ']':<{width}}{v:>14,}" for k, v in counts.items()]
    return "\n".join(lines), report


def param_counts(model_config: ml_collections.ConfigDict) -> dict[str, int]:
    """The "params" report of ``summarize`` computed cheaply and exactly: the model is built
    abstractly with ONE block per encoder and each encoder's block count is scaled back up
    (every block of an encoder has the same parameters; the T5 text tower keeps its shared
    relative-bias table on the encoder, outside the blocks, for this reason)."""
    cfg = ml_collections.ConfigDict(model_config.to_dict())
    groups = ["shared"] if cfg.backbone == "shared" else list(MODALITIES)
    layers = {g: int(cfg[g].num_layers) for g in groups}
    for g in groups:
        cfg[g].num_layers = 1
    model = abstract_model(cfg)
    counts, table = count_params(model)
    for g in groups:
        prefix = "shared_backbone/blocks" if g == "shared" else f"{g}_backbone/encoder/blocks"
        extra = table[prefix] * (layers[g] - 1)
        counts[g] += extra
        counts["total"] += extra
    return counts
