"""Optimizers and learning-rate schedules from `config.optimizer`."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `learning_rate`, then cosine decay to `end_learning_rate`.

    VATT: warmup to 1e-4, cosine to 5e-5 over 500k steps.
    """
    warmup = int(cfg.warmup_steps)
    decay_steps = max(total_steps - warmup, 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=warmup,
        decay_steps=warmup + decay_steps, end_value=cfg.end_learning_rate)


OPTIMIZERS = ("adam", "adamw", "sgd")


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns (optimizer, schedule). `cfg.name`: adam | adamw | sgd (momentum)."""
    schedule = learning_rate_schedule(cfg, total_steps)
    if cfg.name == "adam":
        tx = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "adamw":
        tx = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                         weight_decay=cfg.weight_decay)
    elif cfg.name == "sgd":
        tx = optax.sgd(schedule, momentum=cfg.momentum, nesterov=cfg.nesterov)
    else:
        raise ValueError(f"optimizer.name={cfg.name!r}: use one of {OPTIMIZERS}")
    if cfg.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
    return tx, schedule
