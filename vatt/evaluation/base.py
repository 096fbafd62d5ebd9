"""What every evaluator shares: its context, its protocol, the writer it is handed, and the one
loop that moves host batches onto the devices and results back.

The evaluation layer sits below tasks and the train loop and imports neither: the loop builds an
`EvalContext` (model as graphdef/params/rest, mesh, workdir, step and the run's writer) and hands
it to each evaluator. Figures are described, not drawn, here: an evaluator asks the writer to
`plot(kind, ...)`, and the writer (vatt.metrics_writer, built by vatt.experiment) renders them
with vatt.plots on its background thread.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Protocol

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from vatt.kept import KeptFunctions
from vatt.parallel.mesh import fetch, host_to_global


class Writer(Protocol):
    """Where a run's metrics, images and figures go (process 0 writes; others no-op)."""

    def write(self, step: int, metrics: dict[str, Any]) -> None: ...

    def write_text(self, tag: str, text: str, step: int = 0) -> None: ...

    def write_image(self, step: int, tag: str, image: np.ndarray) -> None:
        """image: [H, W] (colour-mapped over its range) or [H, W, 3] in [0, 1] / uint8."""

    def plot(self, kind: str, *args: Any, **kwargs: Any) -> None:
        """Renders the figure `kind` (vatt.plots.plot_<kind>(*args, **kwargs)) off-thread."""

    def close(self) -> None: ...


class NullWriter:
    """A Writer that keeps nothing: for evaluators used as a library, without a run."""

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        pass

    def write_text(self, tag: str, text: str, step: int = 0) -> None:
        pass

    def write_image(self, step: int, tag: str, image: np.ndarray) -> None:
        pass

    def plot(self, kind: str, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


@dataclasses.dataclass
class EvalContext:
    """Everything an evaluator needs: the model as (graphdef, params, rest), the mesh, where to
    write artifacts (process 0 writes), the current step and the run's writer."""
    graphdef: nnx.GraphDef
    params: nnx.State
    rest: nnx.State
    mesh: Mesh
    workdir: str
    step: int
    writer: Writer = dataclasses.field(default_factory=NullWriter)

    def model(self) -> nnx.Module:
        """The merged model (for use inside a jitted function, merge from the states instead)."""
        return nnx.merge(self.graphdef, self.params, self.rest, copy=True)


class Evaluator(Protocol):
    """Every metric an evaluator returns starts with f"{prefix}/". An evaluator may also have
    an int `every_steps` (its own schedule during training, see `evaluators_due`); without it,
    or at 0, it follows the run's `eval_every_steps`."""
    prefix: str

    def run(self, ctx: EvalContext) -> dict[str, float]:
        """Metric name -> value, e.g. "zeroshot/t2v/R@1"."""


_COMPILED = KeptFunctions(16)


class CompiledPerModel:
    """jax.jit(make(graphdef, *args)), one per (make, args, model structure) in this process:
    periodic evaluations during training compile once, and so do the evaluations of later runs
    of the same model (a notebook's, a test's), whose evaluators are new objects. Keyed on the
    graphdef's structure (its repr), not on its id, which Python may give to another graphdef
    once the first is freed. `make` is a module-level function of (graphdef, *args)."""

    def __init__(self, make: Callable[..., Callable], *args: Any):
        self._make, self._args = make, args

    def __call__(self, graphdef: nnx.GraphDef) -> Callable:
        key = (self._make.__module__, self._make.__qualname__, self._args, repr(graphdef))
        return _COMPILED.get(key, lambda: jax.jit(self._make(graphdef, *self._args)))


def map_batches(fn: Callable, ctx: EvalContext, batches: Iterable[dict[str, np.ndarray]],
                inputs: tuple[str, ...], keep: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Runs a jitted fn(params, rest, *inputs) over host batches; returns host arrays of the
    valid (non-padding) rows, on every process.

    batches: this host's share of each global batch, {name: [b, ...]}; an optional "valid" [b]
      marks padding rows (0) of the last batch.
    inputs: batch keys passed to fn, in order, as global arrays sharded over `data`.
    keep: batch keys returned as they are (e.g. "label"), gathered over hosts.
    Returns {output key: [N, ...]} (fn returns a dict) or {"out": [N, ...]} (an array), plus
    the `keep` keys, N = number of valid rows over all hosts, in global batch order.
    """
    chunks: list[dict[str, np.ndarray]] = []
    for host_batch in batches:
        b = next(iter(host_batch.values())).shape[0]
        valid = np.asarray(host_batch.get("valid", np.ones(b, np.float32)), np.float32)
        arrays = host_to_global({**{k: host_batch[k] for k in inputs + keep}, "valid": valid},
                                ctx.mesh)
        out = fn(ctx.params, ctx.rest, *(arrays[k] for k in inputs))
        out = dict(out) if isinstance(out, dict) else {"out": out}
        host = fetch({**out, **{k: arrays[k] for k in keep + ("valid",)}})
        rows = np.asarray(host.pop("valid")) > 0
        chunks.append({k: np.asarray(v)[rows] for k, v in host.items()})
    if not chunks:
        raise ValueError("the evaluation data yielded no batch: check the split and batch size")
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def evaluators_due(evaluators: Iterable[Evaluator], step: int, total_steps: int,
                   default_every_steps: int) -> list[Evaluator]:
    """The evaluators to run after training step `step`: each every `every_steps` steps (its
    own, or `default_every_steps` where it has none or 0; 0 there too: never before the end),
    and every one of them at the last step, so the final metrics are always complete."""
    if step >= total_steps:
        return list(evaluators)
    due = []
    for evaluator in evaluators:
        every = getattr(evaluator, "every_steps", 0) or default_every_steps
        if every and step % every == 0:
            due.append(evaluator)
    return due


def run_evaluators(evaluators: Iterable[Evaluator], ctx: EvalContext) -> dict[str, float]:
    """Runs the given evaluators (a schedule picks them: `evaluators_due`); refuses two
    evaluators that report the same metric name."""
    results: dict[str, float] = {}
    source: dict[str, str] = {}
    for evaluator in evaluators:
        for key, value in evaluator.run(ctx).items():
            if key in results:
                raise ValueError(
                    f"metric {key!r} is reported by evaluators {source[key]!r} and "
                    f"{evaluator.prefix!r}: give one of them another `prefix` in config.evals")
            results[key], source[key] = value, evaluator.prefix
    return results


def check_unique_prefixes(evaluators: Iterable[Evaluator]) -> None:
    """Refuses evaluators whose metric prefixes are equal (their metrics would collide)."""
    seen: set[str] = set()
    for evaluator in evaluators:
        if evaluator.prefix in seen:
            raise ValueError(f"two evaluators report metrics under {evaluator.prefix!r}/: give "
                             "one of them another `prefix` in config.evals")
        seen.add(evaluator.prefix)


def pipeline_batches(data_cfg: Any, split: str, batch_size: int
                     ) -> Callable[[int, int], Iterable[dict[str, np.ndarray]]]:
    """Factory (process_index, process_count) -> one evaluation pass over the `split` of a built
    dataset (vatt.data.pipeline; multi-view per data_cfg.eval_num_clips / eval_num_crops)."""
    def batches(process_index: int, process_count: int):
        import ml_collections

        from vatt.data import pipeline  # TensorFlow: imported only when real data is read
        cfg = ml_collections.ConfigDict(data_cfg.to_dict())
        cfg.split = split
        return pipeline.make_iterator(cfg, global_batch_size=batch_size, training=False,
                                      process_index=process_index, process_count=process_count)
    return batches
