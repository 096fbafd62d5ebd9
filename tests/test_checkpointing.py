"""Checkpoints: SIGKILL/restart is bit-identical, SIGTERM saves and exits, damaged checkpoints
are skipped, NaN updates are skipped or stop the run, checkpoints load across device counts."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from subprocess_utils import REPO_ROOT, child_env

# A small, fast variant of the tiny config: the mechanics are what is tested here.
SMALL = ["--config.batch_size=8", "--config.log_every_steps=1", "--config.eval.num_clips=16",
         "--config.eval.batch_size=8", "--config.optimizer.warmup_steps=2",
         "--config.model.video.num_layers=1", "--config.model.audio.num_layers=1",
         "--config.model.text.num_layers=1"]


def _env(num_devices, cache_dir):
    # The persistent compilation cache makes every restart after the first skip compilation.
    return child_env(num_devices, {"JAX_COMPILATION_CACHE_DIR": str(cache_dir),
                                   "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                                   "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})


def _cmd(workdir, steps, extra=()):
    return [sys.executable, "-m", "vatt.main", "--config=configs/pretrain.py:tiny",
            f"--workdir={workdir}", f"--config.total_steps={steps}", *SMALL, *extra]


def run(workdir, steps, cache_dir, num_devices=1, extra=(), check=True):
    proc = subprocess.run(_cmd(workdir, steps, extra), env=_env(num_devices, cache_dir),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def losses(workdir):
    """train/loss per step; the last entry for a step wins (a step re-run after a restart)."""
    out = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "train/loss" in record:
            out[record["step"]] = record["train/loss"]
    return out


def final_params(workdir, step):
    import orbax.checkpoint as ocp
    path = workdir / "checkpoints" / str(step) / "state"
    restored = ocp.StandardCheckpointer().restore(str(path))
    import jax
    return [np.asarray(x) for x in jax.tree.leaves(restored["params"])]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    workdir = tmp_path_factory.mktemp("reference")
    run(workdir, 12, cache_dir, extra=["--config.checkpoint_every_steps=3"])
    return workdir


def test_sigkill_restarts_are_bit_identical(reference, cache_dir, tmp_path):
    rng = random.Random(1234)
    kills = 0
    while True:
        proc = subprocess.Popen(_cmd(tmp_path, 12, ["--config.checkpoint_every_steps=3"]),
                                env=_env(1, cache_dir), cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if kills < 3:
            # Kill at a random moment once training is under way (a step line was printed).
            target = rng.randint(1, 4)
            seen = 0
            for line in proc.stdout:
                if line.startswith("step "):
                    seen += 1
                    if seen >= target:
                        time.sleep(rng.uniform(0.0, 0.5))
                        proc.send_signal(signal.SIGKILL)
                        break
            proc.wait()
            if proc.returncode == -signal.SIGKILL:
                kills += 1
                continue
        output = proc.communicate()[0] if proc.stdout else ""
        assert proc.wait() == 0, output[-4000:]
        if os.path.exists(tmp_path / "checkpoints" / "12"):
            break
    assert kills >= 1
    expected, got = losses(reference), losses(tmp_path)
    assert sorted(got) == sorted(expected) == list(range(1, 13))
    for step in expected:
        assert got[step] == expected[step], (step, got[step], expected[step])  # bit-identical
    for a, b in zip(final_params(reference, 12), final_params(tmp_path, 12)):
        np.testing.assert_array_equal(a, b)


def test_sigterm_saves_and_exits_cleanly(cache_dir, tmp_path):
    proc = subprocess.Popen(_cmd(tmp_path, 200, ["--config.checkpoint_every_steps=1000"]),
                            env=_env(1, cache_dir), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("step      3/"):
            proc.send_signal(signal.SIGTERM)
            break
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output[-3000:]
    assert "Received SIGTERM" in output and "Preempted at step" in output
    saved = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
    assert len(saved) == 1 and 3 <= saved[0] < 200
    # The scheduler restarts the job: it continues from there.
    resumed = run(tmp_path, saved[0] + 2, cache_dir)
    assert f"Resuming from the checkpoint at step {saved[0]}" in resumed.stdout


def test_damaged_latest_checkpoint_is_skipped(reference, cache_dir, tmp_path):
    shutil.copytree(reference, tmp_path, dirs_exist_ok=True)
    # Damage every data file of the latest checkpoint (step 12).
    latest = tmp_path / "checkpoints" / "12"
    damaged = 0
    for root, _, files in os.walk(latest):
        for name in files:
            path = os.path.join(root, name)
            if os.path.getsize(path) > 0:
                with open(path, "r+b") as f:
                    f.truncate(max(os.path.getsize(path) // 3, 1))
                damaged += 1
    assert damaged
    proc = run(tmp_path, 12, cache_dir)
    assert "Checkpoint at step 12" in proc.stdout and "skipping it" in proc.stdout
    assert "Resuming from the checkpoint at step 9" in proc.stdout
    # It re-ran steps 10..12 and got the same numbers as the reference.
    got, expected = losses(tmp_path), losses(reference)
    for step in (10, 11, 12):
        assert got[step] == expected[step]


def test_nan_update_is_skipped_and_counted(cache_dir, tmp_path):
    run(tmp_path, 6, cache_dir, extra=["--config.debug_nan_at_step=3",
                                       "--config.checkpoint_every_steps=2"])
    records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r for r in records if "train/loss" in r}
    assert by_step[3]["train/loss"] == "nan"
    assert by_step[2]["train/nonfinite_steps"] == 0 and by_step[6]["train/nonfinite_steps"] == 1
    assert all(np.isfinite(by_step[s]["train/loss"]) for s in (1, 2, 4, 5, 6))
    for p in final_params(tmp_path, 6):
        assert np.all(np.isfinite(p))


def test_nan_with_stop_keeps_last_good_checkpoint(cache_dir, tmp_path):
    proc = run(tmp_path, 8, cache_dir, check=False,
               extra=["--config.debug_nan_at_step=5", "--config.nonfinite=stop",
                      "--config.checkpoint_every_steps=2", "--config.log_every_steps=2"])
    assert proc.returncode == 1
    assert "non-finite loss or gradient by step 6" in proc.stderr
    saved = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
    assert saved == [2, 4]


@pytest.mark.parametrize("save_devices, load_devices", [(8, 1), (1, 8)])
def test_resume_across_device_counts(reference, cache_dir, tmp_path, save_devices, load_devices):
    run(tmp_path, 6, cache_dir, num_devices=save_devices, extra=["--config.checkpoint_every_steps=3"])
    shutil.rmtree(tmp_path / "checkpoints" / "6")
    proc = run(tmp_path, 12, cache_dir, num_devices=load_devices,
               extra=["--config.checkpoint_every_steps=3"])
    assert "Resuming from the checkpoint at step 3" in proc.stdout
    got, expected = losses(tmp_path), losses(reference)
    # Another device count sums in another order: equal up to float rounding (rtol 1e-4).
    np.testing.assert_allclose([got[s] for s in range(1, 13)],
                               [expected[s] for s in range(1, 13)], rtol=1e-4)
