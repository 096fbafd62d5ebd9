"""What a task gives the one train loop (pretraining, fine-tuning, linear probing)."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Protocol

import jax
import ml_collections
from flax import nnx
from jax.sharding import Mesh


@dataclasses.dataclass
class EvalContext:
    """Everything an evaluator needs: the model as (graphdef, params, rest), the mesh, where
    to write artifacts (process 0 writes) and the current step."""
    graphdef: nnx.GraphDef
    params: nnx.State
    rest: nnx.State
    mesh: Mesh
    workdir: str
    step: int

    def model(self) -> nnx.Module:
        """The merged model (for use inside a jitted function, merge from the states instead)."""
        return nnx.merge(self.graphdef, self.params, self.rest, copy=True)


class Evaluator(Protocol):
    name: str

    def run(self, ctx: EvalContext) -> dict[str, float]:
        """Metric name -> value. Names carry the evaluator's prefix (e.g. "zeroshot/t2v/R@1")."""


class DataStream(Protocol):
    """This host's share of every global batch, resumable from a JSON-able state."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def __next__(self) -> dict[str, Any]: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...


class Task(Protocol):
    config: ml_collections.ConfigDict

    # Which model variables the optimizer trains; the rest (frozen backbones of a linear
    # probe, batch-norm statistics, frozen embeddings) are carried in `rest`.
    trainable: Any  # an nnx filter, e.g. nnx.Param

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module: ...

    def train_stream(self, start_step: int, process_index: int, process_count: int) -> DataStream: ...

    def loss_fn(self, model: nnx.Module, batch: dict[str, jax.Array], rngs: nnx.Rngs
                ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    def evaluators(self) -> list[Evaluator]: ...

    def load_pretrained(self, params: nnx.State, rest: nnx.State
                        ) -> tuple[nnx.State, nnx.State]:
        """Called once on a fresh start (never on resume): e.g. copy backbone weights from a
        pretraining checkpoint (`config.init_from`). Return the inputs unchanged otherwise."""
