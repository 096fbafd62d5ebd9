"""Contrastive pretraining: NCE between video and audio, MIL-NCE between video and text."""

from __future__ import annotations

from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from vatt import losses
from vatt.data import synthetic
from vatt.evaluation.zeroshot import SyntheticZeroShotEvaluator


def world_spec(data_cfg: ml_collections.ConfigDict) -> synthetic.WorldSpec:
    return synthetic.WorldSpec(
        num_frames=data_cfg.num_frames, frame_size=data_cfg.frame_size, fps=data_cfg.fps,
        audio_rate=data_cfg.audio_rate, max_words=data_cfg.max_words,
        num_captions=data_cfg.num_captions, no_text_fraction=data_cfg.no_text_fraction)


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


def contrastive_loss(out: dict[str, dict[str, jax.Array]], text_mask: jax.Array,
                     cfg: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """VATT's objective from the model outputs.

    out: model outputs (SPEC: out["video"]["va"] [B,Dva], out["audio"]["va"] [B,Dva],
      out["video"]["vt"] [B,Dvt], out["text"]["vt"] [B,K,Dvt]).
    text_mask: [B, K], 1 for a real candidate caption; clips without any caption
      (AudioSet-style) add no MIL-NCE term and count in NCE; as in the official code
      their videos remain negatives for other clips' captions.

    Returns (total loss, metrics). Total = (w_va*L_va + w_vt*L_vt)/(w_va + w_vt)
    (official code, `combine="mean"`) or the paper's plain weighted sum (`"sum"`).
    """
    loss_va = losses.nce(out["video"]["va"], out["audio"]["va"], temperature=cfg.temperature)
    loss_vt = losses.mil_nce(out["video"]["vt"], out["text"]["vt"], temperature=cfg.temperature,
                             text_mask=text_mask, variant=cfg.mil_nce_variant)
    weighted = cfg.va_weight * loss_va + cfg.vt_weight * loss_vt
    total = weighted / (cfg.va_weight + cfg.vt_weight) if cfg.combine == "mean" else weighted
    return total, {"train/loss_va": loss_va, "train/loss_vt": loss_vt}


class PretrainTask:
    """Supplies model, data, loss and evaluators for contrastive pretraining."""

    trainable = nnx.Param

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.world = synthetic.SyntheticWorld(world_spec(config.data), config.seed)

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        from vatt.models import build_model
        return build_model(self.config.model, rngs=rngs)

    def train_stream(self, start_step: int, process_index: int, process_count: int):
        return SyntheticTrainStream(self.world, self.config.batch_size, start_step,
                                    process_index, process_count)

    def loss_fn(self, model: nnx.Module, batch: dict[str, jax.Array], rngs: nnx.Rngs
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        out = model(video=batch["video"], audio=batch["audio"], text=batch["text"],
                    training=True, rngs=rngs)
        return contrastive_loss(out, batch["text_mask"], self.config.loss)

    def load_pretrained(self, params: nnx.State, rest: nnx.State) -> tuple[nnx.State, nnx.State]:
        return params, rest

    def evaluators(self) -> list[Any]:
        return [SyntheticZeroShotEvaluator(self.world, self.config.eval)]
