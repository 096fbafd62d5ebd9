"""Supervised fine-tuning of one pretrained backbone (video or audio) with a linear head.

Model: vatt.models.Classifier over `config.model`'s backbone of `config.finetune.modality`
(dropout on the pooled AGG output, then a zero-initialised Linear). All nnx.Param train.
Loss: softmax cross-entropy with label smoothing (VATT: 0.1). No DropToken.
Init: `config.init_from` = a pretraining workdir / checkpoint: the backbone is copied by path
(vatt.models.transfer), position tables interpolated when the input size differs (VATT
fine-tunes at 320 px after pretraining at 224 px); empty = random init (the baseline).
Data: `config.data.name == "synthetic"` (labels from `config.finetune.label_factors`) or a built
tfds dataset read by vatt.data.pipeline (`config.data`: train split `config.data.split`, test
split `config.finetune.test_split`, multi-view testing with eval_num_clips x eval_num_crops).
Metrics: finetune/top1, finetune/top5 (and finetune/<test split>/...) in metrics.jsonl.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from vatt.data import synthetic
from vatt.evaluation.base import pipeline_batches
from vatt.evaluation.classification import (ClassificationEvaluator, SyntheticClassification,
                                            SyntheticClassificationStream)
from vatt.models import Classifier, build_model, transfer


class PipelineStream:
    """Wraps a vatt.data.pipeline training iterator, keeping only the model input and label."""

    def __init__(self, iterator, modality: str):
        self.it, self.modality = iterator, modality

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, Any]:
        batch = next(self.it)
        return {self.modality: batch[self.modality], "label": batch["label"]}

    def get_state(self) -> dict:
        return self.it.get_state()

    def set_state(self, state: dict) -> None:
        self.it.set_state(state)


class FinetuneTask:
    """Task for the one train loop: backbone + classifier head, label-smoothed cross-entropy."""

    trainable = nnx.Param
    evaluate_only = False

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.ft = config.finetune
        self.modality = self.ft.modality
        self.synthetic = config.data.name == "synthetic"
        if self.synthetic:
            self.data = SyntheticClassification(synthetic.world_from_config(config.data),
                                                self.ft.label_factors, self.modality)
            self.num_classes = self.data.num_classes
        else:
            self.num_classes = int(self.ft.num_classes)
        self._evaluators: list[Any] | None = None

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        # The VATT model is built only to reuse its backbone constructor; the Classifier keeps
        # only the chosen backbone, so the other modalities and the heads are dropped.
        vatt = build_model(self.config.model, rngs=rngs)
        return Classifier.from_model(vatt, self.modality, self.num_classes,
                                     dropout_rate=self.ft.dropout_rate, use_droptoken=False,
                                     head_init=self.ft.get("head_init", "zeros"),
                                     rngs=rngs)

    def train_stream(self, start_step: int, process_index: int, process_count: int):
        if self.synthetic:
            return SyntheticClassificationStream(self.data, self.config.batch_size, start_step,
                                                 process_index, process_count)
        from vatt.data import pipeline
        it = pipeline.make_iterator(self.config.data, global_batch_size=self.config.batch_size,
                                    training=True, seed=self.config.seed,
                                    process_index=process_index, process_count=process_count)
        return PipelineStream(it, self.modality)

    def loss_fn(self, model: nnx.Module, batch: dict[str, jax.Array], rngs: nnx.Rngs
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        logits = model(batch[self.modality], training=True, rngs=rngs).astype(jnp.float32)
        labels = jax.nn.one_hot(batch["label"], self.num_classes)
        smoothing = self.ft.label_smoothing
        targets = labels * (1.0 - smoothing) + smoothing / self.num_classes
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        top1 = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)) * 100.0
        return loss, {"train/top1": top1}

    def load_pretrained(self, params: nnx.State, rest: nnx.State, source: dict[str, np.ndarray]
                        ) -> tuple[nnx.State, nnx.State, dict[str, list[str]]]:
        return transfer.load_into(params, rest, source, transfer.backbone_path_map(self.modality),
                                  require="backbone/encoder",
                                  pos_interpolation=self.config.model.get("pos_interpolation",
                                                                          "linear"))

    def evaluators(self) -> list[Any]:
        if self._evaluators is None:
            ev = self.config.eval
            if self.synthetic:
                batches = lambda pi, pc: self.data.eval_batches(ev.num_clips, ev.batch_size, pi, pc)
                split = "synthetic_test"
            else:
                split = self.ft.test_split
                batches = pipeline_batches(self.config.data, split, ev.batch_size)
            self._evaluators = [ClassificationEvaluator(batches, self.modality, split, "finetune")]
        return self._evaluators
