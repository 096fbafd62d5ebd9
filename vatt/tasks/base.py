"""What a task gives the one train loop (pretraining, fine-tuning, evaluate-only)."""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import jax
import ml_collections
import numpy as np
from flax import nnx

from vatt.evaluation.base import Evaluator


class DataStream(Protocol):
    """This host's share of every global batch, resumable from a JSON-able state."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def __next__(self) -> dict[str, Any]: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...


class Task(Protocol):
    config: ml_collections.ConfigDict

    # Which model variables the optimizer trains; the rest (batch-norm statistics, frozen
    # embeddings) are carried in `rest`.
    trainable: Any  # an nnx filter, e.g. nnx.Param

    # True: the loop builds the model, loads `config.init_from` and runs the evaluators; it
    # trains nothing, builds no optimizer and writes no checkpoint (train_stream and loss_fn
    # are never called).
    evaluate_only: bool

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module: ...

    def train_stream(self, start_step: int, process_index: int, process_count: int
                     ) -> DataStream: ...

    def loss_fn(self, model: nnx.Module, batch: dict[str, jax.Array], rngs: nnx.Rngs
                ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    def evaluators(self) -> list[Evaluator]:
        """Built once and cached (their compiled functions are reused across evaluations)."""

    def load_pretrained(self, params: nnx.State, rest: nnx.State, source: dict[str, np.ndarray]
                        ) -> tuple[nnx.State, nnx.State, dict[str, list[str]]]:
        """Called once on a fresh start (never on resume) when `config.init_from` is set, with
        the flat weights of that checkpoint (vatt.train.checkpointing.load_model_tree): copy
        what applies (vatt.models.transfer.load_into). Returns (params, rest, report)."""
