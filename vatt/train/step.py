"""The train step: a pure function (state, batch, controls) -> (state, metrics), jitted over the
mesh with the state donated, and compiled once with a memory check before step 1. The loop runs
it and the benchmark times exactly the same function. The learning-rate schedule's numbers and
the fault-injection step are an argument (StepControls), so runs that differ only in rate,
length or injected fault share one compiled program (and the persistent compilation cache
serves it to every process). config.accumulation_steps > 1 computes the same loss and gradients
in chunks, the GradCache way (vatt.train.grad_cache)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from vatt.kept import KeptFunctions
from vatt.models.rngs import init_rngs
from vatt.parallel.mesh import batch_sharding, replicated
from vatt.train import grad_cache
from vatt.train.optimizer import Schedule, learning_rate
from vatt.train.state import TrainState, split_model


def step_rngs(base: jax.Array, step: jax.Array) -> nnx.Rngs:
    """Per-step random streams: a pure function of (seed, step), whatever the device count."""
    key = jax.random.fold_in(jax.random.wrap_key_data(base), step)
    dropout, droptoken = jax.random.split(key)
    return init_rngs(dropout=dropout, droptoken=droptoken)


class StepControls(NamedTuple):
    """The step's runtime numbers: arguments of the jitted step, so their values never change
    the compiled program. Replicated scalars (`step_controls` puts them on the mesh)."""
    schedule: Schedule       # the learning-rate schedule (vatt.train.optimizer)
    nan_at_step: jax.Array   # int32; fault injection for tests: that (1-based) step's loss is
    #                          NaN (config.debug_nan_at_step; -1: never)


def step_controls(config: ml_collections.ConfigDict, schedule: Schedule, mesh: Mesh
                  ) -> StepControls:
    """The run's StepControls as replicated device arrays (the same on every process)."""
    controls = StepControls(schedule, np.int32(config.debug_nan_at_step))
    return jax.device_put(controls, replicated(mesh))


def inject_nan(loss: jax.Array, state: TrainState, controls: StepControls) -> jax.Array:
    """The loss, or NaN at the step controls.nan_at_step names (fault injection for tests)."""
    return loss * jnp.where(state.step + 1 == controls.nan_at_step, jnp.nan, 1.0)


def make_loss_and_grads(graphdef: nnx.GraphDef, loss_fn: Callable, trainable: Any = nnx.Param,
                        accumulation_steps: int = 1,
                        cached_loss: grad_cache.CachedLoss | None = None,
                        mesh: Mesh | None = None) -> Callable:
    """(state, batch, controls) -> (loss, metrics, updated state.rest, d loss / d state.params):
    the differentiating half of the train step, pure.

    accumulation_steps: 1 differentiates loss_fn on the whole batch at once (the program is
      the same as before the option existed); N > 1 computes the same loss and gradients with
      GradCache in N chunks (vatt.train.grad_cache), which needs `cached_loss` (the task's
      embed / head_loss halves of loss_fn) and, on a mesh, `mesh` (chunks stay sharded).
    """
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps={accumulation_steps} must be >= 1")
    if accumulation_steps > 1 and cached_loss is None:
        raise ValueError("accumulation_steps > 1 needs the loss in two halves (embed, head_loss)")

    def accumulated(state: TrainState, batch: dict[str, jax.Array], controls: StepControls):
        return grad_cache.loss_and_grads(
            graphdef, state.params, state.rest, batch, loss=cached_loss,
            steps=accumulation_steps, make_rngs=lambda: step_rngs(state.rng, state.step),
            trainable=trainable, mesh=mesh,
            scale_loss=lambda loss: inject_nan(loss, state, controls))

    def whole(state: TrainState, batch: dict[str, jax.Array], controls: StepControls):
        def compute_loss(params):
            # Rngs are stateful NNX objects: create them inside the differentiated
            # function so they live at the trace level where they are used.
            rngs = step_rngs(state.rng, state.step)
            # copy=True: fresh Variables owned by this trace level (flax 0.12 would
            # otherwise reuse the outer trace's Variables and refuse batch-norm updates).
            model = nnx.merge(graphdef, params, state.rest, copy=True)
            loss, metrics = loss_fn(model, batch, rngs)
            loss = inject_nan(loss, state, controls)
            _, _, new_rest = split_model(model, trainable)
            return loss, (metrics, new_rest)

        (loss, (metrics, new_rest)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
            state.params)
        return loss, metrics, new_rest, grads

    return accumulated if accumulation_steps > 1 else whole


def make_train_step(graphdef: nnx.GraphDef, loss_fn: Callable, tx: optax.GradientTransformation,
                    trainable: Any = nnx.Param,
                    accumulation_steps: int = 1, cached_loss: grad_cache.CachedLoss | None = None,
                    mesh: Mesh | None = None) -> Callable:
    """The pure step (state, batch, controls) -> (state, metrics) that the loop jits.

    tx: the update direction (vatt.train.optimizer.build_optimizer); the step scales it by
      -learning_rate(controls.schedule, state.step).
    accumulation_steps, cached_loss, mesh: how the gradients are computed (make_loss_and_grads).
    """
    loss_and_grads = make_loss_and_grads(graphdef, loss_fn, trainable, accumulation_steps,
                                         cached_loss, mesh)

    def train_step(state: TrainState, batch: dict[str, jax.Array], controls: StepControls):
        loss, metrics, new_rest, grads = loss_and_grads(state, batch, controls)
        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        lr = learning_rate(controls.schedule, state.step)
        updates = jax.tree.map(lambda u: (u * -lr).astype(u.dtype), updates)
        new_params = optax.apply_updates(state.params, updates)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        # Keep the previous parameters, optimizer and statistics when the numbers are bad and
        # count the skip. Whether the run then goes on (config.nonfinite="skip") or stops
        # ("stop") is the loop's decision, made on the count: one program serves both.
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_params = keep(new_params, state.params)
        new_opt_state = keep(new_opt_state, state.opt_state)
        new_rest = keep(new_rest, state.rest)
        skipped = state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32)
        new_state = state.replace(step=state.step + 1, params=new_params, rest=new_rest,
                                  opt_state=new_opt_state, skipped=skipped)
        metrics = dict(metrics)
        metrics.update({"train/loss": loss, "train/grad_norm": grad_norm,
                        "train/learning_rate": lr,
                        "train/nonfinite_steps": skipped})
        return new_state, metrics

    return train_step


