"""The train loop end to end, and the same losses on 1 device, 8 fake devices (replicated and
FSDP parameters) and 2 processes (started by launch/local.py and by the manual flags).

Every run is pretrain:tiny,runlocal for STEPS steps (one loss logged per step), so the compiled
programs are shared through the compilation cache. The 1-device reference runs in this process;
only runs that need several devices or processes start a subprocess.
"""

import contextlib
import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import helpers
from subprocess_utils import REPO_ROOT, child_env

STEPS = 20
SPEC = "pretrain:tiny,runlocal"
# What the runs override: STEPS steps, a loss per step, no PNGs (plots are not under test here),
# and the learning rate at its peak from step 2 on. (With runlocal's 20 warmup steps the LR is
# still rising at steps 18..20 and one device drifts from several by up to 6e-4 there; with 2 the
# drift stays under 1e-5.) tests/test_checkpointing.py, test_no_recompile.py and test_cli.py
# run the same program.
OVERRIDES = {"total_steps": STEPS, "log_every_steps": 1, "eval.plots": False,
             "optimizer.warmup_steps": 2}
NUM_CLIPS = 64  # held-out clips of the runlocal zero-shot evaluation
CHANCE_R1 = 100.0 / NUM_CLIPS
# Several processes: no persistent compilation cache. Its keys differ per process and only
# process 0 writes it, so process 0 loads its programs while process 1 compiles them, reaches
# the first collective much later, and gloo's 30 s key-value wait expires on a loaded machine
# ("Gloo context initialization failed: DEADLINE_EXCEEDED"). Compiling in both keeps them level.
NO_CACHE = {"JAX_ENABLE_COMPILATION_CACHE": "false"}


def cli_args(workdir, extra=()):
    return ["-m", "vatt.main", f"--config={SPEC}", f"--workdir={workdir}",
            *(f"--config.{k}={v}" for k, v in OVERRIDES.items()), *extra]


def assert_same_losses(got_workdir, expected, rtol=1e-4):
    """train/loss of every step 1..STEPS of `got_workdir` equals `expected` at rtol."""
    got = helpers.train_values(str(got_workdir))
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in range(1, STEPS + 1)],
                               [expected[s] for s in range(1, STEPS + 1)], rtol=rtol)


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory):
    """(console output, metrics returned, {step: loss}, workdir) of the 1-device run, here."""
    from vatt import config_files, experiment
    workdir = tmp_path_factory.mktemp("one")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics = experiment.run(config_files.load(SPEC, OVERRIDES), str(workdir), plots=False,
                                 tensorboard=False)
    return out.getvalue(), metrics, helpers.train_values(str(workdir)), workdir


def test_single_device_run_metrics_and_console(single_device_run):
    stdout, metrics, losses, workdir = single_device_run
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert all(np.isfinite(v) for v in losses.values())
    assert losses[STEPS] < losses[1]  # it learns, even in 20 steps
    # One final evaluation, at the last step, on the held-out clips; what run() returns is
    # what it wrote.
    evals = [r for r in helpers.records(str(workdir)) if "zeroshot/num_clips" in r]
    assert len(evals) == 1 and evals[0]["step"] == STEPS
    assert evals[0]["zeroshot/num_clips"] == NUM_CLIPS == metrics["zeroshot/num_clips"]
    for task in ("t2v", "v2a"):
        r1, r5, r10 = (metrics[f"zeroshot/{task}/R@{k}"] for k in (1, 5, 10))
        assert 0 <= r1 <= r5 <= r10 <= 100
        assert 1 <= metrics[f"zeroshot/{task}/MedR"] <= NUM_CLIPS
        assert evals[0][f"zeroshot/{task}/R@1"] == r1
    # Console: one progress line per step, the compiled step's memory, the evaluation.
    assert f"step {STEPS:>6d}/{STEPS} | loss {losses[STEPS]:8.4f} |" in stdout
    assert "clips/s | ETA" in stdout
    assert sum(line.startswith("step ") for line in stdout.splitlines()) == STEPS
    assert "Compiled train step:" in stdout and "GiB per device" in stdout
    assert f"eval at step {STEPS}: zeroshot/t2v/R@1=" in stdout
    from vatt import experiment
    assert experiment.zeroshot_summary(metrics).startswith(
        f"Zero-shot retrieval on {NUM_CLIPS} held-out clips (chance R@1 = {CHANCE_R1:.2f}%)")


