"""The train step: a pure function (state, batch) -> (state, metrics), jitted over the mesh with
the state donated, and compiled once with a memory check before step 1. The loop runs it and the
benchmark times exactly the same function."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from vatt.parallel.mesh import batch_sharding, replicated
from vatt.train.state import TrainState, split_model


def step_rngs(base: jax.Array, step: jax.Array) -> nnx.Rngs:
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
            rngs = step_rngs(state.rng, state.step)
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
                           skip_nonfinite=config.nonfinite == "skip",
                           nan_at_step=config.debug_nan_at_step, trainable=task.trainable)
    return jax.jit(step, in_shardings=(state_sharding, batch_sharding(mesh)),
                   out_shardings=(state_sharding, replicated(mesh)), donate_argnums=0)


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
                              verbose: bool, limit_bytes: int | None = None):
    """Compiles the step for these shapes, reports the memory it needs per device, and stops
    with a clear message when that exceeds the device instead of failing deep inside XLA.

    limit_bytes: the per-device budget (default: what the device reports; none on CPU).
    The compiled executable is what the loop calls, so nothing recompiles after step 1.
    """
    compiled = step_fn.lower(state, batch).compile()
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
