"""The training state (a pure pytree, so the jitted step is a function of (state, batch)) and
the one function that builds it, used by the loop, the benchmark and the alignment report."""

from __future__ import annotations

from typing import Any, Hashable

import flax.struct
import jax
import jax.extend.core
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from vatt.kept import KeptFunctions
from vatt.models.rngs import init_rngs
from vatt.parallel.mesh import state_sharding_rule


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes.

    step: int32 scalar, the number of updates applied so far.
    params: nnx.State of the model's trainable nnx.Param variables.
    rest: nnx.State of every other model variable (batch-norm statistics, frozen
      embeddings), updated by the forward pass, never by the optimizer.
    opt_state: the optax state of `params` (() when there is no optimizer: evaluate-only).
    rng: the run's base PRNG key; step s uses fold_in(rng, s), so a resumed run
      draws exactly the random numbers the uninterrupted run would have drawn.
    skipped: int32 count of updates skipped because of non-finite numbers.
    """
    step: jax.Array
    params: nnx.State
    rest: nnx.State
    opt_state: Any
    rng: jax.Array
    skipped: jax.Array


def split_model(model: nnx.Module, trainable: Any = nnx.Param
                ) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """(graphdef, trainable variables, everything else) for an nnx filter `trainable`."""
    return nnx.split(model, trainable, ...)


def model_rngs(seed: int) -> nnx.Rngs:
    """The initialisation streams of a run: a pure function of its seed."""
    return init_rngs(params=seed, dropout=seed + 1, droptoken=seed + 2)


# The traced initialisations of the last few (reuse_key, seed, layout) of this process.
_INITS = KeptFunctions(4)


def create_train_state(task, tx: optax.GradientTransformation | None, mesh: Mesh, seed: int,
                       fsdp: bool = False, abstract: bool = False,
                       reuse_key: Hashable | None = None
                       ) -> tuple[nnx.GraphDef, TrainState, Any]:
    """Builds the state of `task`'s model directly in its sharding: eval_shape -> shardings ->
    jit(init). Returns (graphdef, state, state shardings).

    No parameter is ever materialised on the host, so the large variants initialise on the
    devices that will hold them.
    tx: the optimizer, or None (evaluate-only: no optimizer state).
    abstract: return jax.ShapeDtypeStruct leaves carrying their shardings instead of arrays
      (a restore target, or a step to lower without memory); nothing is allocated.
    reuse_key: what `task` and `tx` are a function of (the loop passes its config's digest:
      task = build_task(config), tx = build_optimizer(config.optimizer)). A later call with the
      same key, seed, mesh and layout reuses the traced and jitted initialisation instead of
      building the model again (~1.2 s of CPU for the tiny model, ~0.01 s reused: a notebook's
      or a test's second run, a restore target then a fresh start); every call still returns
      new arrays. None: always trace (a caller with a task or optimizer of its own).
    """
    if reuse_key is None:
        parts = _trace_init(task, tx, mesh, seed, fsdp)
    else:
        parts = _INITS.get((reuse_key, int(seed), tx is None, bool(fsdp), mesh),
                           lambda: _trace_init(task, tx, mesh, seed, fsdp))
    graphdef, shapes, sharding, initialise = parts
    if abstract:
        state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                             shapes, sharding)
    else:
        state = initialise()
    return graphdef, state, sharding


def clear_init_cache() -> None:
    """Forgets the initialisations create_train_state kept (their programs too)."""
    _INITS.clear()


def _trace_init(task, tx: optax.GradientTransformation | None, mesh: Mesh, seed: int,
                fsdp: bool) -> tuple[nnx.GraphDef, Any, Any, Any]:
    """(graphdef, state shapes, state shardings, jitted function returning a fresh state)."""
    graphdefs = []

    def init() -> TrainState:
        graphdef, params, rest = split_model(task.build_model(model_rngs(seed)), task.trainable)
        graphdefs.append(graphdef)  # static structure, the same on every trace
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest,
                          opt_state=tx.init(params) if tx is not None else (),
                          rng=jax.random.key_data(jax.random.key(seed + 3)),
                          skipped=jnp.zeros((), jnp.int32))

    # The model is built (traced) once: that one trace gives the graphdef, the shapes the
    # shardings are chosen from, and the program that initialises the state in them (replaying
    # the jaxpr costs a fraction of building the modules again; each build of the tiny model
    # took ~0.15-0.3 s of CPU, and every run, restore and benchmark case starts here).
    closed, shapes = jax.make_jaxpr(init, return_shape=True)()
    sharding = jax.tree.map(state_sharding_rule(mesh, fsdp), shapes)
    treedef = jax.tree.structure(shapes)
    replay = jax.extend.core.jaxpr_as_fun(closed)
    initialise = jax.jit(lambda: jax.tree.unflatten(treedef, replay()), out_shardings=sharding)
    return graphdefs[0], shapes, sharding, initialise
