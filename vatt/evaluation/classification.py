"""Classification evaluation: multi-view averaged logits, top-1 / top-5, split averaging, and the
labelled synthetic world that every downstream path uses without a download.

Multi-view testing (VATT fine-tuning: 4 clips x 3 crops): the data pipeline yields video
[b, V, T, H, W, 3] (audio [b, V, S]) at evaluation; the V views are folded into the batch, the
logits are averaged over views, then ranked.

Synthetic labels: `label_factors` names factors of the synthetic world (vatt.data.synthetic);
the class is their joint value, e.g. ("direction", "speed") -> 8 motion classes, ("shape",
"direction", "speed") -> 32 classes. Motion factors need temporal structure that a randomly
initialised backbone does not linearly expose, while contrastive pretraining (captions and the
audio's pitch contour / rhythm name them) teaches them: the gap the probe must show.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vatt import paths
from vatt.data import synthetic
from vatt.evaluation.base import CompiledPerModel, EvalContext, map_batches

# Rank of a single example of each modality (without batch and view axes).
EXAMPLE_NDIM = {"video": 4, "audio": 1}


# ----------------------------------------------------------------------------- synthetic labels
def synthetic_num_classes(label_factors: Sequence[str]) -> int:
    """Number of classes of the joint value of `label_factors` (names from FACTOR_NAMES)."""
    sizes = _factor_sizes(label_factors)
    return int(np.prod(sizes))


def _factor_sizes(label_factors: Sequence[str]) -> list[int]:
    unknown = [f for f in label_factors if f not in synthetic.FACTOR_NAMES]
    if unknown or not label_factors:
        raise ValueError(f"label_factors={tuple(label_factors)}: use a non-empty subset of "
                         f"{synthetic.FACTOR_NAMES}")
    return [len(synthetic.FACTOR_VALUES[synthetic.FACTOR_NAMES.index(f)]) for f in label_factors]


def synthetic_labels(factors: np.ndarray, label_factors: Sequence[str]) -> np.ndarray:
    """factors int [N, 5] (SyntheticWorld batches) -> int32 labels [N]."""
    idx = [synthetic.FACTOR_NAMES.index(f) for f in label_factors]
    cols = tuple(np.asarray(factors)[:, i] for i in idx)
    return np.ravel_multi_index(cols, _factor_sizes(label_factors)).astype(np.int32)


class SyntheticClassification:
    """Labelled clips of the synthetic world for one modality.

    Training clips come from the world's training stream (offset so they never coincide with
    the pretraining batches' indices); test clips are the held-out split (distinct factor
    combinations, other random streams).
    """

    # Training clips of downstream tasks start here in the world's training index space.
    TRAIN_OFFSET = 10**9

    def __init__(self, world: synthetic.SyntheticWorld, label_factors: Sequence[str],
                 modality: str = "video"):
        self.world, self.label_factors, self.modality = world, tuple(label_factors), modality
        self.num_classes = synthetic_num_classes(self.label_factors)

    def _select(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {self.modality: batch[self.modality],
               "label": synthetic_labels(batch["factors"], self.label_factors)}
        if "valid" in batch:
            out["valid"] = batch["valid"]
        return out

    def train_batch(self, step: int, batch_size: int, process_index: int = 0,
                    process_count: int = 1) -> dict[str, np.ndarray]:
        """This host's share of labelled training batch `step`: {modality, label [b]}."""
        per_host = batch_size // process_count
        first = self.TRAIN_OFFSET + step * batch_size + process_index * per_host
        examples = [self.world.train_example(first + i) for i in range(per_host)]
        return self._select({k: np.stack([e[k] for e in examples]) for k in examples[0]})

    def eval_batches(self, num_clips: int, batch_size: int, process_index: int = 0,
                     process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """The held-out split: {modality, label, valid} per global batch (this host's share)."""
        for batch in self.world.eval_batches(num_clips, batch_size, process_index, process_count):
            yield self._select(batch)


class SyntheticClassificationStream:
    """Resumable training stream for the loop (state = the step)."""

    def __init__(self, data: SyntheticClassification, batch_size: int, start_step: int,
                 process_index: int, process_count: int):
        self.data, self.batch_size, self.step = data, batch_size, start_step
        self.process_index, self.process_count = process_index, process_count

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self.data.train_batch(self.step, self.batch_size, self.process_index,
                                      self.process_count)
        self.step += 1
        return batch

    def get_state(self) -> dict[str, int]:
        return {"step": self.step}

    def set_state(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


# ----------------------------------------------------------------------------- metrics
def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """bool [N]: the label is among the k highest logits (ties counted against the label)."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    true = logits[np.arange(len(labels)), labels]
    better = (logits > true[:, None]).sum(1)
    ties = (logits == true[:, None]).sum(1) - 1
    return (better + ties) < k


def accuracy_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """{"top1", "top5"} in percent (top5 = top-min(5, C))."""
    k5 = min(5, logits.shape[1])
    return {"top1": float(100.0 * topk_correct(logits, labels, 1).mean()),
            "top5": float(100.0 * topk_correct(logits, labels, k5).mean())}


def fold_views(x: jax.Array, modality: str) -> tuple[jax.Array, int]:
    """[B, V, ...] -> ([B*V, ...], V); a single-view [B, ...] input returns V = 1."""
    if x.ndim == EXAMPLE_NDIM[modality] + 2:
        return x.reshape((-1,) + x.shape[2:]), x.shape[1]
    return x, 1


def classifier_logits_fn(graphdef: nnx.GraphDef, modality: str) -> Callable:
    """Jittable (params, rest, x) -> view-averaged logits [B, C] of a Classifier model."""
    def logits_fn(params, rest, x):
        model = nnx.merge(graphdef, params, rest, copy=True)
        b = x.shape[0]
        flat, views = fold_views(x, modality)
        logits = model(flat, training=False).astype(jnp.float32)
        return logits.reshape(b, views, -1).mean(axis=1)
    return logits_fn


class ClassificationEvaluator:
    """Top-1 / top-5 of a Classifier on one test split under `<prefix>/<split>/` and (this run's
    split) `<prefix>/top1`, `<prefix>/top5`.

    batches: callable(process_index, process_count) -> iterable of host batches
      {input_key: [b, (V,) ...], label [b], valid [b]}.
    """

    def __init__(self, batches: Callable[[int, int], Iterable[dict[str, np.ndarray]]],
                 modality: str, split: str = "test", prefix: str = "finetune"):
        self.batches, self.modality, self.split, self.prefix = batches, modality, split, prefix
        self._logits = CompiledPerModel(classifier_logits_fn, modality)

    def run(self, ctx: EvalContext) -> dict[str, float]:
        out = map_batches(self._logits(ctx.graphdef), ctx,
                          self.batches(jax.process_index(), jax.process_count()),
                          inputs=(self.modality,), keep=("label",))
        logits, labels = out["out"], out["label"]
        acc = accuracy_metrics(logits, labels)
        out = {f"{self.prefix}/{self.split}/{k}": v for k, v in acc.items()}
        out.update({f"{self.prefix}/{k}": v for k, v in acc.items()})
        out[f"{self.prefix}/{self.split}/num_examples"] = float(len(labels))
        return out


def average_over_splits(workdirs: Sequence[str], prefix: str = "finetune") -> dict[str, float]:
    """Mean of the final `<prefix>/top1` and `/top5` of several runs (one per official split or
    fold, e.g. UCF101 splits 1-3 or ESC-50 folds 1-5), as the papers report them."""
    finals = []
    for wd in workdirs:
        last: dict[str, float] = {}
        for line in paths.read_text(paths.join(wd, "metrics.jsonl")).splitlines():  # or gs://
            entry = json.loads(line)
            if f"{prefix}/top1" in entry:
                last = entry
        if not last:
            raise ValueError(f"{wd}/metrics.jsonl holds no {prefix}/top1 entry")
        finals.append(last)
    return {f"{prefix}/{k}_mean_over_splits": float(np.mean([e[f"{prefix}/{k}"] for e in finals]))
            for k in ("top1", "top5")}
