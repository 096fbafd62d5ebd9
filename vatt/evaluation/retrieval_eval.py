"""Zero-shot text<->video retrieval on real datasets (MSR-VTT 1k-A, YouCook2) and the synthetic split.

Each test clip yields V windows (video [b, V, T, H, W, 3]; data.eval_num_clips) and one caption
(text [b, 1, L]; MSR-VTT 1k-A: caption_key="caption_1k"). Video embeddings are the S_vt outputs
of the windows, L2-normalised, and combined two ways:
  - "mean":   windows' embeddings averaged, then re-normalised (the paper; keys zeroshot/t2v/...),
  - "simavg": similarities averaged over windows (keys zeroshot/simavg/t2v/...).
Reported for text-to-video and video-to-text: R@1/5/10 (percent), MedR and MeanR. A JSON report
is written to <workdir>/zeroshot/<name>_step<step>.json by process 0, and the run's writer draws
the similarity matrix and the recall@k curve beside it.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from vatt import paths
from vatt.evaluation.base import CompiledPerModel, EvalContext, map_batches, pipeline_batches
from vatt.evaluation.classification import fold_views
from vatt.evaluation.retrieval import ground_truth_ranks, retrieval_metrics
from vatt.losses import l2_normalize

Batches = Callable[[int, int], Iterable[dict[str, np.ndarray]]]


def window_embed_fn(graphdef: nnx.GraphDef) -> Callable:
    """Jittable (params, rest, video [B, (V,) T, H, W, 3], text [B, K, L]) ->
    {"video": [B, V, Dvt] normalised window embeddings, "text": [B, Dvt] (first caption)}."""
    def fn(params, rest, video, text):
        model = nnx.merge(graphdef, params, rest, copy=True)
        b = video.shape[0]
        flat, views = fold_views(video, "video")
        v = model(video=flat, training=False)["video"]["vt"]
        t = model(text=text[:, :1], training=False)["text"]["vt"][:, 0]
        return {"video": l2_normalize(v.astype(jnp.float32)).reshape(b, views, -1),
                "text": l2_normalize(t.astype(jnp.float32))}
    return fn


def similarities(video: np.ndarray, text: np.ndarray) -> dict[str, np.ndarray]:
    """video [N, V, D] (normalised windows), text [N, D] -> text-by-video similarity [N, N] for
    the window-mean ("mean") and similarity-mean ("simavg") variants."""
    mean_v = np.asarray(l2_normalize(jnp.asarray(video.mean(1))))
    return {"mean": text @ mean_v.T,
            "simavg": np.einsum("qd,nvd->qnv", text, video).mean(-1)}


def retrieval_report(sims: dict[str, np.ndarray], prefix: str = "zeroshot") -> dict[str, float]:
    """Metric dict: <prefix>/{t2v,v2t}/{R@1,R@5,R@10,MedR,MeanR} for "mean" and
    <prefix>/simavg/... for the similarity-averaged variant."""
    out: dict[str, float] = {}
    for variant, sim in sims.items():
        base = prefix if variant == "mean" else f"{prefix}/{variant}"
        for task, s in (("t2v", sim), ("v2t", sim.T)):
            for k, v in retrieval_metrics(s).items():
                out[f"{base}/{task}/{k}"] = v
    out[f"{prefix}/num_clips"] = float(next(iter(sims.values())).shape[0])
    return out


class RetrievalEvaluator:
    """Zero-shot retrieval of a VATT model; batches(pi, pc) yields {video, text, valid}."""

    def __init__(self, batches: Batches, name: str = "msrvtt", prefix: str = "zeroshot",
                 write_report: bool = True):
        self.batches, self.dataset, self.prefix = batches, name, prefix
        self.write_report = write_report
        self._embed = CompiledPerModel(window_embed_fn)

    def embeddings(self, ctx: EvalContext) -> tuple[np.ndarray, np.ndarray]:
        """(video windows [N, V, D], text [N, D]), L2-normalised, valid clips only."""
        def first_caption(batches):
            for hb in batches:
                yield {**hb, "text": hb["text"][:, :1]}
        out = map_batches(self._embed(ctx.graphdef), ctx,
                          first_caption(self.batches(jax.process_index(), jax.process_count())),
                          inputs=("video", "text"))
        return out["video"], out["text"]

    def run(self, ctx: EvalContext) -> dict[str, float]:
        video, text = self.embeddings(ctx)
        sims = similarities(video, text)
        metrics = retrieval_report(sims, self.prefix)
        if self.write_report and jax.process_index() == 0:
            self._write(ctx, sims["mean"], metrics)
        return metrics

    def _write(self, ctx: EvalContext, sim: np.ndarray, metrics: dict[str, float]) -> None:
        stem = paths.join(ctx.workdir, "zeroshot", f"{self.dataset}_step{ctx.step}")
        ranks = ground_truth_ranks(sim)
        report = {"dataset": self.dataset, "step": ctx.step, "metrics": metrics,
                  "t2v_ranks": ranks.tolist()}
        paths.write_text(stem + ".json", json.dumps(report, indent=1))  # local or gs://
        ctx.writer.plot("similarity", sim, stem + "_similarity.png",
                        title=f"{self.dataset} text-to-video similarity (step {ctx.step})",
                        query_label="caption", item_label="video")
        ctx.writer.plot("recall_at_k", {"text->video": ranks,
                                        "video->text": ground_truth_ranks(sim.T)},
                        sim.shape[1], stem + "_recall_at_k.png",
                        title=f"{self.dataset} zero-shot recall at k (step {ctx.step})")


# ----------------------------------------------------------------------------- builders
def synthetic_retrieval(world, cfg: ml_collections.ConfigDict, prefix: str = "zeroshot"
                        ) -> RetrievalEvaluator:
    """The synthetic held-out split (distinct canonical captions): cfg.num_clips, batch_size."""
    def batches(pi: int, pc: int):
        for b in world.eval_batches(cfg.num_clips, cfg.batch_size, pi, pc):
            yield {"video": b["video"], "text": b["text"], "valid": b["valid"]}
    return RetrievalEvaluator(batches, "synthetic", prefix, cfg.write_report)


def dataset_retrieval(cfg: ml_collections.ConfigDict, prefix: str = "zeroshot") -> RetrievalEvaluator:
    """A built dataset: cfg.data (pipeline config with caption_key, eval_num_clips windows,
    num_captions=1, modalities 'video,text'), cfg.split, cfg.batch_size, cfg.dataset (name)."""
    return RetrievalEvaluator(pipeline_batches(cfg.data, cfg.split, cfg.batch_size), cfg.dataset,
                              prefix, cfg.write_report)
