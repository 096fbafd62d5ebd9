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


# XLA's CPU backend (LLVM) optimisation level for every test process and its children: level 0
# compiles the tiny test programs about 40% faster (a tiny train step: 6.5-7.6 s -> 4.2 s) and
# runs them about half as fast (16 -> 35 ms), a good trade for a suite dominated by compilation.
# It changes code generation only, not the HLO passes: numbers move by float rounding (step-1
# loss 3e-4 relative), which no test depends on; programs run for figures (vatt.bench, the
# README's runs) keep XLA's default.
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0",)
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def xla_flags(current: str, num_devices: int | None = None) -> str:
    """`current` XLA_FLAGS with the test flags added and, when given, the fake-device count
    set to `num_devices` (replacing one already there); other flags are kept."""
    flags = [f for f in current.split()
             if not (num_devices is not None and f.startswith(DEVICE_COUNT_FLAG))]
    flags += [f for f in TEST_XLA_FLAGS if f not in flags]
    if num_devices is not None:
        flags.append(f"{DEVICE_COUNT_FLAG}={num_devices}")
    return " ".join(flags)


def child_env(num_devices: int = 1, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child process with `num_devices` fake CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = xla_flags(env.get("XLA_FLAGS", ""), num_devices)
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
