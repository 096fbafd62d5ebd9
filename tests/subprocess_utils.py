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


# XLA's CPU flags for every test process and its children, chosen for a suite dominated by
# compiling small programs (measured on the tiny train step, 2-core VM, jax 0.10.2):
# - backend (LLVM) optimisation level 0 compiles about 40% faster (6.5-7.6 s -> 4.2 s) and runs
#   about half as fast (16 -> 35 ms a step);
# - the older elemental fusion emitters instead of the MLIR ones: the step's compile 3.8 ->
#   2.2 s, and at level 0 it runs faster too (216 -> 351 clips/s over 100 steps); a cold 20-step
#   CLI run 17.7 -> 15.1 s with the same losses.
# Both change code generation only, not the HLO passes: numbers move by float rounding (step-1
# loss 3e-4 relative), which no test depends on; programs run for figures (vatt.bench, the
# README's runs) keep XLA's defaults. XLA aborts on a flag it does not know, so a flag is used
# only where the installed jaxlib declares it.
OPTIONAL_TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0",
                           "--xla_cpu_use_fusion_emitters=false")


def _declared_by_jaxlib(flag: str) -> bool:
    """Whether the installed jaxlib's shared libraries contain the flag's name (XLA registers
    each flag by name; an unknown one is fatal at backend start)."""
    import glob
    import importlib.util
    import mmap
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return False
    name = flag.lstrip("-").split("=")[0].encode()
    for directory in spec.submodule_search_locations:
        for path in glob.glob(os.path.join(directory, "*.so")):
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    continue
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    if data.find(name) >= 0:
                        return True
    return False


TEST_XLA_FLAGS = tuple(f for f in OPTIONAL_TEST_XLA_FLAGS if _declared_by_jaxlib(f))
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
