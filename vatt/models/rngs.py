"""The random streams a model is built with: nnx.Rngs whose keys are flax's, drawn without
flax's per-draw cost under a trace.

Why: every draw of an nnx.RngStream advances its counter with `count[...] += 1`. Flax 0.12's
Variable.__setitem__ then compares `getattr(value, "sharding", None)` of the new and the old
counter; under jit / eval_shape both are tracers, whose `.sharding` raises an AttributeError
whose message JAX builds by walking every equation traced so far (and printing some). A model
build draws once per parameter, so tracing it grew with (parameters x equations): measured on
this 2-core VM, tracing create_train_state for pretrain:bbs took 5.9 s of CPU, 0.9 s with the
streams below (the model build alone 3.0 -> 0.6 s; the tiny model's 0.25 -> 0.1 s). Every run
start, restore target, summary and conversion traces a build.

The streams below are flax's RngStream with only the counter update written as a whole-value
set (`set_value`, which skips that comparison). The keys are the same: fold_in(key, count) with
the count starting at 0, so a seed initialises exactly the parameters it did with nnx.Rngs
(tests/test_models.py checks both, and that the build no longer walks the trace). Needs
flax >= 0.12.1 (Variable.get_value / set_value; setup.py says so).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx


class _Stream(nnx.RngStream):
    """nnx.RngStream with the counter advanced by a whole-value set (see the module docstring);
    split() and fork() return streams of this class too (flax builds them with type(self))."""

    def __call__(self) -> jax.Array:
        self.count._check_can_update()  # flax's own guard: a counter frozen by a transform
        count = self.count.get_value()
        key = jax.random.fold_in(self.key.get_value(), count)
        self.count.set_value(count + 1)
        return key


def init_rngs(default: Any = None, **seeds: Any) -> nnx.Rngs:
    """nnx.Rngs(default, **seeds) (ints or keys per stream name) with streams that draw the same
    keys without the per-draw cost under a trace. Use it to build models."""
    rngs = nnx.Rngs(default, **seeds)
    for tag, stream in list(vars(rngs).items()):
        if isinstance(stream, nnx.RngStream):
            setattr(rngs, tag, _Stream(stream.key.get_value(), tag=tag))
    return rngs
