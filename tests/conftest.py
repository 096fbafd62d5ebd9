"""Shared pytest set-up: every test runs on the CPU, TensorFlow never grabs an accelerator, every
test process (and every child it starts) shares one JAX compilation cache, and one short
pretraining run is shared by every test that needs a trained model.

Compilation dominates the cost of these tests (the models are tiny), so tests and notebooks use
the same small config (`pretrain:tiny,runlocal`) wherever they can: a program compiled by one test
process is read back from the cache by the others.
"""

import fcntl
import json
import os
import sys
import tempfile

import pytest

# Must be set before jax / tensorflow are imported by any test module.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"vatt-tests-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# Make `tests/` importable as a plain directory of helpers (tests/helpers.py), and the
# repository root importable when the package is not installed (plain `pytest tests`).
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers import TrainedRun, final_metrics  # noqa: E402

# The shared pretraining run: pretrain:tiny,runlocal as shipped (300 steps, batch 16, 1-layer
# backbones), long enough that zero-shot retrieval, the linear probe and fine-tuning are far
# from chance, which is what the downstream tests check against a random initialisation.
TRAINED_SPEC = "pretrain:tiny,runlocal"


def _shared_dir(tmp_path_factory) -> str:
    """A directory shared by every xdist worker of this session (the basetemp's parent under
    xdist, the basetemp itself otherwise)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return str(base)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """One pretraining run for the whole session, trained by whichever worker asks first while
    the other waits on a file lock; read-only for the tests (copy it to modify it)."""
    from vatt import config_files
    shared = _shared_dir(tmp_path_factory)
    workdir = os.path.join(shared, "trained_run")
    done = os.path.join(shared, "trained_run.done")
    with open(os.path.join(shared, "trained_run.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.exists(done):
                from vatt import experiment
                config = config_files.load(TRAINED_SPEC)
                experiment.run(config, workdir)
                with open(done, "w") as f:
                    json.dump({"spec": TRAINED_SPEC}, f)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return TrainedRun(workdir=workdir, spec=TRAINED_SPEC, config=config_files.load(TRAINED_SPEC),
                      metrics=final_metrics(workdir))


# The 8-fake-device runs of the suite, in ONE subprocess (one interpreter, and the replicated
# program compiled once for the layout test and the chunked-loss test). The runs use the 20-step
# overrides that test_train.py, test_checkpointing.py and test_pretrain_task.py share.
EIGHT_DEVICE_OVERRIDES = {"total_steps": 20, "log_every_steps": 1, "eval.plots": False,
                          "optimizer.warmup_steps": 2}
EIGHT_DEVICE_RUNS = {"replicated": {}, "fsdp": {"mesh.fsdp": True}, "chunked": {"loss.chunked": True}}


@pytest.fixture(scope="session")
def eight_device_runs(tmp_path_factory) -> dict[str, str]:
    """{"replicated" | "fsdp" | "chunked": workdir} of pretrain:tiny,runlocal with
    EIGHT_DEVICE_OVERRIDES on 8 fake CPU devices, run once per session (file-locked, like
    trained_run) in one subprocess; read-only for the tests."""
    from helpers import run_python
    shared = _shared_dir(tmp_path_factory)
    workdirs = {name: os.path.join(shared, "eight_devices", name) for name in EIGHT_DEVICE_RUNS}
    done = os.path.join(shared, "eight_devices.done")
    with open(os.path.join(shared, "eight_devices.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.exists(done):
                out = run_python(f"""
                    import json, jax
                    from vatt import config_files, experiment
                    assert jax.device_count() == 8
                    for name, extra in {EIGHT_DEVICE_RUNS!r}.items():
                        config = config_files.load({TRAINED_SPEC!r},
                                                   dict({EIGHT_DEVICE_OVERRIDES!r}, **extra))
                        experiment.run(config, {workdirs!r}[name], plots=False, tensorboard=False)
                    print("RESULT:" + json.dumps(jax.device_count()))
                    """, num_devices=8)
                assert out == 8
                with open(done, "w") as f:
                    json.dump(workdirs, f)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return workdirs
