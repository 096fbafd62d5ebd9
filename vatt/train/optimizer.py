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
# optimizer.grad_clip_scope: which gradients grad_clip_norm clips by their global norm.
GRAD_CLIP_SCOPES = ("all", "backbone")


def _top_name(path: tuple) -> str:
    key = path[0] if path else None
    return str(getattr(key, "key", getattr(key, "name", key)))


def clip_by_global_norm_of(max_norm: float, top_level: str) -> optax.GradientTransformation:
    """optax.clip_by_global_norm restricted to the gradients under the top-level name
    `top_level` (their norm, their scaling); every other gradient passes unchanged. The official
    fine-tuning clips the backbone's gradients and leaves the classifier's alone."""
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        flat = jax.tree_util.tree_flatten_with_path(updates)[0]
        chosen = [g for path, g in flat if _top_name(path) == top_level]
        if not chosen:
            return updates, state
        norm = optax.global_norm(chosen)
        # Same arithmetic as optax.clip_by_global_norm.
        trigger = jnp.squeeze(norm < max_norm)

        def clip(path, g):
            if _top_name(path) != top_level:
                return g
            return jax.lax.select(trigger, g, (g / norm.astype(g.dtype)) * max_norm)
        return jax.tree_util.tree_map_with_path(clip, updates), state
    return optax.GradientTransformation(init_fn, update_fn)


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int
                    ) -> tuple[optax.GradientTransformation, Schedule]:
    """Returns (update direction, schedule). `cfg.name`: adam | adamw | sgd (momentum).

    The direction is optax's adam / adamw / sgd without their final learning-rate scaling
    (the train step multiplies by -learning_rate(schedule, step)); gradient clipping, when set,
    comes first as in optax.chain(clip_by_global_norm, adam(...)); `cfg.grad_clip_scope`
    "backbone" clips only the gradients under "backbone" (a Classifier's backbone, as the
    official fine-tuning does), "all" (default) every gradient.
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
        scope = cfg.get("grad_clip_scope", "all")
        if scope == "all":
            tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
        elif scope == "backbone":
            tx = optax.chain(clip_by_global_norm_of(cfg.grad_clip_norm, "backbone"), tx)
        else:
            raise ValueError(f"optimizer.grad_clip_scope={scope!r}: use one of "
                             f"{GRAD_CLIP_SCOPES}")
    return tx, schedule_from_config(cfg, total_steps)
