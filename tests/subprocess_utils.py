"""Run Python code in a fresh interpreter with N fake CPU devices and read back JSON.

JAX fixes its device count when it first initialises, so multi-device checks must
run in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.
The child prints one line ``RESULT:<json>``; everything else it prints is ignored
(and shown if the child fails).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_PREFIX = "RESULT:"


def child_env(num_devices: int = 1, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child process with `num_devices` fake CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if extra:
        env.update(extra)
    return env


def run_python(code: str, num_devices: int = 1, timeout: float = 600,
               extra_env: dict[str, str] | None = None) -> Any:
    """Runs `code` in a child interpreter and returns the object it printed after RESULT:.

    The code should end with ``print("RESULT:" + json.dumps(obj))``.
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(num_devices, extra_env), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"child failed with exit code {proc.returncode}\n--- stdout ---\n"
            f"{proc.stdout[-5000:]}\n--- stderr ---\n{proc.stderr[-8000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"child printed no {RESULT_PREFIX} line\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}")
