"""The one train loop. The task supplies model, loss, data and evaluators."""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from vatt.tasks import get_task
from vatt.tasks.base import EvalContext
from vatt.train import partitioning
from vatt.train.checkpointing import Checkpointer, PreemptionGuard
from vatt.train.metrics_writer import MetricsWriter, ProgressReporter
from vatt.train.optimizer import build_optimizer
from vatt.train.state import TrainState, split_model


def _step_rngs(base: jax.Array, step: jax.Array) -> nnx.Rngs:
    """Per-step random streams: a pure function of (seed, step), whatever the device count."""
    key = jax.random.fold_in(jax.random.wrap_key_data(base), step)
    dropout, droptoken = jax.random.split(key)
    return nnx.Rngs(dropout=dropout, droptoken=droptoken)


def make_train_step(graphdef: nnx.GraphDef, loss_fn: Callable, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, skip_nonfinite: bool, nan_at_step: int = -1,
                    trainable: Any = nnx.Param) -> Callable:
    """The pure step (state, batch) -> (state, metrics) that the loop jits.

    nan_at_step: fault injection for tests; the loss of that (1-based) step is NaN.
    """

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        def compute_loss(params):
            # Rngs are stateful NNX objects: create them inside the differentiated
            # function so they live at the trace level where they are used.
            rngs = _step_rngs(state.rng, state.step)
            # copy=True: fresh Variables owned by this trace level (flax 0.12 would
            # otherwise reuse the outer trace's Variables and refuse batch-norm updates).
            model = nnx.merge(graphdef, params, state.rest, copy=True)
            loss, metrics = loss_fn(model, batch, rngs)
            if nan_at_step >= 0:
                loss = loss * jnp.where(state.step + 1 == nan_at_step, jnp.nan, 1.0)
            _, _, new_rest = split_model(model, trainable)
            return loss, (metrics, new_rest)

        (loss, (metrics, new_rest)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
            state.params)
        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if skip_nonfinite:
            # Keep the previous parameters, optimizer and statistics when the numbers
            # are bad; count the skip so it shows up in the metrics.
            keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
            new_params = keep(new_params, state.params)
            new_opt_state = keep(new_opt_state, state.opt_state)
            new_rest = keep(new_rest, state.rest)
        skipped = state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32)
        new_state = state.replace(step=state.step + 1, params=new_params, rest=new_rest,
                                  opt_state=new_opt_state, skipped=skipped)
        metrics = dict(metrics)
        metrics.update({"train/loss": loss, "train/grad_norm": grad_norm,
                        "train/learning_rate": schedule(state.step),
                        "train/nonfinite_steps": skipped})
        return new_state, metrics

    return train_step


def jit_train_step(config: ml_collections.ConfigDict, task, graphdef: nnx.GraphDef,
                   tx: optax.GradientTransformation, schedule: optax.Schedule,
                   state_sharding: Any, mesh: Mesh) -> Callable:
    """The train step jitted with the state's shardings, the batch on `data` and the state
    donated: what the loop runs and what the benchmark times."""
    step = make_train_step(graphdef, task.loss_fn, tx, schedule,
                           skip_nonfinite=config.get("nonfinite", "skip") == "skip",
                           nan_at_step=config.get("debug_nan_at_step", -1),
                           trainable=task.trainable)
    return jax.jit(step, in_shardings=(state_sharding, partitioning.batch_sharding(mesh)),
                   out_shardings=(state_sharding, partitioning.replicated(mesh)),
                   donate_argnums=0)


def create_train_state(task, tx: optax.GradientTransformation, mesh: Mesh, seed: int,
                       pretrained: bool = False, fsdp: bool = False
                       ) -> tuple[nnx.GraphDef, TrainState, Any]:
    """Builds the state directly in its sharding: eval_shape -> shardings -> jit(init).

    No parameter is ever materialised on the host, so the large variants
    initialise on the devices that will hold them.
    """
    def init() -> TrainState:
        model = task.build_model(nnx.Rngs(params=seed, dropout=seed + 1, droptoken=seed + 2))
        _, params, rest = split_model(model, task.trainable)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest,
                          opt_state=tx.init(params), rng=jax.random.key_data(
                              jax.random.key(seed + 3)),
                          skipped=jnp.zeros((), jnp.int32))

    abstract_model = nnx.eval_shape(
        lambda: task.build_model(nnx.Rngs(params=seed, dropout=seed + 1, droptoken=seed + 2)))
    graphdef, _, _ = split_model(abstract_model, task.trainable)
    abstract_state = jax.eval_shape(init)
    state_sharding = jax.tree.map(partitioning.state_sharding_rule(mesh, fsdp), abstract_state)
    state = jax.jit(init, out_shardings=state_sharding)()
    if pretrained:
        # Host-side I/O (reading another run's checkpoint), so outside of jit; the
        # optimizer state is zeros either way and stays valid.
        params, rest = task.load_pretrained(state.params, state.rest)
        state = jax.device_put(state.replace(params=params, rest=rest), state_sharding)
    return graphdef, state, state_sharding


