"""Contrastive pretraining: NCE between video and audio, MIL-NCE between video and text."""

from __future__ import annotations

from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from vatt import losses
from vatt.alignment import cka
from vatt.data import synthetic
from vatt.evaluation.base import check_unique_prefixes
from vatt.evaluation.registry import build_evaluators
from vatt.evaluation.zeroshot import SyntheticZeroShotEvaluator
from vatt.models import build_model, transfer


class SyntheticTrainStream:
    """This host's share of every global training batch; its state is just the step."""

    def __init__(self, world: synthetic.SyntheticWorld, batch_size: int, start_step: int,
                 process_index: int, process_count: int):
        self.world, self.batch_size = world, batch_size
        self.step = start_step
        self.process_index, self.process_count = process_index, process_count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        batch = self.world.train_batch(self.step, self.batch_size, self.process_index,
                                       self.process_count)
        self.step += 1
        return {k: batch[k] for k in ("video", "audio", "text", "text_mask")}

    def get_state(self) -> dict[str, int]:
        return {"step": self.step}

    def set_state(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


class ModelInputs:
    """Keeps only what the pretraining step reads from a real-data iterator's batches."""

    KEYS = ("video", "audio", "text", "text_mask")

    def __init__(self, iterator):
        self.iterator = iterator

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, Any]:
        batch = next(self.iterator)
        missing = [k for k in self.KEYS if k not in batch]
        if missing:
            raise ValueError(f"pretraining needs {self.KEYS} but the dataset gives no {missing}: "
                             "pretrain on sources with video, audio and captions (mix in "
                             "text-less AudioSet via config.data.mixture)")
        return {k: batch[k] for k in self.KEYS}

    def get_state(self) -> dict:
        return self.iterator.get_state()

    def set_state(self, state: dict) -> None:
        self.iterator.set_state(state)


