"""Zero-shot retrieval on the held-out synthetic split: text-to-video and video-to-audio."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from vatt.evaluation.retrieval import retrieval_metrics
from vatt.tasks.base import EvalContext
from vatt.train.partitioning import fetch, host_to_global


def _l2_normalize(x: jax.Array) -> jax.Array:
    return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + 1e-12)


def embed_fn(graphdef: nnx.GraphDef):
    """A jittable function (params, rest, batch) -> L2-normalised common-space embeddings.

    Returns video_vt [B, Dvt], text_vt [B, Dvt] (first caption), video_va [B, Dva],
    audio_va [B, Dva]. No DropToken, no dropout, batch-norm running statistics.
    """
    def embed(params, rest, batch):
        model = nnx.merge(graphdef, params, rest, copy=True)
        out = model(video=batch["video"], audio=batch["audio"], text=batch["text"], training=False)
        return {"video_vt": _l2_normalize(out["video"]["vt"]),
                "text_vt": _l2_normalize(out["text"]["vt"][:, 0]),
                "video_va": _l2_normalize(out["video"]["va"]),
                "audio_va": _l2_normalize(out["audio"]["va"])}
    return embed


class SyntheticZeroShotEvaluator:
    """Embeds the held-out clips and reports retrieval under `zeroshot/`.

    Each held-out clip has a distinct canonical caption, so text-to-video retrieval
    has exactly one right answer; chance R@1 is 100 / num_clips percent.
    """

    name = "zeroshot"

    def __init__(self, world, cfg: ml_collections.ConfigDict):
        self.world, self.cfg = world, cfg
        self._compiled: dict[int, Any] = {}

    def embeddings(self, ctx: EvalContext) -> dict[str, np.ndarray]:
        """Embeddings of all held-out clips as host arrays [num_clips, D]."""
        graphdef, params, rest, mesh = ctx.graphdef, ctx.params, ctx.rest, ctx.mesh
        key = id(graphdef)
        if key not in self._compiled:
            self._compiled[key] = jax.jit(embed_fn(graphdef))
        embed = self._compiled[key]
        chunks = []
        for host_batch in self.world.eval_batches(
                self.cfg.num_clips, self.cfg.batch_size, jax.process_index(), jax.process_count()):
            valid = host_batch.pop("valid")
            inputs = host_to_global(
                {k: host_batch[k] for k in ("video", "audio", "text")}, mesh)
            out = fetch(embed(params, rest, inputs))
            out["valid"] = fetch(host_to_global({"v": valid}, mesh))["v"]
            chunks.append(out)
        stacked = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        keep = stacked.pop("valid") > 0
        return {k: v[keep] for k, v in stacked.items()}

    def run(self, ctx: EvalContext) -> dict[str, float]:
        emb = self.embeddings(ctx)
        metrics: dict[str, float] = {}
        tasks = {"t2v": emb["text_vt"] @ emb["video_vt"].T,
                 "v2a": emb["video_va"] @ emb["audio_va"].T}
        for task, sim in tasks.items():
            for k, v in retrieval_metrics(sim).items():
                metrics[f"zeroshot/{task}/{k}"] = v
        metrics["zeroshot/num_clips"] = float(emb["video_vt"].shape[0])
        return metrics
