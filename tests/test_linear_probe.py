"""Linear probe: the JAX classifiers fit separable data, the synthetic probe runs on a tiny model
with the expected keys, `config.evals` builds evaluators, and configs/linear_probe.py runs as an
evaluate-only task through the one train loop (loading a pretraining checkpoint)."""

import json
import os

import numpy as np
import pytest
from flax import nnx

from test_finetune import load_config, tiny_model, write_pretrain_checkpoint


def test_classifiers_fit_separable_data():
    from vatt.evaluation.linear_probe import default_probe_config, probe
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16)) * 3
    y = rng.integers(0, 5, 300)
    x = centres[y] + rng.normal(size=(300, 16))
    cfg = default_probe_config()
    cfg.steps, cfg.rank = 100, 4
    out = probe(x[:200], y[:200], x[200:], y[200:], 5, cfg)
    assert set(out) == {"logistic", "lowrank"}
    assert out["logistic"]["top1"] > 90 and out["lowrank"]["top1"] > 90
    assert out["logistic"]["top5"] == 100.0


def _tiny_config(arg: str):
    config = load_config("linear_probe", arg)
    config.model = tiny_model()
    config.data.update({"num_frames": 8, "frame_size": 32, "audio_rate": 4000})  # 3200 samples
    return config


def test_registry_and_evaluate_only_task(tmp_path):
    from vatt.evaluation.registry import build_evaluators
    from vatt.train.loop import train_and_evaluate
    pre = str(tmp_path / "pre")
    write_pretrain_checkpoint(pre, tiny_model())
    config = _tiny_config("synthetic")
    entry = config.evals.linear_probe_synthetic
    entry.update({"num_train": 64, "num_test": 32, "batch_size": 32, "steps": 30, "l2s": (1e-3,)})
    # A second probe entry of the same kind gets its own prefix.
    two = config.copy_and_resolve_references()
    two.evals.other = entry.copy_and_resolve_references()
    assert [e.prefix for e in build_evaluators(two)] == [
        "linear_probe/linear_probe_synthetic", "linear_probe/other"]
    config.init_from = pre
    wd = str(tmp_path / "probe")
    metrics = train_and_evaluate(config, wd)
    for key in ("linear_probe/top1", "linear_probe/logistic/top1", "linear_probe/lowrank/top1",
                "linear_probe/synthetic/lowrank/top5"):
        assert key in metrics and 0.0 <= metrics[key] <= 100.0
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        assert any("linear_probe/top1" in json.loads(line) for line in f)