# Config keys the step's program does not depend on: the schedule's numbers and the injected
# fault are its runtime arguments (StepControls; tests/test_no_recompile.py lowers runs that
# differ in them and compares the programs), what a non-finite step leads to is the loop's
# decision, and the rest is read by the loop, the checkpointer, the evaluators or the init.
NOT_IN_STEP = ("total_steps", "optimizer.learning_rate", "optimizer.end_learning_rate",
               "optimizer.warmup_steps", "debug_nan_at_step", "nonfinite", "seed", "init_from",
               "log_every_steps", "checkpoint_every_steps", "checkpoints_to_keep", "plots",
               "eval", "eval_every_steps", "evals", "tracking", "profile_start_step",
               "profile_steps", "memory_limit_gib")
_STEPS = KeptFunctions(4)


def config_digest(config: ml_collections.ConfigDict) -> str:
    """sha256 of the config but NOT_IN_STEP: what the model, the task's loss and the optimizer
    are built from (the train step's key, and create_train_state's reuse_key with the seed)."""
    values = config.to_dict()
    for dotted in NOT_IN_STEP:
        *parents, leaf = dotted.split(".")
        node = values
        for name in parents:
            node = node.get(name, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=repr).encode()).hexdigest()


def _step_key(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, state_sharding: Any,
              mesh: Mesh) -> tuple:
    """What the jitted step is a function of: the config but NOT_IN_STEP, the model's structure,
    the state's shardings and the mesh (its devices)."""
    text = config_digest(config) + repr(graphdef)
    leaves, treedef = jax.tree.flatten(state_sharding)
    return hashlib.sha256(text.encode()).hexdigest(), treedef, tuple(leaves), mesh


def clear_step_cache() -> None:
    """Forgets the steps jit_train_step kept (their programs too)."""
    _STEPS.clear()


def jit_train_step(config: ml_collections.ConfigDict, task, graphdef: nnx.GraphDef,
                   tx: optax.GradientTransformation, state_sharding: Any, mesh: Mesh,
                   reuse: bool = True) -> Callable:
    """The train step jitted with the state's shardings, the batch on `data`, the controls
    replicated and the state donated: what the loop runs and what the benchmark times.

    reuse: the same jitted function as an earlier call whose config differs only in NOT_IN_STEP
      (the last few are kept), so a second run in this process (a notebook's, a test's, a
      default-rate and a tiny-rate run) neither traces nor loads the program again: ~2 s of
      CPU for the tiny model, ~0.005 s reused. False: always a new function (what the
      no-recompile test lowers, so that it compares programs and not this cache). The key
      assumes what every caller in vatt passes: task = build_task(config) and tx =
      build_optimizer(config.optimizer); a caller with another task or optimizer for the same
      config must pass reuse=False.
    """
    steps = int(config.get("accumulation_steps", 1))
    if steps > 1 and not grad_cache.supports(task):
        raise ValueError(f"config.accumulation_steps={steps}: task {config.task!r} has no "
                         "contrastive gradient accumulation; use 1")

    def make() -> Callable:
        step = make_train_step(graphdef, task.loss_fn, tx, trainable=task.trainable,
                               accumulation_steps=steps, cached_loss=task if steps > 1 else None,
                               mesh=mesh)
        return jax.jit(step, in_shardings=(state_sharding, batch_sharding(mesh), replicated(mesh)),
                       out_shardings=(state_sharding, replicated(mesh)), donate_argnums=0)

    if not reuse:
        return make()
    return _STEPS.get(_step_key(config, graphdef, state_sharding, mesh), make)



class OutOfMemoryError(RuntimeError):
    """The compiled train step needs more memory than a device has."""


def device_memory_limit() -> int | None:
    """Bytes a device can hold, when the backend says (GPU/TPU); None on CPU."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # backends without memory_stats
        return None
    return stats.get("bytes_limit")


def compile_with_memory_check(step_fn, state: TrainState, batch: dict[str, jax.Array],
                              controls: StepControls, verbose: bool,
                              limit_bytes: int | None = None):
    """Compiles the step for these shapes, reports the memory it needs per device, and stops
    with a clear message when that exceeds the device instead of failing deep inside XLA.

    limit_bytes: the per-device budget (default: what the device reports; none on CPU).
    The compiled executable is what the loop calls, so nothing recompiles after step 1.
    """
    compiled = step_fn.lower(state, batch, controls).compile()
    try:
        mem = compiled.memory_analysis()
        need = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
                - mem.alias_size_in_bytes)
    except Exception:  # memory analysis is not available on every backend
        return compiled
    limit = limit_bytes if limit_bytes is not None else device_memory_limit()
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
