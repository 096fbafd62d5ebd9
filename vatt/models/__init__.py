"""VATT models (Flax NNX): tokenizers, DropToken, transformers, common-space heads, classifier.

Public API:
  build_model(model_config, rngs=init_rngs(params=...)) -> VATT   (nnx.Rngs works too;
    init_rngs draws the same keys without flax's per-draw cost under a trace: vatt.models.rngs)
  model_config(variant) -> ConfigDict   (vatt.models.configs)
  Classifier(backbone, num_classes, ...), Classifier.from_model(model, modality, num_classes, ...)
  summarize(model_config, batch_size=1) -> (table, report)   (vatt.models.summary)
  FrozenParam: the variable type of frozen (user-supplied) word embeddings.
  T5TextBackbone: the official T5 text tower (model.text.kind="t5"; vatt.models.t5_text).
"""

from vatt.models.backbone import ModalityBackbone
from vatt.models.classifier import Classifier
from vatt.models.configs import model_config
from vatt.models.deflation import deflate_video_tokenizer, fold_temporal_kernel, images_to_video
from vatt.models.droptoken import drop_tokens, num_kept
from vatt.models.heads import CommonSpaceHeads
from vatt.models.rngs import init_rngs
from vatt.models.t5_text import T5TextBackbone
from vatt.models.tokenizers import FrozenParam
from vatt.models.transformer import Encoder
from vatt.models.vatt_model import MODALITIES, VATT, build_model

__all__ = [
    "MODALITIES", "VATT", "Classifier", "CommonSpaceHeads", "Encoder", "FrozenParam",
    "ModalityBackbone", "T5TextBackbone", "build_model", "deflate_video_tokenizer", "drop_tokens",
    "fold_temporal_kernel", "images_to_video", "init_rngs", "model_config", "num_kept",
]
