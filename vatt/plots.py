"""PNG plots of a run: retrieval similarity, recall at k, CKA heatmaps, embedding maps, curves,
and the mean +- std panels of an ablation.

Every function takes host numpy arrays and an output path and writes one PNG (creating the
folder). They use matplotlib's object API on an Agg canvas (no pyplot, no global backend
state), so they are safe to call from the metrics writer's background thread. The embedding
maps use a small exact t-SNE in numpy (O(n^2) memory, meant for up to a few thousand points),
so there is no scikit-learn dependency; `pca_2d` is the fast fallback.
"""

from __future__ import annotations

import io
import json
import textwrap
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from etils import epath

from vatt import paths
from vatt.data import synthetic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MODALITY_STYLE = {"video": ("tab:blue", "o"), "audio": ("tab:orange", "^"),
                  "text": ("tab:green", "s")}
# The synthetic world's colour factor drawn in its own colour (white as light grey, so it shows).
FACTOR_COLOURS = {"colour": ["#e41a1c", "#2ca02c", "#1f4fff", "#e6d800", "#17d4d4", "#d41fd4",
                             "#ff8c00", "#b0b0b0"]}


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    # matplotlib is imported on the first figure, not with this module: it costs 0.6 s of
    # start-up that a run without plots (and every run before its first evaluation) never uses.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=110, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str) -> str:
    # Rendered in memory, then written whole (renamed into place locally, one upload for a
    # gs:// workdir), so a viewer (or a test) never sees a half-written PNG.
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    paths.write_bytes(path, png.getvalue())
    return path


# ----------------------------------------------------------------------------- retrieval
def plot_similarity(similarity: np.ndarray, path: str, *, title: str, query_label: str,
                    item_label: str, group_names: Sequence[str] | None = None,
                    group_of: np.ndarray | None = None) -> str:
    """Heatmap of a retrieval similarity matrix [num_queries, num_items], ground truth on the
    diagonal. With `group_of` [n] (e.g. each clip's colour factor, rows and columns sorted by
    it), ticks mark the groups by name so block structure is readable."""
    sim = np.asarray(similarity, np.float64)
    fig = _new_figure(7.0, 6.0)
    ax = fig.add_subplot()
    im = ax.imshow(sim, cmap="viridis", interpolation="nearest", aspect="auto")
    fig.colorbar(im, ax=ax, label="cosine similarity")
    ax.set_title(title)
    ax.set_xlabel(item_label)
    ax.set_ylabel(query_label)
    if group_of is not None and group_names is not None:
        group_of = np.asarray(group_of)
        centres, names = [], []
        for g, name in enumerate(group_names):
            idx = np.flatnonzero(group_of == g)
            if idx.size:
                centres.append(idx.mean())
                names.append(name)
                if idx[0] > 0:  # group boundary lines
                    ax.axhline(idx[0] - 0.5, color="white", lw=0.4, alpha=0.6)
                    ax.axvline(idx[0] - 0.5, color="white", lw=0.4, alpha=0.6)
        ax.set_xticks(centres, names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(centres, names, fontsize=8)
    return _save(fig, path)


def plot_recall_at_k(ranks: Mapping[str, np.ndarray], num_items: int, path: str, *,
                     title: str) -> str:
    """Recall at k (percent) against k for each retrieval direction (ranks are 1-based ground
    truth ranks [num_queries]), with the chance curve k / num_items."""
    ks = np.arange(1, num_items + 1)
    fig = _new_figure(6.5, 4.5)
    ax = fig.add_subplot()
    for name, r in ranks.items():
        r = np.asarray(r)
        recall = 100.0 * (r[None, :] <= ks[:, None]).mean(axis=1)
        ax.plot(ks, recall, lw=2, label=f"{name} (R@1 {recall[0]:.1f}%, "
                f"R@10 {recall[min(9, num_items - 1)]:.1f}%)")
    ax.plot(ks, 100.0 * ks / num_items, "--", color="grey", label="chance")
    ax.set_xscale("log")
    ax.set_xlim(1, num_items)
    ax.set_ylim(0, 101)
    ax.set_xlabel("k (log scale)")
    ax.set_ylabel("recall at k (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


# ----------------------------------------------------------------------------- CKA
def plot_cka_heatmaps(matrices: Mapping[str, np.ndarray], path: str, *, x_name: str,
                      y_name: str, x_labels: Sequence[str], y_labels: Sequence[str],
                      title: str) -> str:
    """One heatmap per CKA estimator, side by side. matrices: name -> [len(x_labels),
    len(y_labels)] with x (e.g. video layers) on the rows."""
    n = len(matrices)
    fig = _new_figure(1.0 + 4.2 * n, 1.6 + 0.45 * max(len(x_labels), 4))
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, (name, m) in zip(axes, matrices.items()):
        m = np.asarray(m, np.float64)
        im = ax.imshow(m, cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest",
                       aspect="auto")
        if m.size <= 16 * 16:  # annotate when the numbers stay legible
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if m[i, j] > 0.6 else "white")
        ax.set_xticks(range(len(y_labels)), y_labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(x_labels)), x_labels, fontsize=8)
        ax.set_xlabel(f"{y_name} representation")
        ax.set_ylabel(f"{x_name} representation")
        ax.set_title(name)
    fig.colorbar(im, ax=list(axes), label="CKA", shrink=0.9)
    # One panel is narrow: wrap a long title instead of letting it run off the figure.
    fig.suptitle(textwrap.fill(title, width=max(40, int(14 * fig.get_figwidth()))), fontsize=11)
    return _save(fig, path)


