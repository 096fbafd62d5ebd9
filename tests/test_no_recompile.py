"""The train step never waits for the host and compiles once: the loop's own jitted step
(vatt.train.step.jit_train_step, compiled by compile_with_memory_check, fed by the Prefetcher,
state donated) run for several steps, and a whole experiment.run, each compile jit(train_step)
exactly once (jax_log_compiles records every XLA compilation). The prefetch thread ends with the
loop, and with a Prefetcher closed mid-stream."""

import contextlib
import logging
import threading
import time
import types

import jax
import numpy as np
import pytest

import helpers
from vatt import config_files
from vatt.parallel.mesh import batch_sharding, make_mesh
from vatt.tasks import build_task
from vatt.train.optimizer import build_optimizer
from vatt.train.prefetch import Prefetcher
from vatt.train.state import create_train_state
from vatt.train.step import (NOT_IN_STEP, clear_step_cache, compile_with_memory_check,
                             jit_train_step, step_controls)

SPEC = "pretrain:tiny,runlocal"
# The 20-step program of tests/test_train.py and tests/test_checkpointing.py (shared through
# the compilation cache); a loss per step.
OVERRIDES = {"total_steps": 20, "log_every_steps": 1, "eval.plots": False,
             "optimizer.warmup_steps": 2}
MANUAL_STEPS = 4


class _Compiles(logging.Handler):
    """Counts XLA compilations of functions named `name` (one per compile request of a new
    lowering, whether XLA compiles it or the persistent cache serves it)."""

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


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "vatt-prefetch" and t.is_alive()]


class CountingStream:
    """Wraps a data stream, counting the host batches the prefetcher has pulled."""

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


@pytest.fixture(scope="module")
def manual_steps():
    """MANUAL_STEPS steps exactly as vatt.train.loop._train runs them; records what the
    test checks."""
    config = config_files.load(SPEC, OVERRIDES)
    mesh = make_mesh(config.mesh.data)
    seen = {"pulled_ahead": 0, "global_arrays": True, "batch_sharded": True, "donated": True,
            "data_states": [], "losses": []}
    clear_step_cache()  # a step kept from an earlier test would compile nothing here
    with jax.set_mesh(mesh):
        task = build_task(config)
        tx, schedule = build_optimizer(config.optimizer, config.total_steps)
        graphdef, state, state_sharding = create_train_state(task, tx, mesh, config.seed)
        step_fn = jit_train_step(config, task, graphdef, tx, state_sharding, mesh)
        controls = step_controls(config, schedule, mesh)
        stream = CountingStream(task.train_stream(0, 0, 1))
        with count_compiles() as compiles, Prefetcher(stream, mesh) as batches:
            compiled = None
            for step in range(MANUAL_STEPS):
                batch, data_state = next(batches)
                if step == 0:
                    # The prefetcher runs ahead of the consumer: more batches are rendered
                    # and on the devices before the step asks for them.
                    deadline = time.time() + 30
                    while stream.pulled < 2 and time.time() < deadline:
                        time.sleep(0.05)
                    seen["pulled_ahead"] = stream.pulled
                seen["data_states"].append(data_state)
                seen["global_arrays"] &= all(isinstance(v, jax.Array) for v in batch.values())
                seen["batch_sharded"] &= batch["video"].sharding.is_equivalent_to(
                    batch_sharding(mesh), batch["video"].ndim)
                if compiled is None:
                    compiled = compile_with_memory_check(step_fn, state, batch, controls,
                                                         verbose=False)
                old_leaf = jax.tree.leaves(state.params)[0]
                state, metrics = compiled(state, batch, controls)
                seen["donated"] &= old_leaf.is_deleted()  # the state was donated to the step
                seen["losses"].append(metrics["train/loss"])
        seen["prefetcher_alive_after_close"] = batches.alive
    seen["compiles"] = compiles.count
    seen["step"] = int(state.step)
    seen["losses"] = [float(x) for x in jax.device_get(seen["losses"])]
    return seen


def test_loop_step_compiles_once_prefetches_and_donates(manual_steps):
    s = manual_steps
    assert s["compiles"] == 1
    assert s["pulled_ahead"] >= 2
    assert s["global_arrays"] and s["batch_sharded"] and s["donated"]
    assert s["step"] == MANUAL_STEPS
    # Each batch comes with the stream position after it (what a checkpoint records).
    assert s["data_states"] == [{"step": i} for i in range(1, MANUAL_STEPS + 1)]
    assert np.all(np.isfinite(s["losses"]))
    assert not s["prefetcher_alive_after_close"]


