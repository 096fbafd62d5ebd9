"""Evaluate-only task: load a (pretrained or random) VATT model and run evaluators; no training.

Used by configs/linear_probe.py and configs/zeroshot.py (config.task = "linear_probe" |
"zeroshot", config.total_steps = 0). The one train loop sees `evaluate_only`: it builds the
model, copies the whole model from `config.init_from` (empty: random init, the baseline), runs
`evaluators()` (from `config.evals`, vatt.evaluation.registry) once and writes the metrics. No
optimizer, no train step and no checkpoint, so running it again with another `init_from`
evaluates the new weights.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from vatt.evaluation.base import check_unique_prefixes
from vatt.evaluation.registry import build_evaluators
from vatt.models import build_model, transfer


class EvaluateTask:
    """No training; evaluators from `config.evals` on a model loaded from `config.init_from`."""

    trainable = nnx.Param
    evaluate_only = True

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self._evaluators: list[Any] | None = None

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        return build_model(self.config.model, rngs=rngs)

    def train_stream(self, start_step: int, process_index: int, process_count: int):
        raise TypeError("an evaluate-only task has no training data")

    def loss_fn(self, model: nnx.Module, batch: dict[str, jax.Array], rngs: nnx.Rngs):
        raise TypeError("an evaluate-only task has no loss")

    def load_pretrained(self, params: nnx.State, rest: nnx.State, source: dict[str, np.ndarray]
                        ) -> tuple[nnx.State, nnx.State, dict[str, list[str]]]:
        return transfer.load_into(params, rest, source, transfer.identity_path_map,
                                  require="video_",
                                  pos_interpolation=self.config.model.get("pos_interpolation",
                                                                          "linear"))

    def evaluators(self) -> list[Any]:
        if self._evaluators is None:
            self._evaluators = build_evaluators(self.config)
            check_unique_prefixes(self._evaluators)
        return self._evaluators
