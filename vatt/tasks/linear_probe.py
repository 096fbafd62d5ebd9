"""Evaluate-only task: load a (pretrained or random) VATT model and run evaluators, no training.

Used by configs/linear_probe.py and configs/zeroshot.py (config.task = "linear_probe" |
"zeroshot"). The one train loop drives it: `load_pretrained` copies the whole model from
`config.init_from` (empty: random init, the baseline), then the loop runs `evaluators()` (built
from `config.evals` by vatt.evaluation.registry) at the end. Nothing is trained: `trainable`
selects no variable, the loss is a constant and the stream yields a 1-element placeholder, so
the (config-validated) total_steps=1 costs one trivial step. (With total_steps=0 the loop would
evaluate straight away; the config validation currently requires >= 1.)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx


class _Placeholder:
    """A data stream of empty batches (one float per example), resumable."""

    def __init__(self, batch_size: int, process_count: int):
        self.per_host = batch_size // process_count

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return {"placeholder": np.zeros((self.per_host,), np.float32)}

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


class EvaluateTask:
    """No training; evaluators from `config.evals` on a model loaded from `config.init_from`."""

    trainable = nnx.Nothing  # every variable stays in `rest`, untouched by the optimizer

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self._evaluators: list[Any] | None = None

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        from vatt.models import build_model
        return build_model(self.config.model, rngs=rngs)

    def train_stream(self, start_step: int, process_index: int, process_count: int):
        return _Placeholder(self.config.batch_size, process_count)

    def loss_fn(self, model: nnx.Module, batch: dict[str, jax.Array], rngs: nnx.Rngs
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        return jnp.zeros((), jnp.float32) * jnp.sum(batch["placeholder"]), {}

    def load_pretrained(self, params: nnx.State, rest: nnx.State) -> tuple[nnx.State, nnx.State]:
        init_from = self.config.get("init_from", "")
        if not init_from:
            return params, rest
        from vatt.train import pretrained
        params, rest, _ = pretrained.load_into(params, rest, init_from, pretrained.identity_path_map,
                                               require="")
        return params, rest

    def evaluators(self) -> list[Any]:
        if self._evaluators is None:
            from vatt.evaluation.registry import build_evaluators
            self._evaluators = build_evaluators(self.config)
        return self._evaluators
