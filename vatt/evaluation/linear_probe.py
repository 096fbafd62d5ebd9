"""Linear probe: frozen pooled backbone features + a linear classifier fitted in JAX.

Design: the probe is an Evaluator, not a trainer. It extracts features of the model in the
EvalContext (jit over the mesh; the pooled AGG output of one modality's backbone, multi-view
inputs averaged) and fits, full batch on the host's device:
  - "logistic": multinomial logistic regression W [D, C] + b (standardised features, L2), and
  - "lowrank":  the low-rank linear classifier W = U V, U [D, r], V [r, C] (+ b).
The L2 weight is chosen on a held-out 20% of the training features, then the classifier is
refitted on all of them. So the same object runs periodically inside pretraining (config.evals,
vatt.evaluation.registry) and as the only work of `configs/linear_probe.py` (an evaluate-only
task, vatt.tasks.evaluate).

Metrics (prefix "linear_probe"): <prefix>/top1 = mean over the splits (UCF101 3 splits, HMDB51 3,
ESC-50 5 folds) of the primary classifier; <prefix>/<clf>/top1 per classifier and
<prefix>/<split>/<clf>/top1 per split.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from vatt.evaluation.base import CompiledPerModel, EvalContext, map_batches, pipeline_batches
from vatt.evaluation.classification import SyntheticClassification, fold_views, topk_correct

Batches = Callable[[int, int], Iterable[dict[str, np.ndarray]]]
CLASSIFIERS = ("logistic", "lowrank")


def features_fn(graphdef: nnx.GraphDef, modality: str) -> Callable:
    """Jittable (params, rest, x [B, (V,) ...]) -> pooled features [B, D], averaged over views.

    Works for a VATT model (backbone `modality`) and for a Classifier (its backbone)."""
    def fn(params, rest, x):
        model = nnx.merge(graphdef, params, rest, copy=True)
        b = x.shape[0]
        flat, views = fold_views(x, modality)
        if hasattr(model, "encode"):
            feats = model.encode(modality, flat, training=False)["pooled"]
        else:
            feats = model.features(flat, training=False)
        return feats.astype(jnp.float32).reshape(b, views, -1).mean(axis=1)
    return fn


def _init(kind: str, d: int, c: int, rank: int, key: jax.Array) -> dict[str, jax.Array]:
    if kind == "logistic":
        return {"w": jnp.zeros((d, c)), "b": jnp.zeros((c,))}
    r = max(1, min(rank, d, c))
    # U random (so V receives gradients at once), V zero (so the start is logits = b).
    return {"u": jax.random.normal(key, (d, r)) / np.sqrt(d), "v": jnp.zeros((r, c)),
            "b": jnp.zeros((c,))}


def _logits(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    w = p["w"] if "w" in p else p["u"] @ p["v"]
    return x @ w + p["b"]


@functools.partial(jax.jit, static_argnames=("steps", "learning_rate"))
def _train(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, l2: jax.Array, *,
           steps: int, learning_rate: float) -> dict[str, jax.Array]:
    # Module-level jit: one compilation per (classifier kind, shapes, steps), reused across the
    # L2 grid, the splits and every periodic evaluation.
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

    def loss(p):
        ce = optax.softmax_cross_entropy_with_integer_labels(_logits(p, x), y).mean()
        reg = sum(jnp.sum(jnp.square(v)) for k, v in p.items() if k != "b")
        return ce + l2 * reg

    def body(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
    return params


def fit_linear(x: np.ndarray, y: np.ndarray, num_classes: int, *, kind: str = "logistic",
               l2: float = 1e-4, steps: int = 300, learning_rate: float = 0.05, rank: int = 128,
               seed: int = 0) -> dict[str, np.ndarray]:
    """Full-batch Adam on the (L2-regularised) softmax cross-entropy.

    x: float [N, D] standardised features; y: int [N]. Returns the classifier parameters.
    """
    params = _init(kind, x.shape[1], num_classes, rank, jax.random.key(seed))
    out = _train(params, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32),
                 jnp.float32(l2), steps=int(steps), learning_rate=float(learning_rate))
    return jax.tree.map(np.asarray, out)


def predict(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.asarray(_logits({k: jnp.asarray(v) for k, v in params.items()},
                              jnp.asarray(x, jnp.float32)))


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
          num_classes: int, cfg: ml_collections.ConfigDict) -> dict[str, dict[str, float]]:
    """Fits every classifier of cfg.classifiers; returns {clf: {"top1", "top5"}} (percent)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    tr, te = (train_x - mean) / std, (test_x - mean) / std
    rng = np.random.default_rng(0)
    order = rng.permutation(len(tr))
    n_val = max(1, len(tr) // 5) if len(tr) >= 10 else 0
    val_idx, fit_idx = order[:n_val], order[n_val:]
    out: dict[str, dict[str, float]] = {}
    for kind in cfg.classifiers:
        opts = dict(kind=kind, steps=cfg.steps, learning_rate=cfg.learning_rate, rank=cfg.rank)
        l2s = list(cfg.l2s)
        best = l2s[0]
        if n_val and len(l2s) > 1:
            scores = []
            for l2 in l2s:
                p = fit_linear(tr[fit_idx], train_y[fit_idx], num_classes, l2=l2, **opts)
                scores.append(topk_correct(predict(p, tr[val_idx]), train_y[val_idx], 1).mean())
            best = l2s[int(np.argmax(scores))]
        p = fit_linear(tr, train_y, num_classes, l2=best, **opts)
        logits = predict(p, te)
        k5 = min(5, num_classes)
        out[kind] = {"top1": float(100 * topk_correct(logits, test_y, 1).mean()),
                     "top5": float(100 * topk_correct(logits, test_y, k5).mean()),
                     "l2": float(best)}
    return out


def default_probe_config() -> ml_collections.ConfigDict:
    """Classifier settings shared by every probe config (`evals.<name>` / `config.probe`)."""
    return ml_collections.ConfigDict({
        "classifiers": CLASSIFIERS,
        "primary": "logistic",          # the one reported as <prefix>/top1; in `classifiers`
        "rank": 128,
        "steps": 300,
        "learning_rate": 0.05,
        "l2s": (1e-4, 1e-3, 1e-2),
    })


class LinearProbeEvaluator:
    """Frozen features -> linear classifiers, averaged over splits.

    splits: list of (split name, train batches, test batches, num_classes); batches are
      factories (process_index, process_count) -> host batches {modality, label, valid}.
    """

    def __init__(self, splits: Sequence[tuple[str, Batches, Batches, int]], modality: str,
                 cfg: ml_collections.ConfigDict, prefix: str = "linear_probe"):
        self.splits, self.modality, self.cfg, self.prefix = list(splits), modality, cfg, prefix
        self._features_fn = CompiledPerModel(features_fn, modality)

    def _features(self, ctx: EvalContext, batches: Batches) -> tuple[np.ndarray, np.ndarray]:
        out = map_batches(self._features_fn(ctx.graphdef), ctx,
                          batches(jax.process_index(), jax.process_count()),
                          inputs=(self.modality,), keep=("label",))
        return out["out"], out["label"]

    def run(self, ctx: EvalContext) -> dict[str, float]:
        out: dict[str, float] = {}
        per_clf: dict[str, list[dict[str, float]]] = {}
        for split, train_b, test_b, num_classes in self.splits:
            tr_x, tr_y = self._features(ctx, train_b)
            te_x, te_y = self._features(ctx, test_b)
            # Every host fits the same classifier on the same (gathered) features.
            results = probe(tr_x, tr_y, te_x, te_y, num_classes, self.cfg)
            for clf, r in results.items():
                per_clf.setdefault(clf, []).append(r)
                for k in ("top1", "top5"):
                    out[f"{self.prefix}/{split}/{clf}/{k}"] = r[k]
        for clf, rs in per_clf.items():
            for k in ("top1", "top5"):
                out[f"{self.prefix}/{clf}/{k}"] = float(np.mean([r[k] for r in rs]))
        primary = self.cfg.primary
        out[f"{self.prefix}/top1"] = out[f"{self.prefix}/{primary}/top1"]
        out[f"{self.prefix}/top5"] = out[f"{self.prefix}/{primary}/top5"]
        return out


# ----------------------------------------------------------------------------- builders
def synthetic_probe(world, cfg: ml_collections.ConfigDict, prefix: str = "linear_probe"
                    ) -> LinearProbeEvaluator:
    """Probe on the synthetic world: cfg.label_factors, num_train, num_test, batch_size,
    modality, plus the classifier settings of default_probe_config()."""
    data = SyntheticClassification(world, cfg.label_factors, cfg.modality)
    bs = cfg.batch_size

    def train_b(pi: int, pc: int):
        for step in range(cfg.num_train // bs):
            batch = data.train_batch(step, bs, pi, pc)
            batch["valid"] = np.ones(batch["label"].shape[0], np.float32)
            yield batch

    test_b = lambda pi, pc: data.eval_batches(cfg.num_test, bs, pi, pc)
    return LinearProbeEvaluator([("synthetic", train_b, test_b, data.num_classes)],
                                data.modality, cfg, prefix)


def dataset_probe(cfg: ml_collections.ConfigDict, prefix: str = "linear_probe"
                  ) -> LinearProbeEvaluator:
    """Probe on a built dataset: cfg.data (pipeline config), cfg.splits = ((name, train split,
    test split), ...), cfg.num_classes, cfg.train_num_clips (1), cfg.test_num_clips (several
    windows averaged), cfg.batch_size, cfg.modality."""
    def with_clips(n: int) -> ml_collections.ConfigDict:
        d = ml_collections.ConfigDict(cfg.data.to_dict())
        d.eval_num_clips, d.eval_num_crops = int(n), 1
        return d

    splits = []
    for name, train_split, test_split in cfg.splits:
        splits.append((name, pipeline_batches(with_clips(cfg.train_num_clips), train_split,
                                                   cfg.batch_size),
                       pipeline_batches(with_clips(cfg.test_num_clips), test_split,
                                             cfg.batch_size), int(cfg.num_classes)))
    return LinearProbeEvaluator(splits, cfg.modality, cfg, prefix)
