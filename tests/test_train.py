"""The train loop end to end, and the same losses on 1 device, 8 fake devices, and 2 processes
(started by launch/local.py and by the manual flags), with replicated and FSDP parameters."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from subprocess_utils import REPO_ROOT, child_env

STEPS = 20
# The tiny config with 1-layer backbones and a small batch: the mechanics are under test.
SMALL = [f"--config.total_steps={STEPS}", "--config.batch_size=16", "--config.log_every_steps=1",
         "--config.eval.num_clips=32", "--config.eval.batch_size=16",
         "--config.optimizer.warmup_steps=2", "--config.checkpoint_every_steps=0",
         "--config.model.video.num_layers=1", "--config.model.audio.num_layers=1",
         "--config.model.text.num_layers=1"]


def main_cmd(workdir, extra=()):
    return [sys.executable, "-m", "vatt.main", "--config=configs/pretrain.py:tiny",
            f"--workdir={workdir}", *SMALL, *extra]


def read_records(workdir):
    return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def train_losses(records):
    return {r["step"]: r["train/loss"] for r in records if "train/loss" in r}


def run_main(workdir, num_devices: int, extra=()):
    proc = subprocess.run(main_cmd(workdir, extra), env=child_env(num_devices), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc, read_records(workdir)


def assert_same_losses(got, expected, rtol=1e-4):
    a, b = train_losses(expected), train_losses(got)
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=rtol)


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory):
    return run_main(tmp_path_factory.mktemp("one"), 1)


def test_metrics_and_evaluation_keys(single_device_run):
    proc, records = single_device_run
    losses = train_losses(records)
    assert all(np.isfinite(v) for v in losses.values())
    assert losses[STEPS] < losses[1]  # it learns
    final = [r for r in records if "zeroshot/num_clips" in r][-1]
    assert final["step"] == STEPS and final["zeroshot/num_clips"] == 32
    for task in ("t2v", "v2a"):
        for k in ("R@1", "R@5", "R@10", "MedR"):
            assert f"zeroshot/{task}/{k}" in final
    assert f"step     {STEPS}/{STEPS} | loss" in proc.stdout and "clips/s | ETA" in proc.stdout
    assert "Compiled train step:" in proc.stdout and "GiB per device" in proc.stdout
    assert "Zero-shot retrieval on 32 held-out clips" in proc.stdout


def test_eight_fake_devices_match_one(single_device_run, tmp_path):
    _, one = single_device_run
    _, eight = run_main(tmp_path, 8)
    assert_same_losses(eight, one)


def test_two_processes_by_local_launcher_match_one(single_device_run, tmp_path):
    _, one = single_device_run
    proc = subprocess.run(
        [sys.executable, "launch/local.py", "--num_processes=2", "--devices_per_process=2", "--",
         *main_cmd(tmp_path)],
        env=child_env(1), cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "on 4 devices (2 processes)" in proc.stdout
    assert_same_losses(read_records(tmp_path), one)
    # Only process 0 prints progress lines.
    assert not [l for l in proc.stdout.splitlines() if l.startswith("[p1] step ")]


def test_two_processes_by_manual_flags_match_one(single_device_run, tmp_path):
    _, one = single_device_run
    sys.path.insert(0, os.path.join(REPO_ROOT, "launch"))
    from local import free_port
    port = free_port()
    procs = [subprocess.Popen(
        main_cmd(tmp_path, [f"--coordinator_address=localhost:{port}", "--num_processes=2",
                            f"--process_id={i}"]),
        env=child_env(2), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-5000:]
    assert_same_losses(read_records(tmp_path), one)


def test_fsdp_matches_replicated_on_eight_devices(single_device_run, tmp_path):
    """Parameters and optimizer state sharded over 8 devices give the replicated losses.

    (FSDP across 2 gloo CPU processes diverges slightly from step 4 on: gradients differ by
    ~1% while the loss still matches; an open problem, see the README's known issues.)
    """
    _, one = single_device_run
    proc, fsdp = run_main(tmp_path, 8, ["--config.mesh.fsdp=True"])
    assert_same_losses(fsdp, one)
