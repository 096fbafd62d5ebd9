"""Two real JAX processes x 2 fake CPU devices (launch/local.py): losses equal single-process."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np

import multiprocess_loss_child as child
from subprocess_utils import REPO_ROOT, child_env

LAUNCHER = os.path.join(REPO_ROOT, "launch", "local.py")
sys.path.insert(0, os.path.join(REPO_ROOT, "launch"))
import local as launcher  # noqa: E402


def _run_launcher(args, command, timeout=240):
    env = child_env(1)
    return subprocess.run([sys.executable, LAUNCHER, *args, "--", *command], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def test_child_env():
    env = launcher.child_env(1, 2, 1234, 4, "cpu",
                             base={"XLA_FLAGS": "--xla_foo=1 --xla_force_host_platform_device_count=8"})
    assert env["VATT_COORDINATOR_ADDRESS"] == "localhost:1234"
    assert env["VATT_NUM_PROCESSES"] == "2" and env["VATT_PROCESS_ID"] == "1"
    assert env["XLA_FLAGS"] == "--xla_foo=1 --xla_force_host_platform_device_count=4"
    assert env["JAX_PLATFORMS"] == "cpu"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == REPO_ROOT


def test_launcher_fails_fast_and_kills_the_others():
    code = textwrap.dedent("""
        import os, sys, time
        if os.environ["VATT_PROCESS_ID"] == "1":
            print("bye"); sys.exit(3)
        time.sleep(120)
    """)
    proc = _run_launcher(["--num_processes=3"], [sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "[p1] bye" in proc.stdout


def test_two_processes_match_single_process():
    proc = _run_launcher(["--num_processes=2", "--devices_per_process=2", "--timeout=200"],
                         [sys.executable, os.path.join(REPO_ROOT, "tests",
                                                       "multiprocess_loss_child.py")])
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    lines = [l for l in proc.stdout.splitlines() if l.startswith("[p0] RESULT:")]
    assert len(lines) == 1, proc.stdout[-4000:]
    res = json.loads(lines[0][len("[p0] RESULT:"):])
    assert res["process_count"] == 2 and res["device_count"] == 4

    # Single-process, single-device reference on the same global batch.
    batch = child.make_batch()

    def f(v, t, a, tm, sm):
        terms = child.loss_terms(v, t, a, tm, sm)
        return child.total(terms), terms

    (val, terms), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(*batch)
    for name in ("global", "chunked"):
        got = res[name]
        np.testing.assert_allclose(got["value"], float(val), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(got["terms"], np.asarray(terms), rtol=1e-5, err_msg=name)
        for g_got, g_ref in zip(got["grads"], grads):
            np.testing.assert_allclose(np.asarray(g_got), np.asarray(g_ref), rtol=1e-4, atol=1e-6,
                                       err_msg=name)
