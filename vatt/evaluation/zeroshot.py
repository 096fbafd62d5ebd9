"""Zero-shot retrieval on the held-out synthetic split: text-to-video and video-to-audio.

Besides the retrieval metrics, each evaluation reports the linear CKA between the pooled
backbone outputs of video and text / audio, and asks the run's writer (ctx.writer; it draws on
its background thread, process 0) for PNGs in <workdir>/plots/: the similarity matrices, recall
at k, layer-wise CKA heatmaps and a 2-D embedding map coloured by modality and by latent factors
of the world.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import ml_collections
import numpy as np
from flax import nnx
from tqdm import tqdm  # not tqdm.auto: it warns in kernels without ipywidgets

from vatt import paths
from vatt.data import synthetic
from vatt.evaluation.base import CompiledPerModel, EvalContext, map_batches
from vatt.evaluation.retrieval import ground_truth_ranks, retrieval_metrics
from vatt.losses import l2_normalize


def features_fn(graphdef: nnx.GraphDef):
    """A jittable (params, rest, video, audio, text) -> L2-normalised common-space embeddings
    video_vt [B, Dvt], text_vt [B, Dvt] (first caption), video_va [B, Dva], audio_va [B, Dva],
    and the backbone representations for CKA: "<m>_pooled" [B, d_m] and "<m>_layer<i>"
    [B, d_m] (AGG output of block i) of every modality m (text: first caption).
    No DropToken, no dropout, batch-norm running statistics."""
    def features(params, rest, video, audio, text):
        model = nnx.merge(graphdef, params, rest, copy=True)
        out = model(video=video, audio=audio, text=text, training=False, return_layers=True)
        first = lambda a, m: a[:, 0] if m == "text" else a  # noqa: E731
        result = {"video_vt": l2_normalize(out["video"]["vt"]),
                  "text_vt": l2_normalize(out["text"]["vt"][:, 0]),
                  "video_va": l2_normalize(out["video"]["va"]),
                  "audio_va": l2_normalize(out["audio"]["va"])}
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


def held_out_features(ctx: EvalContext, world: synthetic.SyntheticWorld, num_clips: int,
                      batch_size: int, features: Callable | None = None,
                      progress: str = "") -> dict[str, np.ndarray]:
    """Embeddings and backbone features (keys of `features_fn`) of the first `num_clips`
    held-out clips of `world` as host arrays [num_clips, D], rows in held-out clip order.

    features: the jitted features_fn of ctx.graphdef (compiled here when not given).
    progress: a label for a progress bar on interactive consoles of process 0 ("" for none).
    """
    features = features or jax.jit(features_fn(ctx.graphdef))
    batches = world.eval_batches(num_clips, batch_size, jax.process_index(), jax.process_count())
    if progress:
        batches = tqdm(batches, total=math.ceil(num_clips / batch_size), desc=progress,
                       unit="batch", leave=False,
                       disable=None if jax.process_index() == 0 else True)
    return map_batches(features, ctx, batches, inputs=("video", "audio", "text"))


class SyntheticZeroShotEvaluator:
    """Embeds the held-out clips and reports retrieval under `zeroshot/`.

    Each held-out clip has a distinct canonical caption, so text-to-video retrieval
    has exactly one right answer; chance R@1 is 100 / num_clips percent.
    Config (config.eval): num_clips, batch_size, plots (bool), embedding_map ("tsne" | "pca")
    and embedding_map_clips.
    """

    prefix = "zeroshot"

    def __init__(self, world: synthetic.SyntheticWorld, cfg: ml_collections.ConfigDict):
        self.world, self.cfg = world, cfg
        self._features = CompiledPerModel(features_fn)

    def embeddings(self, ctx: EvalContext) -> dict[str, np.ndarray]:
        """Embeddings and backbone features of all held-out clips (see held_out_features)."""
        return held_out_features(ctx, self.world, self.cfg.num_clips, self.cfg.batch_size,
                                 self._features(ctx.graphdef), progress=f"eval {self.prefix}")

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
        if jax.process_index() == 0 and ctx.workdir and self.cfg.plots:
            self._write_artifacts(ctx, emb, tasks)
        return metrics

    # ------------------------------------------------------------------ figures (process 0)
    def _write_artifacts(self, ctx: EvalContext, emb: dict[str, np.ndarray],
                         sims: dict[str, np.ndarray]) -> None:
        step, writer = int(ctx.step), ctx.writer
        n = emb["video_vt"].shape[0]
        combos = self.world.eval_combinations(self.cfg.num_clips)[:n]
        factors = np.array([synthetic.decode_factors(int(c)) for c in combos], np.int32)
        out_dir = paths.join(ctx.workdir, "plots")  # local or gs:// (the writer writes)
        # Sorting clips by combination index groups them by colour (the leading factor), so
        # the similarity matrices show the factor structure; the diagonal stays the ground truth.
        order = np.argsort(combos, kind="stable")
        titles = {"t2v": ("text→video", "text query (sorted by colour)",
                          "video (sorted by colour)"),
                  "v2a": ("video→audio", "video query (sorted by colour)",
                          "audio (sorted by colour)")}
        for task, sim in sims.items():
            label, query, item = titles[task]
            sorted_sim = sim[np.ix_(order, order)]
            r1 = 100.0 * np.mean(ground_truth_ranks(sim) == 1)
            writer.write_image(step, f"zeroshot/{task}_similarity", sorted_sim)
            writer.plot("similarity", sorted_sim,
                        paths.join(out_dir, f"zeroshot_{task}_similarity.png"),
                        title=f"Zero-shot {label} similarity, step {step}\n{n} held-out clips, "
                        f"ground truth on the diagonal, R@1 {r1:.1f}%",
                        query_label=query, item_label=item, group_names=synthetic.COLOURS,
                        group_of=factors[order, 0])
        writer.plot("recall_at_k",
                    {"text→video": ground_truth_ranks(sims["t2v"]),
                     "video→text": ground_truth_ranks(sims["t2v"].T),
                     "video→audio": ground_truth_ranks(sims["v2a"]),
                     "audio→video": ground_truth_ranks(sims["v2a"].T)}, n,
                    paths.join(out_dir, "zeroshot_recall_at_k.png"),
                    title=f"Zero-shot recall at k, step {step} ({n} held-out clips)")
        pairs = {"video_text": ("video", "text", "vt"), "video_audio": ("video", "audio", "va")}
        for name, (mx, my, space) in pairs.items():
            x_labels, xs = layer_stack(emb, mx, space)
            y_labels, ys = layer_stack(emb, my, space)
            matrix = np.array([[linear_cka(a, b) for b in ys] for a in xs])
            writer.write_image(step, f"cka/{name}_layers", matrix)
            writer.plot("cka_heatmaps", {"linear CKA": matrix},
                        paths.join(out_dir, f"cka_layers_{name}.png"), x_name=mx, y_name=my,
                        x_labels=x_labels, y_labels=y_labels,
                        title=f"CKA between {mx} and {my} representations, step {step} "
                        f"({n} clips)")
        # Exact t-SNE is O(n^2) per iteration: map at most `embedding_map_clips` clips.
        method = self.cfg.embedding_map
        m = min(n, int(self.cfg.embedding_map_clips))
        writer.plot("embedding_maps",
                    {"video-text space": {"video": emb["video_vt"][:m], "text": emb["text_vt"][:m]},
                     "video-audio space": {"video": emb["video_va"][:m],
                                           "audio": emb["audio_va"][:m]}},
                    factors[:m], paths.join(out_dir, f"embeddings_{method}.png"), method=method,
                    title=f"{'t-SNE' if method == 'tsne' else 'PCA'} of the common-space "
                    f"embeddings of {m} held-out clips, step {step}")
