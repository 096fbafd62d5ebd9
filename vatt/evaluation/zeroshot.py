"""Zero-shot retrieval on the held-out synthetic split: text-to-video and video-to-audio.

Besides the retrieval metrics, each evaluation reports the linear CKA between the pooled
backbone outputs of video and text / audio, and (process 0, on the metrics writer's background
thread) writes PNGs to <workdir>/plots/: the similarity matrices, recall at k, layer-wise CKA
heatmaps and a 2-D embedding map coloured by modality and by latent factors of the world.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from tqdm import tqdm  # not tqdm.auto: it warns in kernels without ipywidgets

from vatt.data import synthetic
from vatt.evaluation.retrieval import ground_truth_ranks, retrieval_metrics
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


def features_fn(graphdef: nnx.GraphDef):
    """Like `embed_fn`, plus the backbone representations for CKA:
    "<m>_pooled" [B, d_m] and "<m>_layer<i>" [B, d_m] (AGG output of block i) for every
    modality m (text: first caption)."""
    def features(params, rest, batch):
        model = nnx.merge(graphdef, params, rest, copy=True)
        out = model(video=batch["video"], audio=batch["audio"], text=batch["text"],
                    training=False, return_layers=True)
        first = lambda a, m: a[:, 0] if m == "text" else a  # noqa: E731
        result = {"video_vt": _l2_normalize(out["video"]["vt"]),
                  "text_vt": _l2_normalize(out["text"]["vt"][:, 0]),
                  "video_va": _l2_normalize(out["video"]["va"]),
                  "audio_va": _l2_normalize(out["audio"]["va"])}
        for m in ("video", "audio", "text"):
            result[f"{m}_pooled"] = first(out[m]["pooled"], m)
            for i, layer in enumerate(out[m]["layers"]):
                result[f"{m}_layer{i}"] = first(layer, m)
        return result
    return features


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of x [n, d1] and y [n, d2] on the host (float64)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    x = x - x.mean(0)
    y = y - y.mean(0)
    num = np.sum(np.square(y.T @ x))
    den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(num / den) if den > 0 else 0.0


def layer_stack(feats: dict[str, np.ndarray], modality: str, space: str
                ) -> tuple[list[str], list[np.ndarray]]:
    """(labels, [n, d] arrays): every block's AGG output, the pooled output and the
    common-space embedding `space` ("vt" or "va") of one modality."""
    num = sum(1 for k in feats if k.startswith(f"{modality}_layer"))
    labels = [f"block {i + 1}" for i in range(num)] + ["pooled", f"common ({space})"]
    arrays = [feats[f"{modality}_layer{i}"] for i in range(num)]
    arrays += [feats[f"{modality}_pooled"], feats[f"{modality}_{space}"]]
    return labels, arrays


class SyntheticZeroShotEvaluator:
    """Embeds the held-out clips and reports retrieval under `zeroshot/`.

    Each held-out clip has a distinct canonical caption, so text-to-video retrieval
    has exactly one right answer; chance R@1 is 100 / num_clips percent.
    Config (config.eval): num_clips, batch_size; optional plots (bool, default True),
    embedding_map ("tsne" | "pca", default "tsne") and embedding_map_clips (default 192).
    """

    name = "zeroshot"

    def __init__(self, world, cfg: ml_collections.ConfigDict):
        self.world, self.cfg = world, cfg
        self._compiled: dict[int, Any] = {}

    def embeddings(self, ctx: EvalContext) -> dict[str, np.ndarray]:
        """Embeddings and backbone features of all held-out clips as host arrays [num_clips, D]
        (keys of `features_fn`), rows in held-out clip order."""
        graphdef, params, rest, mesh = ctx.graphdef, ctx.params, ctx.rest, ctx.mesh
        key = id(graphdef)
        if key not in self._compiled:
            self._compiled[key] = jax.jit(features_fn(graphdef))
        embed = self._compiled[key]
        chunks = []
        batches = self.world.eval_batches(
            self.cfg.num_clips, self.cfg.batch_size, jax.process_index(), jax.process_count())
        # A bar on interactive consoles only (disable=None), never on other processes.
        bar = tqdm(batches, total=math.ceil(self.cfg.num_clips / self.cfg.batch_size),
                   desc=f"eval {self.name}", unit="batch", leave=False,
                   disable=None if jax.process_index() == 0 else True)
        for host_batch in bar:
            valid = host_batch.pop("valid")
            inputs = host_to_global(
                {k: host_batch[k] for k in ("video", "audio", "text")}, mesh)
            out = fetch(embed(params, rest, inputs))
            out["valid"] = fetch(host_to_global({"v": valid}, mesh))["v"]
            chunks.append(out)
        stacked = {k: np.concatenate([np.asarray(c[k]) for c in chunks]) for k in chunks[0]}
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
        metrics["zeroshot/cka/video_text"] = linear_cka(emb["video_pooled"], emb["text_pooled"])
        metrics["zeroshot/cka/video_audio"] = linear_cka(emb["video_pooled"],
                                                         emb["audio_pooled"])
        if jax.process_index() == 0 and ctx.workdir and self.cfg.get("plots", True):
            self._write_artifacts(ctx, emb, tasks)
        return metrics

    # ------------------------------------------------------------------ plots (process 0)
    def _write_artifacts(self, ctx: EvalContext, emb: dict[str, np.ndarray],
                         sims: dict[str, np.ndarray]) -> None:
        from vatt.train.metrics_writer import active_writer
        step = int(ctx.step)
        n = emb["video_vt"].shape[0]
        combos = self.world.eval_combinations(self.cfg.num_clips)[:n]
        factors = np.array([synthetic.decode_factors(int(c)) for c in combos], np.int32)
        writer = active_writer(ctx.workdir)
        out_dir = os.path.join(ctx.workdir, "plots")
        method = self.cfg.get("embedding_map", "tsne")
        # Sorting clips by combination index groups them by colour (the leading factor), so
        # the similarity matrices show the factor structure; the diagonal stays the ground truth.
        order = np.argsort(combos, kind="stable")
        pairs = {"video_text": ("video", "text", "vt"), "video_audio": ("video", "audio", "va")}
        cka = {}
        for name, (mx, my, space) in pairs.items():
            x_labels, xs = layer_stack(emb, mx, space)
            y_labels, ys = layer_stack(emb, my, space)
            cka[name] = (mx, my, x_labels, y_labels,
                         np.array([[linear_cka(a, b) for b in ys] for a in xs]))

        def job() -> None:
            from vatt import plots
            titles = {"t2v": ("text→video", "text query (sorted by colour)",
                              "video (sorted by colour)"),
                      "v2a": ("video→audio", "video query (sorted by colour)",
                              "audio (sorted by colour)")}
            for task, sim in sims.items():
                label, q, i = titles[task]
                r1 = 100.0 * np.mean(ground_truth_ranks(sim) == 1)
                plots.plot_similarity(
                    sim[np.ix_(order, order)], os.path.join(out_dir, f"zeroshot_{task}_similarity.png"),
                    title=f"Zero-shot {label} similarity, step {step}\n{n} held-out clips, "
                    f"ground truth on the diagonal, R@1 {r1:.1f}%",
                    query_label=q, item_label=i, group_names=synthetic.COLOURS,
                    group_of=factors[order, 0])
            plots.plot_recall_at_k(
                {"text→video": ground_truth_ranks(sims["t2v"]),
                 "video→text": ground_truth_ranks(sims["t2v"].T),
                 "video→audio": ground_truth_ranks(sims["v2a"]),
                 "audio→video": ground_truth_ranks(sims["v2a"].T)}, n,
                os.path.join(out_dir, "zeroshot_recall_at_k.png"),
                title=f"Zero-shot recall at k, step {step} ({n} held-out clips)")
            for name, (mx, my, xl, yl, m) in cka.items():
                plots.plot_cka_heatmaps(
                    {"linear CKA": m}, os.path.join(out_dir, f"cka_layers_{name}.png"),
                    x_name=mx, y_name=my, x_labels=xl, y_labels=yl,
                    title=f"CKA between {mx} and {my} representations, step {step} ({n} clips)")
            # Exact t-SNE is O(n^2) per iteration: map at most `embedding_map_clips` clips.
            m = min(n, int(self.cfg.get("embedding_map_clips", 192)))
            plots.plot_embedding_maps(
                {"video-text space": {"video": emb["video_vt"][:m], "text": emb["text_vt"][:m]},
                 "video-audio space": {"video": emb["video_va"][:m],
                                       "audio": emb["audio_va"][:m]}},
                factors[:m], os.path.join(out_dir, f"embeddings_{method}.png"), method=method,
                title=f"{'t-SNE' if method == 'tsne' else 'PCA'} of the common-space embeddings "
                f"of {m} held-out clips, step {step}")

        if writer is not None:
            for task, sim in sims.items():
                writer.write_image(step, f"zeroshot/{task}_similarity", sim[np.ix_(order, order)])
            for name, (*_, m) in cka.items():
                writer.write_image(step, f"cka/{name}_layers", m)
            writer.submit(job)  # plots and t-SNE off the training thread
        else:
            job()
