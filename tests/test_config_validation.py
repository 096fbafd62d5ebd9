"""Config validation: a bad value is refused with one line that names the key and the fix."""

import subprocess
import sys

import pytest

from subprocess_utils import REPO_ROOT, child_env
from vatt.config_validation import ConfigError, validate


def _tiny():
    sys.path.insert(0, REPO_ROOT)
    from configs.pretrain import get_config
    return get_config("tiny")


def test_tiny_config_is_valid():
    validate(_tiny(), num_devices=8)
    validate(_tiny(), num_devices=1)


@pytest.mark.parametrize("mutate, num_devices, pattern", [
    (lambda c: setattr(c, "batch_size", 30), 8, r"config.batch_size=30 is not divisible by the 8 devices: use a multiple of 8, such as 32"),
    (lambda c: setattr(c.model.video, "patch_size", (4, 5, 8)), 1, r"config.model.video.patch_size=\(4, 5, 8\) does not divide the clip 8x32x32"),
    (lambda c: setattr(c.model.audio, "patch_size", 300), 1, r"config.model.audio.patch_size=300 does not divide the 6400 audio samples"),
    (lambda c: setattr(c, "total_steps", 0), 1, r"config.total_steps=0 must be >= 1"),
    (lambda c: setattr(c.loss, "combine", "max"), 1, r"config.loss.combine='max'"),
    (lambda c: setattr(c.optimizer, "name", "lamb"), 1, r"config.optimizer.name='lamb' is not known"),
    (lambda c: setattr(c.model.video, "droptoken_keep", 0.0), 1, r"droptoken_keep=0.0 must be in \(0, 1\]"),
    (lambda c: setattr(c.eval, "num_clips", 10_000), 1, r"config.eval.num_clips=10000"),
    (lambda c: setattr(c.mesh, "data", 16), 8, r"config.mesh.data=16 but 8 devices"),
])
def test_bad_values_are_named(mutate, num_devices, pattern):
    config = _tiny()
    mutate(config)
    with pytest.raises(ConfigError, match=pattern):
        validate(config, num_devices=num_devices)


def test_cli_refuses_bad_config_before_anything_starts(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vatt.main", "--config=configs/pretrain.py:tiny",
         f"--workdir={tmp_path}", "--config.batch_size=30"],
        env=child_env(8), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    error_lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert error_lines == ["error: config.batch_size=30 is not divisible by the 8 devices: use a "
                           "multiple of 8, such as 32"]
    assert not (tmp_path / "metrics.jsonl").exists()
