"""The training state: a pure pytree, so the jitted step is a function of (state, batch)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
from flax import nnx


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes.

    step: int32 scalar, the number of updates applied so far.
    params: nnx.State of the model's trainable nnx.Param variables.
    rest: nnx.State of every other model variable (batch-norm statistics, frozen
      embeddings), updated by the forward pass, never by the optimizer.
    opt_state: the optax state of `params`.
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


def merge_model(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State) -> nnx.Module:
    return nnx.merge(graphdef, params, rest, copy=True)