def test_trained_run_learns_and_retrieves_far_above_chance(trained_run):
    """The shared 300-step run: the loss falls and zero-shot retrieval on held-out clips is far
    above chance (measured ~16x for text->video and ~12x for video->audio)."""
    losses = helpers.train_values(trained_run.workdir)
    first, last = min(losses), max(losses)
    assert last == trained_run.config.total_steps
    assert losses[last] < 0.75 * losses[first], losses  # measured: 3.64 at step 10, 1.89 at 300
    metrics = trained_run.metrics
    assert metrics["zeroshot/num_clips"] == NUM_CLIPS
    for task in ("t2v", "v2a"):
        assert metrics[f"zeroshot/{task}/R@1"] >= 8 * CHANCE_R1, (task, metrics)


# eight_device_runs (tests/conftest.py): the replicated, FSDP and chunked-loss runs on 8 fake
# devices, in one subprocess shared with tests/test_pretrain_task.py.
def test_eight_device_runs_use_these_overrides():
    from conftest import EIGHT_DEVICE_OVERRIDES
    assert EIGHT_DEVICE_OVERRIDES == OVERRIDES


def test_eight_fake_devices_match_one(single_device_run, eight_device_runs):
    assert_same_losses(eight_device_runs["replicated"], single_device_run[2])


def test_fsdp_matches_replicated_on_eight_devices(single_device_run, eight_device_runs):
    """Parameters and optimizer state sharded over 8 devices give the replicated losses.

    (FSDP across 2 gloo CPU processes diverges slightly from step 4 on: gradients differ by
    ~1% while the loss still matches; an open problem, see the README's known issues.)
    """
    assert_same_losses(eight_device_runs["fsdp"], single_device_run[2])


def test_two_processes_by_local_launcher_match_one(single_device_run, tmp_path):
    proc = subprocess.run(
        [sys.executable, "launch/local.py", "--num_processes=2", "--devices_per_process=2", "--",
         sys.executable, *cli_args(tmp_path)],
        env=child_env(1, NO_CACHE), cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "on 4 devices (2 processes)" in proc.stdout
    assert_same_losses(tmp_path, single_device_run[2])
    lines = proc.stdout.splitlines()
    # Process 0 prints the progress, the compiled step's memory and the zero-shot summary...
    assert sum(line.startswith("[p0] step ") for line in lines) == STEPS
    assert any(line.startswith(f"[p0] step {STEPS:>6d}/{STEPS} | loss") and "clips/s | ETA" in line
               for line in lines)
    assert any(line.startswith("[p0] Compiled train step:") and "GiB per device" in line
               for line in lines)
    assert f"[p0] Zero-shot retrieval on {NUM_CLIPS} held-out clips" in proc.stdout
    # ... and only process 0.
    assert not [line for line in lines if line.startswith("[p1] step ")
                or line.startswith("[p1] Zero-shot") or line.startswith("[p1] Compiled")]


def test_two_processes_by_manual_flags_match_one(single_device_run, tmp_path):
    sys.path.insert(0, os.path.join(REPO_ROOT, "launch"))
    from local import free_port
    port, workdir = free_port(), tmp_path / "run"
    logs = [open(tmp_path / f"p{i}.log", "w+", encoding="utf-8") for i in range(2)]
    procs = [subprocess.Popen(
        [sys.executable, *cli_args(workdir, [f"--coordinator_address=localhost:{port}",
                                             "--num_processes=2", f"--process_id={i}"])],
        env=child_env(1, NO_CACHE), cwd=REPO_ROOT, stdout=logs[i], stderr=subprocess.STDOUT)
        for i in range(2)]
    # When one process fails the other waits forever in a collective: stop it then.
    deadline = time.time() + 900
    while (any(p.poll() is None for p in procs) and time.time() < deadline
           and not any(p.poll() for p in procs)):
        time.sleep(0.5)
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-5000:]
    assert "on 2 devices (2 processes)" in outputs[0]  # one device each (the launcher: two)
    assert_same_losses(workdir, single_device_run[2])
    assert not [line for line in outputs[1].splitlines() if line.startswith("step ")]
