"""The train loop end to end: metrics, evaluation keys, and 1 device == 8 fake devices."""

import json
import subprocess
import sys

import numpy as np
import pytest

from subprocess_utils import REPO_ROOT, child_env

# A few steps of the tiny config, small enough for a test.
SHORT = ["--config.total_steps=6", "--config.batch_size=16", "--config.log_every_steps=1",
         "--config.eval.num_clips=32", "--config.eval.batch_size=16",
         "--config.optimizer.warmup_steps=2"]


def run_main(workdir, num_devices: int, extra=()):
    proc = subprocess.run(
        [sys.executable, "-m", "vatt.main", "--config=configs/pretrain.py:tiny",
         f"--workdir={workdir}", *SHORT, *extra],
        env=child_env(num_devices), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
    return proc, records


def train_losses(records):
    return {r["step"]: r["train/loss"] for r in records if "train/loss" in r}


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory):
    return run_main(tmp_path_factory.mktemp("one"), 1)


def test_metrics_and_evaluation_keys(single_device_run):
    proc, records = single_device_run
    losses = train_losses(records)
    assert sorted(losses) == list(range(1, 7))
    assert all(np.isfinite(v) for v in losses.values())
    final = [r for r in records if "zeroshot/num_clips" in r][-1]
    assert final["step"] == 6 and final["zeroshot/num_clips"] == 32
    for task in ("t2v", "v2a"):
        for k in ("R@1", "R@5", "R@10", "MedR"):
            assert f"zeroshot/{task}/{k}" in final
    assert "step      6/6 | loss" in proc.stdout and "clips/s | ETA" in proc.stdout
    assert "Zero-shot retrieval on 32 held-out clips" in proc.stdout


def test_eight_fake_devices_match_one(single_device_run, tmp_path):
    _, one = single_device_run
    _, eight = run_main(tmp_path, 8)
    a, b = train_losses(one), train_losses(eight)
    assert a.keys() == b.keys()
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-5)
    final_a = [r for r in one if "zeroshot/t2v/R@1" in r][-1]
    final_b = [r for r in eight if "zeroshot/t2v/R@1" in r][-1]
    assert final_a["zeroshot/t2v/MeanR"] == pytest.approx(final_b["zeroshot/t2v/MeanR"], rel=0.05)
