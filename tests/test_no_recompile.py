"""The train step never waits for the host and compiles once: the loop's jitted step run for
several steps on prefetched batches (state donated), and a short train_and_evaluate run, each
compile jit(train_step) exactly once (jax_log_compiles records every XLA compilation)."""

import contextlib
import logging
import time

import jax
import numpy as np
import pytest

from vatt.bench.step import load_config
from vatt.tasks import get_task
from vatt.train import loop, partitioning
from vatt.train.optimizer import build_optimizer


def small_tiny(batch_size: int, total_steps: int):
    config = load_config("tiny")
    config.batch_size = batch_size
    config.total_steps = total_steps
    config.log_every_steps = 1
    config.checkpoint_every_steps = 0
    config.optimizer.warmup_steps = 1
    config.eval.num_clips = 16
    config.eval.batch_size = 8
    for m in ("video", "audio", "text"):
        config.model[m].num_layers = 1
    return config


class _Compiles(logging.Handler):
    """Counts XLA compilations of functions named `name` (one per backend compile; a lowering
    served from jax's caches does not count)."""

    def __init__(self, name: str):
        super().__init__(logging.DEBUG)
        self.marker = f"Finished XLA compilation of jit({name})"
        self.count = 0

    def emit(self, record):  # Handler.handle already holds the handler's lock here
        if self.marker in record.getMessage():
            self.count += 1


@contextlib.contextmanager
def count_compiles(name: str = "train_step"):
    handler = _Compiles(name)
    logger = logging.getLogger("jax")
    previous = jax.config.jax_log_compiles
    logger.addHandler(handler)
    jax.config.update("jax_log_compiles", True)
    try:
        yield handler
    finally:
        jax.config.update("jax_log_compiles", previous)
        logger.removeHandler(handler)


class CountingStream:
    """Wraps the task's stream, counting the host batches the prefetcher has pulled."""

    def __init__(self, stream):
        self.stream, self.pulled = stream, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.stream)
        self.pulled += 1
        return batch

    def get_state(self):
        return self.stream.get_state()


def test_jitted_step_compiles_once_prefetches_and_donates():
    config = small_tiny(batch_size=8, total_steps=10)
    mesh = partitioning.make_mesh(-1)
    with jax.set_mesh(mesh):
        task = get_task(config)
        tx, schedule = build_optimizer(config.optimizer, config.total_steps)
        graphdef, state, state_sharding = loop.create_train_state(task, tx, mesh, config.seed)
        # As the loop jits it (vatt/train/loop.py::_train).
        step_fn = jax.jit(
            loop.make_train_step(graphdef, task.loss_fn, tx, schedule, skip_nonfinite=True,
                                 trainable=task.trainable),
            in_shardings=(state_sharding, partitioning.batch_sharding(mesh)),
            out_shardings=(state_sharding, partitioning.replicated(mesh)),
            donate_argnums=0)
        stream = CountingStream(task.train_stream(0, 0, 1))
        batches = loop._prefetch(stream, mesh)
        losses = []
        with count_compiles() as compiles:
            for step in range(4):
                batch, _ = next(batches)
                if step == 0:
                    # The prefetcher runs ahead of the consumer: more batches are rendered
                    # and on the devices before the step asks for them.
                    deadline = time.time() + 30
                    while stream.pulled < 2 and time.time() < deadline:
                        time.sleep(0.05)
                    assert stream.pulled >= 2
                assert all(isinstance(v, jax.Array) for v in batch.values())
                assert batch["video"].sharding.is_equivalent_to(
                    partitioning.batch_sharding(mesh), batch["video"].ndim)
                old_leaf = jax.tree.leaves(state.params)[0]
                state, metrics = step_fn(state, batch)
                assert old_leaf.is_deleted()  # the state was donated to the step
                losses.append(metrics["train/loss"])
        assert compiles.count == 1
        assert step_fn._cache_size() == 1
        assert int(state.step) == 4
        assert np.all(np.isfinite(jax.device_get(losses)))


def test_train_and_evaluate_compiles_train_step_once(tmp_path):
    # A batch size of its own, so no jax cache from the test above can serve this one.
    config = small_tiny(batch_size=4, total_steps=5)
    with count_compiles() as compiles:
        metrics = loop.train_and_evaluate(config, str(tmp_path))
    assert compiles.count == 1
    assert metrics  # the final evaluation ran
