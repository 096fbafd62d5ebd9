"""vatt.alignment_report: CKA matrices, the report from a checkpoint, and the command line."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from subprocess_utils import REPO_ROOT, child_env
from test_plots import tiny_config

from vatt import alignment
from vatt.alignment_report import cka_matrices


def test_cka_matrices_match_alignment_module():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(16, 5)), rng.normal(size=(16, 7))]
    ys = [xs[0] @ rng.normal(size=(5, 3)) + 0.1 * rng.normal(size=(16, 3))]
    mats = cka_matrices(xs, ys, batch_size=16)
    for i, x in enumerate(xs):
        np.testing.assert_allclose(mats["linear"][i, 0], alignment.cka(x, ys[0]), rtol=1e-4)
        np.testing.assert_allclose(mats["debiased_minibatch"][i, 0],
                                   alignment.cka(x, ys[0], debiased=True), rtol=1e-4, atol=1e-6)
    # A trailing batch of <= 3 examples is skipped, not an error.
    assert np.isfinite(cka_matrices(xs, ys, batch_size=13)["debiased_minibatch"]).all()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A pretraining workdir with config.json and one checkpoint at step 3 (no training)."""
    import jax.numpy as jnp
    from flax import nnx

    from vatt.tasks import get_task
    from vatt.train.checkpointing import Checkpointer
    from vatt.train.optimizer import build_optimizer
    from vatt.train.state import TrainState, split_model

    path = tmp_path_factory.mktemp("pretrain")
    config = tiny_config()
    task = get_task(config)
    tx, _ = build_optimizer(config.optimizer, config.total_steps)
    # Eager build (the tree of vatt.train.loop.create_train_state) is faster than compiling
    # the jitted init for a model this small.
    seed = config.seed
    model = task.build_model(nnx.Rngs(params=seed, dropout=seed + 1, droptoken=seed + 2))
    _, params, rest = split_model(model, task.trainable)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest,
                       opt_state=tx.init(params),
                       rng=jax.random.key_data(jax.random.key(seed + 3)),
                       skipped=jnp.zeros((), jnp.int32))
    state = state.replace(step=state.step + 3)
    checkpointer = Checkpointer(str(path), 1, async_save=False)
    checkpointer.save(3, state, {"step": 3})
    checkpointer.close()
    (path / "config.json").write_text(config.to_json_best_effort(indent=2))
    return path


def test_command_line(workdir, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "vatt.alignment_report", f"--workdir={workdir}",
         "--num_clips=20", "--batch_size=8", f"--out={out}"],
        env=child_env(1), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "CKA at step 3 on 20 held-out clips" in proc.stdout
    assert "video (rows) vs text (columns)" in proc.stdout
    assert sorted(os.listdir(out)) == ["cka_layers.json", "cka_layers_video_audio.png",
                                       "cka_layers_video_text.png"]
    report = json.loads((out / "cka_layers.json").read_text())
    assert report["step"] == 3 and report["num_clips"] == 20 and report["batch_size"] == 8
    assert report["pairs"].keys() == {"video_text", "video_audio"}
    for name, pair in report["pairs"].items():
        space = "vt" if name == "video_text" else "va"
        assert pair["x_layers"] == pair["y_layers"] == ["block 1", "pooled", f"common ({space})"]
        linear = np.array(pair["linear"])
        debiased = np.array(pair["debiased_minibatch"])
        assert linear.shape == debiased.shape == (3, 3)
        assert np.all((linear >= 0) & (linear <= 1 + 1e-6))
        assert np.all(np.isfinite(debiased)) and np.all(debiased <= 1 + 1e-6)
        with open(out / f"cka_layers_{name}.png", "rb") as f:
            assert f.read(4) == b"\x89PNG"
