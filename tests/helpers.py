"""Helpers shared by the tests: configs with overrides, reading a run's metrics, running the CLI
or Python code in a fresh interpreter with N fake CPU devices."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Sequence

import ml_collections

from subprocess_utils import REPO_ROOT, child_env, run_python  # noqa: F401 (re-exported)


@dataclasses.dataclass
class TrainedRun:
    """A finished pretraining run: its workdir (checkpoint, metrics.jsonl, config.json), the
    config spec and config it ran, and its final evaluation metrics."""
    workdir: str
    spec: str
    config: ml_collections.ConfigDict
    metrics: dict[str, float]


def config(spec: str, **overrides: Any) -> ml_collections.ConfigDict:
    """A shipped config with dotted overrides given as keyword arguments with "__" for ".":
    config("pretrain:tiny,runlocal", total_steps=20, model__video__num_layers=2)."""
    from vatt import config_files
    return config_files.load(spec, {k.replace("__", "."): v for k, v in overrides.items()})


def records(workdir: str) -> list[dict]:
    """Every line of <workdir>/metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def train_values(workdir: str, key: str = "train/loss") -> dict[int, float]:
    """{step: value} of a training metric; the last entry for a step wins (a re-run step)."""
    return {r["step"]: r[key] for r in records(workdir) if key in r}


def saved_steps(workdir: str) -> list[int]:
    """The finished checkpoint steps in <workdir>/checkpoints, ascending."""
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def final_metrics(workdir: str) -> dict[str, float]:
    """The last evaluation entry of metrics.jsonl (keys outside train/)."""
    evals = [r for r in records(workdir) if any(not k.startswith("train/") and k not in
                                                ("step", "time") for k in r)]
    return evals[-1] if evals else {}


def run_cli(args: Sequence[str], num_devices: int = 1, timeout: float = 600,
            extra_env: dict[str, str] | None = None, check: bool = True,
            cwd: str = REPO_ROOT) -> subprocess.CompletedProcess:
    """python -m vatt.main <args> in a fresh interpreter with `num_devices` fake CPU devices."""
    proc = subprocess.run([sys.executable, "-m", "vatt.main", *args],
                          env=child_env(num_devices, extra_env), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def sigkill_at_step_line(proc: subprocess.Popen, step_lines: int, pause: float) -> bool:
    """Reads `proc`'s console until its `step_lines`-th "step " line, waits `pause` seconds and
    SIGKILLs it. True when the kill ended it (its stdout is then closed); False when it ended
    first (its remaining output is still to read)."""
    seen = 0
    for line in proc.stdout:
        if line.startswith("step "):
            seen += 1
            if seen >= step_lines:
                time.sleep(pause)
                proc.send_signal(signal.SIGKILL)
                break
    if proc.wait() == -signal.SIGKILL:
        proc.stdout.close()
        return True
    return False