def _prefetch(stream, mesh: Mesh, size: int = 2
              ) -> Iterator[tuple[dict[str, jax.Array], dict]]:
    """Renders host batches and puts them on the devices in a background thread, so the
    step never waits for the host. Yields (global batch, stream state after it): the
    state that a checkpoint taken after this batch's step must record."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = object()

    def worker():
        try:
            for host_batch in stream:
                q.put((partitioning.host_to_global(host_batch, mesh), stream.get_state()))
        except BaseException as e:  # surfaced in the consumer, never swallowed
            q.put(e)
        q.put(stop)

    threading.Thread(target=worker, daemon=True).start()
    while True:
        item = q.get()
        if item is stop:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _to_float(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def run_evaluators(task, graphdef, state: TrainState, mesh: Mesh, workdir: str
                   ) -> dict[str, float]:
    ctx = EvalContext(graphdef, state.params, state.rest, mesh, workdir, int(state.step))
    results: dict[str, float] = {}
    for evaluator in task.evaluators():
        results.update(evaluator.run(ctx))
    return results


class OutOfMemoryError(RuntimeError):
    """The compiled train step needs more memory than a device has."""


def _device_memory_limit() -> int | None:
    """Bytes a device can hold, when the backend says (GPU/TPU); None on CPU."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # backends without memory_stats
        return None
    return stats.get("bytes_limit")


def compile_with_memory_check(step_fn, state: TrainState, batch: dict[str, jax.Array],
                              verbose: bool):
    """Compiles the step for these shapes, reports the memory it needs per device, and stops
    with a clear message when that exceeds the device instead of failing deep inside XLA.

    The compiled executable is what the loop calls, so nothing recompiles after step 1.
    """
    compiled = step_fn.lower(state, batch).compile()
    try:
        mem = compiled.memory_analysis()
        need = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
                - mem.alias_size_in_bytes)
    except Exception:  # memory analysis is not available on every backend
        return compiled
    limit = _device_memory_limit()
    gib = 2.0 ** 30
    if verbose:
        where = f" of the {limit / gib:.1f} GiB a device holds" if limit else ""
        print(f"Compiled train step: {need / gib:.3f} GiB per device{where} (state and batch "
              f"{mem.argument_size_in_bytes / gib:.3f} GiB, temporaries "
              f"{mem.temp_size_in_bytes / gib:.3f} GiB).", flush=True)
    if limit and need > limit:
        raise OutOfMemoryError(
            f"the train step needs {need / gib:.2f} GiB per device but a device holds "
            f"{limit / gib:.2f} GiB: lower config.batch_size, set config.model.remat_policy=full, "
            "config.mesh.fsdp=True or config.model.dtype=bfloat16, or use more devices")
    return compiled


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient and config.nonfinite == "stop"."""


class Preempted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was saved at `step`."""

    def __init__(self, step: int):
        super().__init__(f"preempted at step {step}; checkpoint saved")
        self.step = step


