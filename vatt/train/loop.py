"""The one train loop. The task supplies model, loss, data and evaluators; the caller
(vatt.experiment) supplies the task and the writer."""

from __future__ import annotations

import json
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from vatt import paths
from vatt.evaluation.base import EvalContext, Writer, evaluators_due, run_evaluators
from vatt.models import transfer
from vatt.parallel import distributed
from vatt.parallel.mesh import make_mesh
from vatt.train.checkpointing import Checkpointer, PreemptionGuard, load_model_tree
from vatt.train.optimizer import build_optimizer
from vatt.train.prefetch import Prefetcher
from vatt.train.profiling import StepProfiler
from vatt.train.progress import ProgressReporter, Throughput
from vatt.train.state import TrainState, create_train_state
from vatt.train.step import (OutOfMemoryError, compile_with_memory_check, config_digest,
                             jit_train_step, step_controls)

__all__ = ["NonFiniteError", "OutOfMemoryError", "Preempted", "train_and_evaluate"]


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient and config.nonfinite == "stop"."""


class Preempted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was saved at `step`."""

    def __init__(self, step: int):
        super().__init__(f"preempted at step {step}; checkpoint saved")
        self.step = step


def _to_float(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def _is_main() -> bool:
    return jax.process_index() == 0


def _evaluate(task, graphdef, state: TrainState, mesh: Mesh, workdir: str,
              writer: Writer, evaluators: list | None = None) -> dict[str, float]:
    """Runs `evaluators` (default: all of the task's) and writes their metrics."""
    ctx = EvalContext(graphdef, state.params, state.rest, mesh, workdir, int(state.step), writer)
    metrics = run_evaluators(task.evaluators() if evaluators is None else evaluators, ctx)
    writer.write(int(state.step), metrics)
    if _is_main() and metrics:
        print(f"eval at step {int(state.step)}: " + ", ".join(
            f"{k}={v:.2f}" for k, v in metrics.items()), flush=True)
    return metrics


def _load_pretrained(task, config: ml_collections.ConfigDict, state: TrainState,
                     sharding: Any) -> TrainState:
    """Copies `config.init_from`'s weights into a fresh state (host-side I/O, outside jit; the
    optimizer state is zeros either way and stays valid)."""
    if not config.init_from:
        return state
    source = load_model_tree(config.init_from)
    params, rest, report = task.load_pretrained(state.params, state.rest, source)
    if _is_main():
        print(f"init_from={config.init_from}: {transfer.describe(report)}", flush=True)
    return jax.device_put(state.replace(params=params, rest=rest), sharding)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, task,
                       writer: Writer) -> dict[str, float]:
    """Trains `task` for `config.total_steps`, running each evaluator on its own schedule (its
    `every_steps`, else `eval_every_steps`; vatt.evaluation.base.evaluators_due) and all of them
    at the end.

    Resumes from the latest good checkpoint in `workdir`; on SIGTERM/SIGINT saves one and
    raises Preempted. An evaluate-only task (task.evaluate_only) loads `config.init_from`,
    evaluates once and returns: no optimizer, no step, no checkpoint. Returns the final
    evaluation metrics. The caller owns `writer` (and closes it).
    """
    mesh = make_mesh(config.mesh.data)
    if _is_main():  # the workdir may be gs://bucket/run (vatt.paths)
        paths.makedirs(workdir)
        paths.write_text(paths.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    writer.write_text("config", "```\n" + config.to_json_best_effort(indent=2) + "\n```")
    # The mesh is also the ambient one, for the shard_map (chunked) losses.
    with jax.set_mesh(mesh):
        # Built before anything runs, so an evaluator that cannot work fails at once.
        task.evaluators()
        if task.evaluate_only:
            graphdef, state, sharding = create_train_state(task, None, mesh, config.seed,
                                                           reuse_key=config_digest(config))
            state = _load_pretrained(task, config, state, sharding)
            return _evaluate(task, graphdef, state, mesh, workdir, writer)
        return _train(config, workdir, mesh, task, writer)


def _train(config: ml_collections.ConfigDict, workdir: str, mesh: Mesh, task,
           writer: Writer) -> dict[str, float]:
    tx, schedule = build_optimizer(config.optimizer, config.total_steps)
    checkpointer = Checkpointer(workdir, config.checkpoint_every_steps, config.checkpoints_to_keep)
    fsdp = bool(config.mesh.fsdp)
    init_key = config_digest(config)  # a second run of this config reuses the traced init
    restored = None
    if checkpointer.has_checkpoints():
        # Restore into the current mesh's shardings; nothing is allocated before the restore.
        graphdef, abstract, state_sharding = create_train_state(
            task, tx, mesh, config.seed, fsdp=fsdp, abstract=True, reuse_key=init_key)
        restored = checkpointer.restore_latest(abstract)
    data_state: dict = {}
    if restored is not None:
        state, data_state, _ = restored
    else:  # a fresh start (or every checkpoint was damaged: start over, as a fresh run would)
        graphdef, state, state_sharding = create_train_state(task, tx, mesh, config.seed,
                                                             fsdp=fsdp, reuse_key=init_key)
        state = _load_pretrained(task, config, state, state_sharding)
    step_fn = jit_train_step(config, task, graphdef, tx, state_sharding, mesh)
    controls = step_controls(config, schedule, mesh)
    start_step = int(state.step)
    stream = task.train_stream(start_step, jax.process_index(), jax.process_count())
    if data_state:
        stream.set_state(data_state)

    is_main = _is_main()
    progress = ProgressReporter(config.total_steps, config.batch_size)
    profiler = StepProfiler(workdir, config.profile_start_step, config.profile_steps, is_main)
    guard = PreemptionGuard()
    memory_limit = int(config.memory_limit_gib * 2**30) or None
    if is_main:
        print(f"Training steps {start_step + 1}..{config.total_steps} on {jax.device_count()} "
              f"devices ({jax.process_count()} processes), global batch {config.batch_size}.",
              flush=True)

    # A log step's metrics are written after the next step is dispatched (the writer overlaps
    # with it); its throughput figures are taken when the log step has finished on the devices,
    # before the next batch is waited for, so each interval holds exactly its steps' compute and
    # input waits (the cost: the host waits for the devices once per log interval).
    pending: tuple[int, Any, Throughput] | None = None
    eval_metrics: dict[str, float] = {}
    nonfinite_seen = int(state.skipped)

    def flush_pending():
        nonlocal pending
        if pending is None:
            return
        step, metrics, figures = pending
        pending = None
        values = _to_float(metrics)
        values["train/clips_per_sec"] = figures.clips_per_sec
        values["train/step_s"] = figures.sec_per_step
        values["train/input_wait_s"] = figures.input_wait_s
        values["train/input_wait_fraction"] = figures.input_wait_fraction
        writer.write(step, values)
        if is_main:
            print(progress.line(step, values["train/loss"], figures), flush=True)

    def check_finite(step: int):
        nonlocal nonfinite_seen
        count = int(state.skipped)
        if count > nonfinite_seen and config.nonfinite == "stop":
            raise NonFiniteError(
                f"non-finite loss or gradient by step {step}; stopping. The last good checkpoint "
                f"in {checkpointer.directory} is kept: lower the learning rate, or set "
                "config.nonfinite=skip to skip such updates.")
        nonfinite_seen = count

    batches = Prefetcher(stream, mesh)
    try:
        progress.start(start_step)
        compiled = None
        for step in range(start_step + 1, config.total_steps + 1):
            waiting = time.perf_counter()
            batch, data_state = next(batches)
            progress.waited(time.perf_counter() - waiting)
            if compiled is None:
                # Compile once, before step 1, and refuse a step that cannot fit.
                compiled = compile_with_memory_check(step_fn, state, batch, controls, is_main,
                                                     memory_limit)
                # Processes finish compiling at different times (one may read the compilation
                # cache); meet before the step's first collective.
                distributed.barrier(f"train step compiled at step {step}")
            with profiler.annotate(step):
                state, metrics = compiled(state, batch, controls)
            profiler.after_step(step, metrics)
            flush_pending()
            if step % config.log_every_steps == 0 or step == config.total_steps:
                jax.block_until_ready(metrics)
                pending = (step, metrics, progress.throughput(step))
            if step == start_step + 1:
                # Exclude compilation from throughput and ETA (dispatch may return before
                # the first step has even compiled, so wait for it once).
                jax.block_until_ready(metrics)
                progress.start(step)
            if checkpointer.should_save(step) or step == config.total_steps:
                aside = time.perf_counter()
                check_finite(step)
                checkpointer.save(step, state, data_state)
                progress.exclude(time.perf_counter() - aside)
            due = evaluators_due(task.evaluators(), step, config.total_steps,
                                 config.eval_every_steps)
            if due or step == config.total_steps:
                flush_pending()
                aside = time.perf_counter()
                check_finite(step)
                eval_metrics = _evaluate(task, graphdef, state, mesh, workdir, writer, due)
                progress.exclude(time.perf_counter() - aside)
            if guard.requested(step):
                flush_pending()
                check_finite(step)
                checkpointer.save(step, state, data_state, force=True)
                checkpointer.wait()
                raise Preempted(step)
        flush_pending()
        if start_step >= config.total_steps:  # restarted after the end: evaluate again
            eval_metrics = _evaluate(task, graphdef, state, mesh, workdir, writer)
    finally:
        profiler.close()
        batches.close()
        checkpointer.close()
        guard.restore_handlers()
    return eval_metrics


def read_config_json(workdir: str) -> ml_collections.ConfigDict:
    """The run's ConfigDict from <workdir>/config.json (written by train_and_evaluate)."""
    path = paths.join(workdir, "config.json")
    if not paths.exists(path):
        raise FileNotFoundError(
            f"{path} does not exist; pass the run's config with --config=configs/<file>.py:<arg> "
            "(and the same --config.<key>=<value> overrides the run used).")
    return ml_collections.ConfigDict(_tuples(json.loads(paths.read_text(path))))


def _tuples(value: Any) -> Any:
    """JSON turns the config's tuples (patch sizes, input sizes) into lists; undo that."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
