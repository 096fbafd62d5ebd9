"""Optimizers and the learning-rate schedule from `config.optimizer`.

The schedule's numbers (peak and final rate, warmup and decay steps) are a runtime input of the
train step, not constants of the compiled program: runs that differ only in learning rate or
length run the same executable, so the persistent compilation cache serves a 20-step test, a
300-step run and a tiny-learning-rate layout check from one compilation. The optimizer itself
(`build_optimizer`) is the update direction without the learning rate; the step scales it by
`-learning_rate(schedule, step)`, exactly what optax's own `scale_by_learning_rate` does last
in adam, adamw and sgd.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax


class Schedule(NamedTuple):
    """Linear warmup from 0 to `peak`, then cosine decay to `end` over `decay` steps.

    Leaves are float32 scalars (host numbers or replicated device arrays): an argument of the
    jitted step, so their values never change the compiled program.
    """
    peak: jax.Array
    end: jax.Array
    warmup: jax.Array
    decay: jax.Array


def schedule_from_config(cfg: ml_collections.ConfigDict, total_steps: int) -> Schedule:
    """VATT: warmup to 1e-4, cosine to 5e-5 over 500k steps."""
    warmup = int(cfg.warmup_steps)
    return Schedule(*(np.float32(v) for v in (cfg.learning_rate, cfg.end_learning_rate, warmup,
                                              max(int(total_steps) - warmup, 1))))


def learning_rate(schedule: Schedule, step: jax.Array) -> jax.Array:
    """The rate of the update made at `step` (0-based count of updates so far), traceable.

    Matches optax.warmup_cosine_decay_schedule(0, peak, warmup, warmup + decay, end).
    """
    step = jnp.asarray(step, jnp.float32)
    warm = schedule.peak * step / jnp.maximum(schedule.warmup, 1.0)
    progress = jnp.clip(step - schedule.warmup, 0.0, schedule.decay) / schedule.decay
    cosine = schedule.end + (schedule.peak - schedule.end) * 0.5 * (1 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < schedule.warmup, warm, cosine)


OPTIMIZERS = ("adam", "adamw", "sgd")


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int
                    ) -> tuple[optax.GradientTransformation, Schedule]:
    """Returns (update direction, schedule). `cfg.name`: adam | adamw | sgd (momentum).

    The direction is optax's adam / adamw / sgd without their final learning-rate scaling
    (the train step multiplies by -learning_rate(schedule, step)); gradient clipping, when set,
    comes first as in optax.chain(clip_by_global_norm, adam(...)).
    """
    if cfg.name == "adam":
        tx = optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "adamw":
        tx = optax.chain(optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
                         optax.add_decayed_weights(cfg.weight_decay))
    elif cfg.name == "sgd":
        tx = optax.trace(decay=cfg.momentum, nesterov=cfg.nesterov)
    else:
        raise ValueError(f"optimizer.name={cfg.name!r}: use one of {OPTIMIZERS}")
    if cfg.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
    return tx, schedule_from_config(cfg, total_steps)
