"""A tiny pretraining run from a built HowTo100M-layout dataset (real mp4s with audio tracks)."""

import json
import subprocess
import sys

import numpy as np

from subprocess_utils import REPO_ROOT, child_env


def test_tiny_pretraining_from_built_howto100m(tmp_path):
    from vatt.testing import media as fixtures
    from vatt.data.build import build
    source, data_dir, workdir = tmp_path / "src", tmp_path / "tfds", tmp_path / "run"
    fixtures.write_howto100m(str(source), num_videos=3, seconds=6.0, bad=True)
    summary = build("howto100m/tiny", manual_dir=str(source), data_dir=str(data_dir))
    assert summary  # the build survives the corrupt files and reports them
    proc = subprocess.run(
        [sys.executable, "-m", "vatt.main", "--config=configs/pretrain.py:tiny_howto100m",
         f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
         "--config.total_steps=6", "--config.batch_size=4", "--config.log_every_steps=2",
         "--config.checkpoint_every_steps=3", "--config.optimizer.warmup_steps=1",
         "--config.model.video.num_layers=1", "--config.model.audio.num_layers=1",
         "--config.model.text.num_layers=1"],
        env=child_env(1), cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["train/loss"] for r in records if "train/loss" in r}
    assert sorted(losses) == [2, 4, 6] and all(np.isfinite(v) for v in losses.values())
    # The data stream's position is saved with the model, as JSON.
    data_state = json.loads((workdir / "checkpoints" / "6" / "data" / "metadata").read_text())
    assert data_state["kind"] and data_state["sources"]