def _abstract(state: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, shardings)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains for `config.total_steps`, evaluating every `eval_every_steps` and at the end.

    Resumes from the latest good checkpoint in `workdir`; on SIGTERM/SIGINT saves one and
    raises Preempted. Returns the final evaluation metrics.
    """
    mesh = partitioning.make_mesh(config.mesh.data)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(config.to_json_best_effort(indent=2))
    # The mesh is also the ambient one, for the shard_map (chunked) losses.
    with jax.set_mesh(mesh):
        return _train(config, workdir, mesh)


def _train(config: ml_collections.ConfigDict, workdir: str, mesh: Mesh) -> dict[str, float]:
    task = get_task(config)
    tx, schedule = build_optimizer(config.optimizer, config.total_steps)
    checkpointer = Checkpointer(workdir, config.get("checkpoint_every_steps", 0),
                                config.get("checkpoints_to_keep", 3))
    fresh_start = not checkpointer.manager.all_steps()
    fsdp = bool(config.mesh.get("fsdp", False))
    graphdef, state, state_sharding = create_train_state(task, tx, mesh, config.seed,
                                                         pretrained=fresh_start, fsdp=fsdp)
    nonfinite = config.get("nonfinite", "skip")
    step_fn = jit_train_step(config, task, graphdef, tx, schedule, state_sharding, mesh)

    data_state: dict = {}
    if not fresh_start:
        restored = checkpointer.restore_latest(_abstract(state, state_sharding))
        if restored is not None:
            state, data_state, _ = restored
        else:  # every checkpoint was damaged: start over, as a fresh run would
            graphdef, state, _ = create_train_state(task, tx, mesh, config.seed, pretrained=True,
                                                    fsdp=fsdp)
    start_step = int(state.step)
    stream = task.train_stream(start_step, jax.process_index(), jax.process_count())
    if data_state:
        stream.set_state(data_state)

    writer = MetricsWriter(workdir)
    writer.write_text("config", "```\n" + config.to_json_best_effort(indent=2) + "\n```")
    is_main = jax.process_index() == 0
    progress = ProgressReporter(config.total_steps, config.batch_size)
    guard = PreemptionGuard(check_every=config.log_every_steps)
    if is_main:
        print(f"Training steps {start_step + 1}..{config.total_steps} on {jax.device_count()} "
              f"devices ({jax.process_count()} processes), global batch {config.batch_size}.",
              flush=True)

    pending: tuple[int, Any] | None = None  # metrics fetched one step late
    eval_metrics: dict[str, float] = {}
    nonfinite_seen = int(state.skipped)

    def flush_pending():
        nonlocal pending, nonfinite_seen
        if pending is None:
            return
        step, metrics = pending
        pending = None
        values = _to_float(metrics)
        clips_per_sec, sec_per_step = progress.throughput(step)
        values["train/clips_per_sec"] = clips_per_sec
        writer.write(step, values)
        if is_main:
            print(progress.line(step, values["train/loss"], clips_per_sec, sec_per_step), flush=True)

    def check_finite(step: int):
        nonlocal nonfinite_seen
        count = int(state.skipped)
        if count > nonfinite_seen and nonfinite == "stop":
            raise NonFiniteError(
                f"non-finite loss or gradient by step {step}; stopping. The last good checkpoint "
                f"in {checkpointer.directory} is kept: lower the learning rate, or set "
                "config.nonfinite=skip to skip such updates.")
        nonfinite_seen = count

    try:
        progress.start(start_step)
        batches = _prefetch(stream, mesh)
        compiled = None
        for step in range(start_step + 1, config.total_steps + 1):
            batch, data_state = next(batches)
            if compiled is None:
                # Compile once, before step 1, and refuse a step that cannot fit.
                compiled = compile_with_memory_check(step_fn, state, batch, is_main)
            state, metrics = compiled(state, batch)
            flush_pending()
            if step % config.log_every_steps == 0 or step == config.total_steps:
                pending = (step, metrics)
            if step == start_step + 1:
                # Exclude compilation from throughput and ETA (dispatch may return before
                # the first step has even compiled, so wait for it once).
                jax.block_until_ready(metrics)
                progress.start(step)
            if checkpointer.should_save(step) or step == config.total_steps:
                check_finite(step)
                checkpointer.save(step, state, data_state)
            eval_now = config.eval_every_steps and step % config.eval_every_steps == 0
            if eval_now or step == config.total_steps:
                flush_pending()
                check_finite(step)
                eval_metrics = run_evaluators(task, graphdef, state, mesh, workdir)
                writer.write(step, eval_metrics)
                if is_main:
                    print(f"eval at step {step}: " + ", ".join(
                        f"{k}={v:.2f}" for k, v in eval_metrics.items()), flush=True)
            if guard.requested(step, state):
                flush_pending()
                check_finite(step)
                checkpointer.save(step, state, data_state, force=True)
                checkpointer.wait()
                raise Preempted(step)
        flush_pending()
        if start_step >= config.total_steps:  # restarted after the end: evaluate again
            eval_metrics = run_evaluators(task, graphdef, state, mesh, workdir)
            writer.write(start_step, eval_metrics)
    finally:
        checkpointer.close()
        guard.restore_handlers()
        writer.close()  # drains TensorBoard events, writes plots/training_curves.png
    return eval_metrics
