"""vatt.alignment_report: CKA matrices, and the command line on the shared pretraining run (read
only), whose pooled-output CKA must be the one the run's own evaluation computed on the same
held-out clips."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from subprocess_utils import child_env

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


def _listing(root: str) -> dict[str, tuple[int, float]]:
    """{relative path: (size, mtime)} of every file and folder under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (st.st_size if name in filenames else 0, st.st_mtime)
    return out


def test_command_line_on_the_trained_run(trained_run, tmp_path):
    """The report reads the checkpoint only (Checkpointer(read_only=True)): it runs directly on
    the shared run's workdir, writes only to --out and leaves the workdir untouched."""
    before = _listing(trained_run.workdir)
    cfg = trained_run.config
    n, batch = cfg.eval.num_clips, cfg.eval.batch_size  # the clips the run evaluated itself on
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "vatt.alignment_report", f"--workdir={trained_run.workdir}",
         f"--num_clips={n}", f"--batch_size={batch}", f"--out={out}"],
        env=child_env(1), cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert _listing(trained_run.workdir) == before
    step = cfg.total_steps
    assert f"CKA at step {step} on {n} held-out clips" in proc.stdout
    assert "video (rows) vs text (columns)" in proc.stdout
    assert sorted(os.listdir(out)) == ["cka_layers.json", "cka_layers_video_audio.png",
                                       "cka_layers_video_text.png"]
    report = json.loads((out / "cka_layers.json").read_text())
    assert report["step"] == step and report["num_clips"] == n and report["batch_size"] == batch
    assert report["pairs"].keys() == {"video_text", "video_audio"}
    for name, pair in report["pairs"].items():
        space = "vt" if name == "video_text" else "va"
        assert pair["x_layers"] == pair["y_layers"] == ["block 1", "pooled", f"common ({space})"]
        linear = np.array(pair["linear"])
        debiased = np.array(pair["debiased_minibatch"])
        assert linear.shape == debiased.shape == (3, 3)
        assert np.all((linear >= 0) & (linear <= 1 + 1e-6))
        assert np.all(np.isfinite(debiased)) and np.all(debiased <= 1 + 1e-6)
        # Pooled vs pooled: the linear CKA that the pretraining run's evaluator reported on the
        # same 64 held-out clips (vatt.evaluation.zeroshot, in the training process).
        pooled = pair["x_layers"].index("pooled")
        assert linear[pooled, pooled] == pytest.approx(
            trained_run.metrics[f"zeroshot/cka/{name}"], rel=1e-4)
        # After 300 steps the modalities are aligned far above a random init (measured 0.73
        # video-text and 0.77 video-audio; random-init models of this config: 0.06-0.26).
        assert linear[pooled, pooled] > 0.5
        with open(out / f"cka_layers_{name}.png", "rb") as f:
            assert f.read(4) == b"\x89PNG"