def test_run_compiles_train_step_once_and_ends_its_prefetch_thread(manual_steps, tmp_path):
    from vatt import experiment
    clear_step_cache()  # manual_steps kept this very step
    with count_compiles() as compiles:
        metrics = experiment.run(config_files.load(SPEC, OVERRIDES), str(tmp_path / "run"),
                                 plots=False, tensorboard=False)
    assert compiles.count == 1
    assert metrics["zeroshot/num_clips"] == 64  # the final evaluation ran
    # Issue 13, item 6: the loop closes its prefetcher; no thread is left blocked on a put.
    assert not prefetch_threads(), prefetch_threads()
    # The steps the test ran by hand are the loop's: the same losses, bit for bit.
    losses = helpers.train_values(str(tmp_path / "run"))
    assert [losses[s] for s in range(1, MANUAL_STEPS + 1)] == manual_steps["losses"]
    # A second run in this process that differs only in keys the program does not depend on
    # (its length, its checkpoints) reuses the step: nothing traced or compiled, and its steps
    # are the first run's (steps 1-4 do not depend on the length: the rates of updates 0-2 are
    # the warmup's and, at cosine progress 0, the peak).
    again = dict(OVERRIDES, total_steps=4, checkpoint_every_steps=2)
    with count_compiles() as compiles:
        experiment.run(config_files.load(SPEC, again), str(tmp_path / "again"), plots=False,
                       tensorboard=False)
    assert compiles.count == 0
    repeated = helpers.train_values(str(tmp_path / "again"))
    assert repeated == {s: losses[s] for s in range(1, 5)}


def built(overrides: dict, abstract: bool, reuse: bool = True) -> types.SimpleNamespace:
    """SPEC with OVERRIDES and `overrides` as the loop sets it up: its mesh, initial state
    (abstract: ShapeDtypeStructs), jitted step (jit_train_step's `reuse`), step controls and a
    batch's shapes on the mesh."""
    config = config_files.load(SPEC, dict(OVERRIDES, **overrides))
    mesh = make_mesh(config.mesh.data)
    with jax.set_mesh(mesh):
        task = build_task(config)
        tx, schedule = build_optimizer(config.optimizer, config.total_steps)
        graphdef, state, sharding = create_train_state(task, tx, mesh, config.seed,
                                                       abstract=abstract)
        step = jit_train_step(config, task, graphdef, tx, sharding, mesh, reuse=reuse)
        host = next(task.train_stream(0, 0, 1))  # the batch's shapes and dtypes
    batch = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype,
                                     sharding=batch_sharding(mesh)) for k, v in host.items()}
    return types.SimpleNamespace(mesh=mesh, state=state, step=step, batch=batch,
                                 controls=step_controls(config, schedule, mesh))


def test_rate_length_and_fault_injection_do_not_change_the_program():
    """The schedule's numbers and the injected-NaN step are runtime arguments of the step, and
    what a non-finite step does next (skip or stop) is the loop's decision: runs that differ
    only in them lower to the same program text, so they share one compilation (and one
    persistent-cache entry). The model's options do change it."""
    def step_text(overrides):
        # A new function each time (reuse=False), so the programs are compared, not the step
        # cache's idea of which keys leave them unchanged.
        run = built(overrides, abstract=True, reuse=False)
        with jax.set_mesh(run.mesh):
            return run.step.lower(run.state, run.batch, run.controls).as_text()

    base = step_text({})
    # All at once: a change of program by any one of them would show.
    assert step_text({"total_steps": 300, "optimizer.warmup_steps": 20,
                      "optimizer.learning_rate": 1e-6, "optimizer.end_learning_rate": 1e-6,
                      "debug_nan_at_step": 3, "nonfinite": "stop"}) == base
    assert step_text({"loss.cka_weight": 1.0}) != base  # a control: the loss changes the program


def test_a_second_run_reuses_the_traced_initialisation_with_fresh_arrays():
    """create_train_state's reuse_key (the loop passes its config's digest): a second call of
    the same key, seed and layout builds no model and traces nothing, yet returns new arrays
    (the step donates them) with the same values; another seed is traced again."""
    from vatt.train.state import clear_init_cache
    from vatt.train.step import config_digest
    config = config_files.load(SPEC, OVERRIDES)
    mesh = make_mesh(config.mesh.data)
    builds = []
    with jax.set_mesh(mesh):
        task = build_task(config)
        build_model = task.build_model
        task.build_model = lambda rngs: builds.append(1) or build_model(rngs)
        tx, _ = build_optimizer(config.optimizer, config.total_steps)
        key = config_digest(config)
        clear_init_cache()
        first = create_train_state(task, tx, mesh, config.seed, reuse_key=key)
        again = create_train_state(task, tx, mesh, config.seed, reuse_key=key)
        target = create_train_state(task, tx, mesh, config.seed, abstract=True, reuse_key=key)
        assert len(builds) == 1
        other_seed = create_train_state(task, tx, mesh, config.seed + 1, reuse_key=key)
        assert len(builds) == 2
    assert again[0] is first[0] and target[0] is first[0]  # the graphdef
    for a, b, t in zip(jax.tree.leaves(first[1]), jax.tree.leaves(again[1]),
                       jax.tree.leaves(target[1])):
        assert a is not b and a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert (t.shape, t.dtype, t.sharding) == (a.shape, a.dtype, a.sharding)
    # Another seed, other initial weights: every randomly initialised leaf (not the constant
    # biases and LayerNorm scales) differs.
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in
             zip(jax.tree.leaves(first[1].params), jax.tree.leaves(other_seed[1].params))]
    random_leaves = [(a, b) for a, b in pairs if np.ptp(a) > 0]
    assert len(random_leaves) >= 30 and all(not np.array_equal(a, b) for a, b in random_leaves)
    # A digest is the config's but the keys the step does not read: the rate is one of them.
    assert config_digest(config_files.load(SPEC, dict(OVERRIDES, **{
        "optimizer.learning_rate": 1e-6}))) == key
    assert config_digest(config_files.load(SPEC, dict(OVERRIDES, **{
        "model.dropout_rate": 0.1}))) != key