def _fill_invalid_rows(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Replaces rows with mask 0 by the mean of the valid rows.

    After column centring those rows are zero, so a linear (biased) CKA over the full
    batch equals the CKA over the valid rows alone, with static shapes under jit.
    """
    m = mask[:, None].astype(x.dtype)
    mean = jnp.sum(x * m, axis=0, keepdims=True) / jnp.maximum(jnp.sum(m), 1.0)
    return x * m + mean * (1.0 - m)


def alignment_terms(out: dict[str, dict[str, jax.Array]], text_mask: jax.Array,
                    cfg: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """Linear CKA between pooled backbone outputs and between common-space embeddings.

    Video-text pairs use only clips with a caption (the first candidate).
    Returns {"video_text", "video_audio", "audio_text", "common/video_text",
    "common/video_audio"} as scalars.
    """
    has_text = (jnp.max(text_mask, axis=-1) > 0)
    kernel = cfg.cka_kernel

    def pair(x, y, masked):
        x, y = x.astype(jnp.float32), y.astype(jnp.float32)
        if masked:
            x, y = _fill_invalid_rows(x, has_text), _fill_invalid_rows(y, has_text)
        return cka(x, y, kernel=kernel)

    v, a, t = out["video"]["pooled"], out["audio"]["pooled"], out["text"]["pooled"][:, 0]
    return {
        "video_text": pair(v, t, True),
        "video_audio": pair(v, a, False),
        "audio_text": pair(a, t, True),
        "common/video_text": pair(out["video"]["vt"], out["text"]["vt"][:, 0], True),
        "common/video_audio": pair(out["video"]["va"], out["audio"]["va"], False),
    }


def contrastive_loss(out: dict[str, dict[str, jax.Array]], text_mask: jax.Array,
                     cfg: ml_collections.ConfigDict, temperature: jax.Array | float | None = None
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """VATT's objective from the model outputs, plus the optional CKA alignment loss.

    out: model outputs (out["video"]["va"] [B,Dva], out["audio"]["va"] [B,Dva],
      out["video"]["vt"] [B,Dvt], out["text"]["vt"] [B,K,Dvt], out[m]["pooled"]).
    text_mask: [B, K], 1 for a real candidate caption; clips without any caption
      (AudioSet-style) add no MIL-NCE term and count in NCE; as in the official code
      their videos remain negatives for other clips' captions.
    temperature: overrides cfg.temperature (a learned temperature).

    Total = (w_va*L_va + w_vt*L_vt)/(w_va + w_vt) (official code, `combine="mean"`) or the
    paper's plain weighted sum (`"sum"`), then - cka_weight * (CKA(video, text) +
    CKA(video, audio)) on the pooled backbone outputs (Yun, Kim, Jung: alignment as a loss), or
    with cfg.cka_space="common" on the common-space embeddings the NCE/MIL-NCE terms compare.
    """
    tau = cfg.temperature if temperature is None else temperature
    if cfg.chunked:
        va = losses.nce_chunked(out["video"]["va"], out["audio"]["va"], temperature=tau)
        vt = losses.mil_nce_chunked(out["video"]["vt"], out["text"]["vt"], temperature=tau,
                                    text_mask=text_mask, variant=cfg.mil_nce_variant)
    else:
        va = losses.nce(out["video"]["va"], out["audio"]["va"], temperature=tau)
        vt = losses.mil_nce(out["video"]["vt"], out["text"]["vt"], temperature=tau,
                            text_mask=text_mask, variant=cfg.mil_nce_variant)
    weighted = cfg.va_weight * va + cfg.vt_weight * vt
    total = weighted / (cfg.va_weight + cfg.vt_weight) if cfg.combine == "mean" else weighted
    metrics = {"train/loss_va": va, "train/loss_vt": vt, "train/temperature": jnp.asarray(tau)}
    align = alignment_terms(out, text_mask, cfg)
    metrics.update({f"train/cka/{k}": val for k, val in align.items()})
    cka_weight = cfg.cka_weight
    if cka_weight:
        prefix = "common/" if cfg.cka_space == "common" else ""
        cka_loss = -cka_weight * (align[f"{prefix}video_text"] + align[f"{prefix}video_audio"])
        metrics["train/loss_cka"] = cka_loss
        total = total + cka_loss
    return total, metrics


class PretrainTask:
    """Supplies model, data, loss and evaluators for contrastive pretraining."""

    trainable = nnx.Param
    evaluate_only = False

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.synthetic = config.data.name == "synthetic"
        self.world = synthetic.world_from_config(config.data) if self.synthetic else None
        self._evaluators: list[Any] | None = None

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        model = build_model(self.config.model, rngs=rngs)
        if self.config.loss.learn_temperature:
            # Learned as log(tau) so it stays positive; trained with the model.
            # float32 explicitly: from a Python float it would be weakly typed until a resume
            # restored it strongly typed, another program and other dtype promotion.
            model.log_temperature = nnx.Param(
                jnp.log(jnp.asarray(self.config.loss.temperature, jnp.float32)))
        return model

    def train_stream(self, start_step: int, process_index: int, process_count: int):
        if self.synthetic:
            return SyntheticTrainStream(self.world, self.config.batch_size, start_step,
                                        process_index, process_count)
        # A built dataset (tfds builder or DMVR records, ArrayRecord) through the pipeline; its
        # position is restored from the checkpoint by the loop (set_state).
        from vatt.data import pipeline  # TensorFlow: imported only when real data is read
        return ModelInputs(pipeline.make_iterator(
            self.config.data, global_batch_size=self.config.batch_size, training=True,
            seed=self.config.seed, process_index=process_index, process_count=process_count))

    def embed(self, model: nnx.Module, batch: dict[str, jax.Array], rngs: nnx.Rngs,
              rows: jax.Array) -> dict[str, dict[str, jax.Array]]:
        """The backbone half of the loss: pooled features {m: {"pooled": [b, D]}} (text
        [b, K, D]) of `batch`'s b rows, whose global example indices are `rows` (int32 [b]):
        every dropout mask and DropToken subset of a row is drawn from its index, so a row's
        features do not depend on which other rows share its chunk (vatt.train.grad_cache)."""
        return model.features(video=batch["video"], audio=batch["audio"], text=batch["text"],
                              training=True, rngs=rngs, rows=rows)

    def head_loss(self, model: nnx.Module, features: dict[str, dict[str, jax.Array]],
                  batch: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The rest of the loss on the whole global batch: the common-space heads (BatchNorm
        statistics of the global batch), the learned temperature, NCE / MIL-NCE and CKA.
        features: PretrainTask.embed's output for all B rows; batch: needs "text_mask" [B, K]."""
        out = model.project(features, training=True)
        temperature = None
        if self.config.loss.learn_temperature:
            # Clip as CLIP does, so the logits cannot blow up (tau >= 0.01).
            temperature = jnp.maximum(jnp.exp(model.log_temperature[...]), 0.01)
        return contrastive_loss(out, batch["text_mask"], self.config.loss, temperature)

    def loss_fn(self, model: nnx.Module, batch: dict[str, jax.Array], rngs: nnx.Rngs
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """head_loss(embed(all rows)): the whole step at once (config.accumulation_steps=1)."""
        rows = jnp.arange(batch["video"].shape[0], dtype=jnp.int32)
        return self.head_loss(model, self.embed(model, batch, rngs, rows), batch)

    def load_pretrained(self, params: nnx.State, rest: nnx.State, source: dict[str, np.ndarray]
                        ) -> tuple[nnx.State, nnx.State, dict[str, list[str]]]:
        """Warm start from another run's weights (same model family; optimizer state fresh)."""
        return transfer.load_into(params, rest, source, transfer.identity_path_map,
                                  require="video_",
                                  pos_interpolation=self.config.model.get("pos_interpolation",
                                                                          "linear"))

    def evaluators(self) -> list[Any]:
        """The built-in synthetic zero-shot evaluator plus those of `config.evals` (cached so
        their compiled functions are reused across evaluations)."""
        if self._evaluators is None:
            builtin = ([SyntheticZeroShotEvaluator(self.world, self.config.eval)]
                       if self.synthetic else [])
            self._evaluators = builtin + build_evaluators(self.config)
            check_unique_prefixes(self._evaluators)
        return self._evaluators
