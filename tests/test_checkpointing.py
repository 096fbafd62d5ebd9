"""Checkpoints: SIGKILL/restart is bit-identical, SIGTERM and SIGINT (Ctrl-C) save and exit 0,
damaged checkpoints are skipped, NaN updates are skipped or stop the run, checkpoints load across
device counts.

Every run is pretrain:tiny,runlocal for 20 steps (or a few steps with a NaN injected), so the
programs are shared through the compilation cache. Runs without a signal run in this process;
signals and 8 devices need a subprocess.
"""

import contextlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import helpers
from helpers import saved_steps
from conftest import BASE_OVERRIDES, SAVING, STEPS, TINY_LR, TRAINED_SPEC, only_checkpoint
from subprocess_utils import REPO_ROOT, child_env

SPEC = TRAINED_SPEC
# The 20-step program of tests/test_train.py (shared through the compilation cache); SAVING
# keeps every checkpoint of a 20-step run (3, 6, ..., 18, 20), so runs can resume from any.
BASE = BASE_OVERRIDES


def run_here(workdir, overrides):
    """experiment.run in this process; returns (console output, metrics)."""
    from vatt import config_files, experiment
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics = experiment.run(config_files.load(SPEC, overrides), str(workdir), plots=False,
                                 tensorboard=False)
    return out.getvalue(), metrics


def cli(workdir, overrides):
    return [sys.executable, "-m", "vatt.main", f"--config={SPEC}", f"--workdir={workdir}",
            *(f"--config.{k}={v}" for k, v in overrides.items())]