@pytest.mark.parametrize("overrides", [{}, {"loss.learn_temperature": True}])
def test_a_resumed_run_runs_the_fresh_runs_program(overrides):
    """A resumed run calls the step with restored arrays (typed by the checkpoint's abstract
    target), a fresh one with initialised ones: both must lower to one program, or every resume
    compiles again. A parameter made from a Python float is weakly typed when initialised and
    strongly typed when restored: the learned temperature was (its programs differed by a
    convert), and under bfloat16 compute it would promote differently after a resume."""
    run = built(overrides, abstract=False)
    weak = [jax.tree_util.keystr(path) for path, leaf in
            jax.tree_util.tree_leaves_with_path(run.state) if leaf.weak_type]
    assert not weak, f"weakly typed leaves of the initial state: {weak}"
    restore_target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), run.state)
    with jax.set_mesh(run.mesh):
        fresh = run.step.lower(run.state, run.batch, run.controls).as_text()
        assert run.step.lower(restore_target, run.batch, run.controls).as_text() == fresh


class EndlessStream:
    """Host batches of 8 rows forever (or an error at batch `fail_at`, or the end at `end`)."""

    def __init__(self, fail_at=None, end=None):
        self.step, self.fail_at, self.end = 0, fail_at, end

    def __iter__(self):
        return self

    def __next__(self):
        if self.step == self.fail_at:
            raise ValueError(f"bad record at batch {self.step}")
        if self.step == self.end:
            raise StopIteration
        self.step += 1
        return {"x": np.full((8, 4), self.step, np.float32)}

    def get_state(self):
        return {"step": self.step}


def test_prefetcher_closed_mid_stream_ends_its_thread():
    mesh = make_mesh(-1)
    before = prefetch_threads()
    stream = EndlessStream()
    batches = Prefetcher(stream, mesh, size=2)
    batch, state = next(batches)
    assert float(batch["x"][0, 0]) == 1 and state == {"step": 1}
    deadline = time.time() + 30
    while stream.step < 3 and time.time() < deadline:  # the worker fills the queue and blocks
        time.sleep(0.01)
    assert stream.step >= 3 and batches.alive and len(prefetch_threads()) == len(before) + 1
    batches.close()
    assert not batches.alive
    assert prefetch_threads() == before
    pulled = stream.step
    time.sleep(0.2)
    assert stream.step == pulled  # nothing is read after close


def test_prefetcher_surfaces_errors_and_the_end_of_the_stream():
    mesh = make_mesh(-1)
    with Prefetcher(EndlessStream(fail_at=2), mesh) as batches:
        assert [float(next(batches)[0]["x"][0, 0]) for _ in range(2)] == [1, 2]
        with pytest.raises(ValueError, match="bad record at batch 2"):
            next(batches)
    assert not batches.alive
    with Prefetcher(EndlessStream(end=3), mesh) as batches:
        assert [s["step"] for _, s in batches] == [1, 2, 3]
    assert not batches.alive


def test_the_step_cache_keys_on_what_the_program_depends_on():
    """jit_train_step hands back the function it made for a config that differs only in
    NOT_IN_STEP, and a new one for any other difference (a loss or optimizer option, the mesh
    layout) or after clear_step_cache()."""
    def step_for(overrides, reuse=True):
        return built(overrides, abstract=True, reuse=reuse).step

    clear_step_cache()
    base = step_for({})
    assert step_for({"total_steps": 300, "optimizer.learning_rate": 1e-6, "seed": 3,
                     "nonfinite": "stop", "debug_nan_at_step": 2, "checkpoint_every_steps": 5,
                     "eval.num_clips": 32, "log_every_steps": 7}) is base
    for other in ({"loss.cka_weight": 1.0}, {"optimizer.b2": 0.99}, {"batch_size": 8},
                  {"mesh.fsdp": True}, {"model.video.droptoken_keep": 1.0}):
        assert step_for(other) is not base, other
    assert step_for({}, reuse=False) is not base
    clear_step_cache()
    assert step_for({}) is not base
    assert "total_steps" in NOT_IN_STEP and "loss" not in NOT_IN_STEP
