"""Classification head for fine-tuning / linear probing: dropout(pooled AGG) -> Linear.

``Classifier`` owns a ModalityBackbone (e.g. ``model.video_backbone`` of a pretrained VATT, or
``model.backbone("audio")`` for VATT-MA) and a ``head`` Linear. Parameter paths:
``backbone/{tokenizer,encoder}/...`` and ``head/{kernel,bias}``, so a pretrained backbone state can
be loaded into ``classifier.backbone``. DropToken is off by default (paper fine-tuning uses none).
For a linear probe, train only ``head`` (e.g. ``nnx.Optimizer(clf, tx, wrt=nnx.All(nnx.Param,
nnx.PathContains('head')))``) or feed frozen pooled features to a plain nnx.Linear.

``head_init``: "zeros" (fine-tuning starts from logits 0) or "official", the official heads'
initialisation for ``modality``: video Glorot-normal kernel and zero bias; audio Glorot-uniform
kernel and bias -log(C - 1) (the official audio head is a sigmoid classifier: every class starts
at probability 1/C; under a softmax the constant bias changes nothing).
"""

from __future__ import annotations

from typing import Any

import math

import jax
from flax import nnx

from vatt.models.backbone import ModalityBackbone, RngsLike, fold_rngs, stream_key


HEAD_INITS = ("zeros", "official")


def head_initializers(head_init: str, modality: str, num_classes: int) -> dict[str, Any]:
    """kernel_init / bias_init of the classification Linear (see the module docstring)."""
    if head_init == "zeros":
        return dict(kernel_init=nnx.initializers.zeros_init())
    if head_init != "official":
        raise ValueError(f"finetune.head_init={head_init!r}; choose one of {HEAD_INITS}.")
    if modality == "audio":
        bias = -math.log(num_classes - 1) if num_classes > 1 else 0.0
        return dict(kernel_init=nnx.initializers.xavier_uniform(),
                    bias_init=nnx.initializers.constant(bias))
    # Keras glorot_normal: a truncated normal, scaled so that its std is sqrt(2/(fan_in+fan_out)).
    return dict(kernel_init=nnx.initializers.variance_scaling(1.0, "fan_avg", "truncated_normal"))


class Classifier(nnx.Module):
    """x (the backbone's input) -> logits [B, num_classes] (float32)."""

    def __init__(self, backbone: ModalityBackbone, num_classes: int, *, dropout_rate: float = 0.1,
                 use_droptoken: bool = False, head_init: str = "zeros", modality: str = "video",
                 rngs: nnx.Rngs):
        self.backbone = backbone
        self.use_droptoken = use_droptoken
        d_model = getattr(backbone, "output_dim", backbone.encoder.d_model)  # T5: no post_proj
        self.dropout = nnx.Dropout(dropout_rate)
        # head_init="zeros": fine-tuning starts from the pretrained features' logits = 0.
        self.head = nnx.Linear(d_model, num_classes, rngs=rngs,
                               **head_initializers(head_init, modality, num_classes))

    @classmethod
    def from_model(cls, model: Any, modality: str, num_classes: int, *,
                   dropout_rate: float = 0.1, use_droptoken: bool = False,
                   head_init: str = "zeros", rngs: nnx.Rngs) -> "Classifier":
        """Classifier over `modality`'s backbone of a VATT model (shares its parameters)."""
        return cls(model.backbone(modality), num_classes, dropout_rate=dropout_rate,
                   use_droptoken=use_droptoken, head_init=head_init, modality=modality,
                   rngs=rngs)

    def features(self, x: jax.Array, *, training: bool = False,
                 rngs: RngsLike = None) -> jax.Array:
        """Pooled AGG features [B, D] (float32)."""
        return self.backbone(x, training=training, rngs=rngs,
                             droptoken=self.use_droptoken)["pooled"]

    def __call__(self, x: jax.Array, *, training: bool = False,
                 rngs: RngsLike = None) -> jax.Array:
        pooled = self.features(x, training=training, rngs=rngs)
        key = stream_key(fold_rngs(rngs, 7), "dropout", training)
        pooled = self.dropout(pooled, deterministic=not training, rngs=key)
        return self.head(pooled)