def popen(workdir, overrides):
    return subprocess.Popen(cli(workdir, overrides), env=child_env(1), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def state_leaves(workdir, step):
    """Every leaf of the saved TrainState (step, params, rest, optimizer state, rng, skip count)."""
    import jax
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(os.path.join(workdir, "checkpoints", str(step), "state"))
    return jax.tree_util.tree_flatten_with_path(restored)[0]


@pytest.fixture(scope="module")
def reference(one_device_runs):
    """The session's uninterrupted 1-device run (conftest.one_device_runs, SAVING): checkpoints
    at 3, 6, ..., 18, 20."""
    workdir = one_device_runs["default"]
    assert saved_steps(workdir) == [3, 6, 9, 12, 15, 18, 20]
    return workdir


def test_sigkill_restarts_are_bit_identical(reference, tmp_path):
    rng = random.Random(1234)
    kills = 0
    while True:
        proc = popen(tmp_path, SAVING)
        if kills < 2:
            # Kill at a random moment once training is under way (a step line was printed).
            target = rng.randint(1, 4)
            if helpers.sigkill_at_step_line(proc, target, rng.uniform(0.0, 0.5)):
                kills += 1
                continue
        output = proc.communicate()[0]
        assert proc.returncode == 0, output[-4000:]
        if os.path.exists(tmp_path / "checkpoints" / str(STEPS)):
            break
    assert kills >= 1
    expected, got = helpers.train_values(str(reference)), helpers.train_values(str(tmp_path))
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    for step in expected:
        assert got[step] == expected[step], (step, got[step], expected[step])  # bit-identical
    ref_leaves, got_leaves = state_leaves(reference, STEPS), state_leaves(tmp_path, STEPS)
    assert [p for p, _ in got_leaves] == [p for p, _ in ref_leaves]
    for (path, a), (_, b) in zip(ref_leaves, got_leaves):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


def _preempt(workdir, sig, at_line):
    """Runs the CLI, sends `sig` when it prints a line starting with `at_line`; returns
    (exit status, output, first step line)."""
    proc = popen(workdir, BASE)
    lines, first_step = [], None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step ") and first_step is None:
            first_step = line
        if line.startswith(at_line):
            proc.send_signal(sig)
            break
    output = "".join(lines) + proc.communicate(timeout=300)[0]
    return proc.returncode, output, first_step


def test_sigterm_and_sigint_save_and_exit_cleanly(reference, tmp_path):
    """SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C) each save a checkpoint at the
    end of the current step and exit 0; the same command then continues from there, with the
    numbers of an uninterrupted run."""
    code, output, _ = _preempt(tmp_path, signal.SIGTERM, "step      3/")
    assert code == 0, output[-3000:]
    assert "Received SIGTERM" in output and "Preempted at step" in output
    saved = saved_steps(tmp_path)  # checkpoint_every_steps=0: only the preemption saves
    assert len(saved) == 1 and 3 <= saved[0] < STEPS
    assert f"Preempted at step {saved[0]}: checkpoint saved" in output
    # The scheduler restarts the job (the same command); Ctrl-C stops it again.
    code, output, first_step = _preempt(tmp_path, signal.SIGINT, "step ")
    assert code == 0, output[-3000:]
    assert f"Resuming from the checkpoint at step {saved[0]}" in output
    assert first_step.startswith(f"step {saved[0] + 1:>6d}/{STEPS} |")
    assert "Received SIGINT" in output and "Traceback" not in output
    resaved = saved_steps(tmp_path)
    assert len(resaved) == 2 and resaved[0] == saved[0] < resaved[1] < STEPS
    assert f"Preempted at step {resaved[1]}: checkpoint saved" in output
    got, expected = helpers.train_values(str(tmp_path)), helpers.train_values(str(reference))
    assert set(range(1, resaved[1] + 1)) <= set(got)
    for step in range(1, resaved[1] + 1):
        assert got[step] == expected[step], step  # bit-identical across the preemptions
    # config.plots=False (BASE): not even the training curves a run draws when it closes.
    assert not (tmp_path / "plots").exists()


def test_second_ctrl_c_stops_at_once():
    """The first SIGINT asks for a checkpoint at the end of the step; a second one raises
    KeyboardInterrupt at once. The previous handlers come back afterwards."""
    import threading
    from vatt.train.checkpointing import PreemptionGuard
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed from the main thread")

    def deliver(sig):
        assert signal.getsignal(sig) == guard._handle  # never signal an unguarded process
        os.kill(os.getpid(), sig)
        time.sleep(0.05)  # the handler runs in the main thread at the next bytecode

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    guard = PreemptionGuard()
    try:
        assert not guard.requested()
        deliver(signal.SIGTERM)
        assert guard.requested()
        deliver(signal.SIGTERM)  # a repeated SIGTERM only asks again
        with pytest.raises(KeyboardInterrupt):
            deliver(signal.SIGINT)
    finally:
        guard.restore_handlers()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == previous
    guard = PreemptionGuard()
    try:
        deliver(signal.SIGINT)
        assert guard.requested()
        with pytest.raises(KeyboardInterrupt):
            deliver(signal.SIGINT)
    finally:
        guard.restore_handlers()


def test_damaged_latest_checkpoint_is_skipped(reference, tmp_path):
    shutil.copytree(os.path.join(reference, "checkpoints"), tmp_path / "checkpoints")
    # Damage every data file of the latest checkpoint.
    latest = tmp_path / "checkpoints" / str(STEPS)
    damaged = 0
    for root, _, files in os.walk(latest):
        for name in files:
            path = os.path.join(root, name)
            if os.path.getsize(path) > 0:
                with open(path, "r+b") as f:
                    f.truncate(max(os.path.getsize(path) // 3, 1))
                damaged += 1
    assert damaged
    stdout, _ = run_here(tmp_path, SAVING)
    assert f"Checkpoint at step {STEPS}" in stdout and "skipping it" in stdout
    assert "Resuming from the checkpoint at step 18" in stdout
    # It re-ran steps 19 and 20 (no metrics were copied: these are the new run's) and got the
    # same numbers as the reference.
    got, expected = helpers.train_values(str(tmp_path)), helpers.train_values(str(reference))
    assert sorted(got) == [19, 20]
    for step in (19, 20):
        assert got[step] == expected[step]


def test_nan_update_is_skipped_and_counted(tmp_path):
    from vatt.train.checkpointing import load_model_tree
    run_here(tmp_path, dict(BASE, **{"total_steps": 6, "debug_nan_at_step": 3,
                                     "checkpoint_every_steps": 2}))
    by_step = {r["step"]: r for r in helpers.records(str(tmp_path)) if "train/loss" in r}
    assert sorted(by_step) == [1, 2, 3, 4, 5, 6]
    assert by_step[3]["train/loss"] == "nan"
    assert by_step[2]["train/nonfinite_steps"] == 0
    assert all(by_step[s]["train/nonfinite_steps"] == 1 for s in (3, 4, 5, 6))
    assert all(np.isfinite(by_step[s]["train/loss"]) for s in (1, 2, 4, 5, 6))
    assert saved_steps(tmp_path) == [2, 4, 6]
    params = load_model_tree(str(tmp_path))  # the newest checkpoint: step 6
    assert params and all(np.all(np.isfinite(p)) for p in params.values())


def test_nan_with_stop_keeps_last_good_checkpoint(tmp_path):
    from vatt.train.loop import NonFiniteError
    with pytest.raises(NonFiniteError) as err:
        run_here(tmp_path, dict(BASE, **{"total_steps": 8, "debug_nan_at_step": 5,
                                         "nonfinite": "stop", "checkpoint_every_steps": 2,
                                         "log_every_steps": 2}))
    message = str(err.value)
    assert "non-finite loss or gradient by step 6" in message
    assert os.path.join(str(tmp_path), "checkpoints") in message
    assert "config.nonfinite=skip" in message
    assert saved_steps(tmp_path) == [2, 4]
    # Nothing after the bad step was logged and no evaluation ran.
    records = helpers.records(str(tmp_path))
    assert max(r["step"] for r in records) <= 4
    assert not helpers.final_metrics(str(tmp_path))


def test_non_finite_state_is_never_saved_and_never_resumed(tmp_path, capsys):
    """Checkpointer.save refuses a state holding a NaN (the last good checkpoint stays the
    newest), and restore_latest passes over a checkpoint holding one (written behind its back)."""
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from vatt.train.checkpointing import Checkpointer

    good = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(1)}
    bad = {"w": good["w"].at[1, 2].set(jnp.inf), "step": jnp.int32(2)}
    checkpointer = Checkpointer(str(tmp_path), every_steps=1, max_to_keep=5)
    assert checkpointer.save(1, good, {"position": 1})
    assert not checkpointer.save(2, bad, {"position": 2})
    checkpointer.manager.save(3, args=ocp.args.Composite(  # what another tool could leave
        state=ocp.args.PyTreeSave(dict(bad, w=bad["w"].at[0, 0].set(jnp.nan))),
        data=ocp.args.JsonSave({"position": 3})))
    checkpointer.close()
    assert saved_steps(tmp_path) == [1, 3]
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            good)
    state, data_state, step = Checkpointer(str(tmp_path)).restore_latest(abstract)
    assert (step, data_state) == (1, {"position": 1})
    np.testing.assert_array_equal(state["w"], good["w"])
    out = capsys.readouterr().out
    assert "Not saving step 2: the state holds non-finite values" in out
    assert "Checkpoint at step 3 holds non-finite values; skipping it." in out


def test_finiteness_check_reads_every_shard_on_four_devices():
    # A non-finite value in any one shard of a sharded leaf, or in a replicated leaf, is found.
    assert helpers.run_python("""
        import json
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from vatt.train.checkpointing import _all_finite
        mesh = jax.make_mesh((4,), ("data",))
        def put(x, spec):
            return jax.device_put(x, NamedSharding(mesh, spec))
        sharded = np.arange(8.0).reshape(8, 1)
        finite = {"a": put(sharded, P("data")), "b": put(np.ones(3), P()), "k": put(np.arange(4), P())}
        out = [_all_finite(finite)]
        for row in range(8):  # rows 2k, 2k+1 live on device k
            x = sharded.copy(); x[row, 0] = np.nan
            out.append(_all_finite(dict(finite, a=put(x, P("data")))))
        out.append(_all_finite(dict(finite, b=put(np.array([1.0, -np.inf, 0.0]), P()))))
        print("RESULT:" + json.dumps([jax.device_count()] + out))
        """, num_devices=4) == [4, True] + [False] * 9


@pytest.fixture(scope="module")
def resumed_on_8(eight_device_runs):
    """(workdir, console output) of the 8-device run resuming the 1-device tiny-rate run's
    checkpoint at step 3 (conftest.eight_device_runs["resumed_tiny_lr"]); it saves its own
    checkpoints at 6, 9, ..., 18, 20."""
    workdir = eight_device_runs["resumed_tiny_lr"]
    with open(os.path.join(workdir, "console.txt"), encoding="utf-8") as f:
        return workdir, f.read()


@pytest.mark.parametrize("save_devices, load_devices", [(1, 8), (8, 1)])
def test_resume_across_device_counts(one_device_runs, resumed_on_8, tmp_path, save_devices,
                                     load_devices):
    # At the tiny rate (conftest.TINY_LR), where the layouts' rounding cannot grow.
    expected = helpers.train_values(one_device_runs["tiny_lr"])
    if load_devices == 8:  # the tiny-rate run's checkpoint at step 3, saved on 1 device
        (workdir, stdout), first = resumed_on_8, 4
        assert "on 8 devices" in stdout
        assert saved_steps(workdir) == [3, 6, 9, 12, 15, 18, 20]
    else:  # the 8-device run's checkpoint at step 6, resumed here on 1 device
        workdir, first = only_checkpoint(resumed_on_8[0], 6, str(tmp_path / "w")), 7
        stdout, _ = run_here(workdir, dict(SAVING, **TINY_LR))
        assert "on 1 devices" in stdout
    assert f"Resuming from the checkpoint at step {first - 1}" in stdout
    got = helpers.train_values(workdir)
    # Only the steps after the checkpoint ran (the new workdir held nothing else). Another
    # device count sums in another order: equal up to float rounding (rtol 1e-4).
    assert sorted(got) == list(range(first, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in range(first, STEPS + 1)],
                               [expected[s] for s in range(first, STEPS + 1)], rtol=1e-4)