# ----------------------------------------------------------------------------- ablations
def plot_ablation(labels: Sequence[str], panels: Mapping[str, Sequence[Sequence[float]]],
                  path: str, *, title: str) -> str:
    """One panel per metric: mean +- standard deviation over seeds at each ablation point, and
    every seed's value as a dot. panels: metric -> per point (in `labels` order) the values of
    its seeds (NaN where a seed lacks the metric)."""
    n = len(panels)
    cols = min(n, 3)
    rows = -(-n // cols)
    # Room below each panel for the longest tick label (labels may span several lines).
    label_lines = max((label.count("\n") + 1 for label in labels), default=1)
    widest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    fig = _new_figure(1.2 + 3.6 * cols, 1.2 + (2.8 + 0.05 * widest + 0.15 * label_lines) * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    x = np.arange(len(labels))
    for ax, (metric, per_point) in zip(axes, panels.items()):
        means, stds = [], []
        for i, values in enumerate(per_point):
            v = np.asarray([u for u in values if np.isfinite(u)], np.float64)
            means.append(v.mean() if v.size else np.nan)
            stds.append(v.std(ddof=1) if v.size > 1 else 0.0)
            ax.scatter(np.full(v.size, i), v, s=10, color="tab:gray", alpha=0.7, zorder=3)
        ax.errorbar(x, means, yerr=stds, fmt="o-", color="tab:blue", capsize=4, zorder=2)
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(textwrap.fill(title, width=max(40, int(14 * fig.get_figwidth()))), fontsize=11)
    return _save(fig, path)


# ----------------------------------------------------------------------------- embedding maps
def pca_2d(x: np.ndarray) -> np.ndarray:
    """[n, d] -> [n, 2]: projection on the two leading principal components."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def _conditional_probabilities(sq_dist: np.ndarray, perplexity: float) -> np.ndarray:
    """Row-wise Gaussian affinities [n, n] whose entropy is log(perplexity) (bisection on the
    precision beta, vectorised over rows)."""
    n = sq_dist.shape[0]
    target = np.log(perplexity)
    d = sq_dist - np.where(np.eye(n, dtype=bool), np.inf, sq_dist).min(1, keepdims=True)
    beta, lo, hi = np.ones(n), np.zeros(n), np.full(n, np.inf)
    off = ~np.eye(n, dtype=bool)
    for _ in range(64):
        p = np.exp(-d * beta[:, None]) * off
        s = p.sum(1)
        entropy = np.log(s) + beta * (d * p).sum(1) / s
        too_flat = entropy > target  # entropy too high: sharpen (raise beta)
        lo = np.where(too_flat, beta, lo)
        hi = np.where(too_flat, hi, beta)
        beta = np.where(np.isinf(hi), beta * 2.0, (lo + hi) / 2.0)
    p = np.exp(-d * beta[:, None]) * off
    return p / p.sum(1, keepdims=True)


def tsne_2d(x: np.ndarray, *, perplexity: float = 30.0, num_iters: int = 500,
            seed: int = 0) -> np.ndarray:
    """Exact t-SNE (van der Maaten & Hinton 2008) of x [n, d] -> [n, 2], in numpy.

    PCA to 50 dims, Gaussian input affinities at the given perplexity (clamped to (n-1)/3),
    Student-t output kernel, early exaggeration 12 for the first quarter of the iterations,
    momentum 0.5 -> 0.8 with per-parameter gains, learning rate max(n / 48, 50), PCA
    initialisation (deterministic; `seed` only breaks ties of duplicated points).
    """
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    if n < 5:
        return pca_2d(x)
    x = x - x.mean(0)
    if x.shape[1] > 50:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        x = x @ vt[:50].T
    sq = (x * x).sum(1)
    sq_dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    p = _conditional_probabilities(sq_dist, min(perplexity, (n - 1) / 3.0))
    p = np.maximum((p + p.T) / (2.0 * n), 1e-12)
    y = pca_2d(x)
    y = y / (y[:, 0].std() + 1e-12) * 1e-4
    y += np.random.default_rng(seed).normal(0.0, 1e-6, y.shape)
    velocity, gains = np.zeros_like(y), np.ones_like(y)
    lr = max(n / 48.0, 50.0)
    exaggerate_until = num_iters // 4
    p = p.astype(np.float32)
    y = y.astype(np.float32)
    velocity, gains = velocity.astype(np.float32), gains.astype(np.float32)
    for it in range(num_iters):
        exaggeration = 12.0 if it < exaggerate_until else 1.0
        momentum = 0.5 if it < exaggerate_until else 0.8
        # Elementwise and einsum only: the [n, 2] products are too thin for BLAS, whose
        # thread pool spins badly on a shared machine (6x slower on 2 busy cores).
        d0 = y[:, 0, None] - y[None, :, 0]
        d1 = y[:, 1, None] - y[None, :, 1]
        num = 1.0 / (1.0 + d0 * d0 + d1 * d1)
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        pq = (exaggeration * p - q) * num
        grad = 4.0 * (pq.sum(1)[:, None] * y - np.einsum("ij,jk->ik", pq, y))
        same_sign = np.sign(grad) == np.sign(velocity)
        gains = np.maximum(np.where(same_sign, gains * 0.8, gains + 0.2), 0.01)
        velocity = momentum * velocity - lr * gains * grad
        y = y + velocity
        y -= y.mean(0)
    return y


def plot_embedding_maps(spaces: Mapping[str, Mapping[str, np.ndarray]], factors: np.ndarray,
                        path: str, *, title: str, method: str = "tsne",
                        factor_panels: Sequence[str] = ("colour", "shape")) -> str:
    """2-D maps of common-space embeddings, one row per space, coloured by modality and by
    latent factors of the synthetic world.

    spaces: space name -> {modality: [n, D]} (the same n clips in every modality, rows aligned
      with `factors`), e.g. {"video-text space": {"video": v_vt, "text": t_vt}}.
    factors: int [n, 5] factor indices (synthetic.FACTOR_NAMES order).
    method: "tsne" or "pca".
    """
    factors = np.asarray(factors)
    panels = ["modality"] + list(factor_panels)
    fig = _new_figure(4.6 * len(panels), 4.2 * len(spaces))
    axes = fig.subplots(len(spaces), len(panels), squeeze=False)
    for row, (space, embs) in enumerate(spaces.items()):
        names = list(embs)
        stacked = np.concatenate([np.asarray(embs[m], np.float64) for m in names])
        xy = tsne_2d(stacked) if method == "tsne" else pca_2d(stacked)
        n = factors.shape[0]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            for i, m in enumerate(names):
                pts = xy[i * n:(i + 1) * n]
                colour, marker = MODALITY_STYLE.get(m, ("black", "o"))
                if panel == "modality":
                    ax.scatter(pts[:, 0], pts[:, 1], s=14, c=colour, marker=marker, alpha=0.7,
                               label=m, linewidths=0)
                    continue
                f = synthetic.FACTOR_NAMES.index(panel)
                values = synthetic.FACTOR_VALUES[f]
                palette = FACTOR_COLOURS.get(panel) or [f"C{j}" for j in range(len(values))]
                ax.scatter(pts[:, 0], pts[:, 1], s=14, marker=marker, alpha=0.75,
                           c=[palette[v] for v in factors[:, f]], edgecolors="black",
                           linewidths=0.2)
            if panel == "modality":
                ax.legend(title="modality (marker)", fontsize=8, loc="best", markerscale=1.5)
            else:
                values = synthetic.FACTOR_VALUES[synthetic.FACTOR_NAMES.index(panel)]
                palette = FACTOR_COLOURS.get(panel) or [f"C{j}" for j in range(len(values))]
                handles = [ax.scatter([], [], s=25, c=palette[j], marker="o", label=v,
                                      edgecolors="black", linewidths=0.2)
                           for j, v in enumerate(values)]
                ax.legend(handles=handles, title=f"{panel} factor", fontsize=7, loc="best",
                          ncol=2 if len(values) > 4 else 1)
            ax.set_title(f"{space}: by {panel}")
            ax.set_xticks([])
            ax.set_yticks([])
            axis = "t-SNE" if method == "tsne" else "PC"
            ax.set_xlabel(f"{axis} 1")
            ax.set_ylabel(f"{axis} 2")
    fig.suptitle(title)
    return _save(fig, path)


# ----------------------------------------------------------------------------- training curves
def read_metrics(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metrics.jsonl -> {key: (steps, values)}, sorted by step; for a step logged twice (after
    a restart) the last entry wins."""
    series: dict[str, dict[int, float]] = {}
    for line in paths.read_text(path).splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash mid-write
            continue
        step = int(record.get("step", 0))
        for k, v in record.items():
            if k in ("step", "time"):
                continue
            try:
                series.setdefault(k, {})[step] = float(v)
            except (TypeError, ValueError):
                continue
    out = {}
    for k, d in series.items():
        steps = np.array(sorted(d))
        out[k] = (steps, np.array([d[s] for s in steps]))
    return out


_CURVE_PANELS = (
    ("Training loss", "loss", lambda k: k.startswith("train/loss")),
    ("Learning rate", "learning rate", lambda k: k == "train/learning_rate"),
    ("Temperature", "temperature", lambda k: "temperature" in k),
    ("Gradient norm", "global gradient norm", lambda k: k == "train/grad_norm"),
    ("Throughput", "clips / s", lambda k: k == "train/clips_per_sec"),
    ("Input wait", "share of step time waiting for the batch",
     lambda k: k == "train/input_wait_fraction"),
    ("Zero-shot retrieval", "recall (%)",
     lambda k: k.startswith("zeroshot/") and k.rsplit("/", 1)[-1] in ("R@1", "R@10")),
    ("CKA", "CKA", lambda k: "cka" in k.lower()),
    ("Other evaluation metrics", "value",
     lambda k: not k.startswith(("train/", "zeroshot/")) and "cka" not in k.lower()),
)


def plot_training_curves(metrics_path: str, path: str) -> str | None:
    """Grid of curves from metrics.jsonl: losses, learning rate, temperature, gradient norm,
    throughput, zero-shot recall, CKA (panels without data are left out). None if empty."""
    series = read_metrics(metrics_path)
    panels = []
    for title, ylabel, match in _CURVE_PANELS:
        keys = sorted(k for k in series if match(k))
        if keys:
            panels.append((title, ylabel, keys))
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    width, height = 5.0 * cols, 3.4 * rows
    # A fixed grid, margins in inches (tick labels and axis label left of and below each panel,
    # its title above, the figure's title on top): constrained layout measures every text to
    # place them, which cost more than the drawing (1.15 -> 0.72 s of CPU for a 300-step run's
    # curves), and the curves are redrawn after every evaluation of every run.
    left, right, bottom, top, gap_x, gap_y = 0.85, 0.2, 0.55, 0.75, 0.95, 0.85
    axes_w = (width - left - right - (cols - 1) * gap_x) / cols
    axes_h = (height - bottom - top - (rows - 1) * gap_y) / rows
    fig = _new_figure(width, height, layout=None)
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(
        left=left / width, right=1 - right / width, bottom=bottom / height,
        top=1 - top / height, wspace=gap_x / axes_w, hspace=gap_y / axes_h)).ravel()
    for ax, (title, ylabel, keys) in zip(axes, panels):
        for k in keys:
            steps, values = series[k]
            few = len(steps) <= 20  # evaluation points: show the markers
            # Losses are all train/: drop the prefix; elsewhere train/ and zeroshot/ keys
            # can share a suffix, so keep the full key.
            label = k.removeprefix("train/") if title == "Training loss" else k
            ax.plot(steps, values, marker="o" if few else None, ms=3, lw=1.5, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    run_name = epath.Path(paths.resolve(metrics_path)).parent.name
    fig.suptitle(f"Training curves ({run_name})")
    return _save(fig, path)
