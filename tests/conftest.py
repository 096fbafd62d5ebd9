"""Shared pytest set-up: every test runs on the CPU, TensorFlow never grabs an accelerator, every
test process (and every child it starts) shares one JAX compilation cache, and one short
pretraining run is shared by every test that needs a trained model.

Compilation dominates the cost of these tests (the models are tiny), so tests and notebooks use
the same small config (`pretrain:tiny,runlocal`) wherever they can: a program compiled by one test
process is read back from the cache by the others.
"""

import contextlib
import fcntl
import io
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
# Faster CPU compilation for this process and every child it starts (subprocess_utils explains).
sys.path.insert(0, os.path.dirname(__file__))
from subprocess_utils import xla_flags  # noqa: E402

os.environ["XLA_FLAGS"] = xla_flags(os.environ.get("XLA_FLAGS", ""))

# `tests/` is importable as a plain directory of helpers (tests/helpers.py, above); make the
# repository root importable when the package is not installed (plain `pytest tests`).
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


@contextlib.contextmanager
def _once(tmp_path_factory, name: str):
    """Yields (shared directory, done) under a file lock shared by every xdist worker; the body
    builds what is missing when done is False; the marker is written when it succeeds."""
    shared = _shared_dir(tmp_path_factory)
    marker = os.path.join(shared, f"{name}.done")
    with open(os.path.join(shared, f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            done = os.path.exists(marker)
            yield shared, done
            if not done:
                open(marker, "w").close()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """One pretraining run for the whole session, trained by whichever worker asks first while
    the other waits on a file lock; read-only for the tests (copy it to modify it)."""
    from vatt import config_files
    with _once(tmp_path_factory, "trained_run") as (shared, done):
        workdir = os.path.join(shared, "trained_run")
        if not done:
            from vatt import experiment
            experiment.run(config_files.load(TRAINED_SPEC), workdir)
    return TrainedRun(workdir=workdir, spec=TRAINED_SPEC, config=config_files.load(TRAINED_SPEC),
                      metrics=final_metrics(workdir))


# The 20-step runs that compare layouts, resume across device counts and test checkpoints. The
# learning-rate schedule is a runtime input of the train step, so the default-rate and tiny-rate
# runs of one layout run ONE compiled program (and the compilation cache shares it between
# processes). Checkpoints at 3, 6, ..., 18, 20 are all kept, so a run can resume from any.
STEPS = 20
# No PNGs (config.plots): these runs are read for their numbers, and in a CLI run the training
# curves (matplotlib's import and a drawing) cost ~1 s of CPU (measured on a warm 20-step run);
# tests/test_plots.py and the bucket run of tests/test_cloud_storage.py check the figures.
BASE_OVERRIDES = {"total_steps": STEPS, "log_every_steps": 1, "eval.plots": False,
                  "plots": False, "optimizer.warmup_steps": 2}
SAVING = dict(BASE_OVERRIDES, checkpoint_every_steps=3, checkpoints_to_keep=10)
# A learning rate at which float rounding cannot grow: layouts that sum in another order agree
# on every step's loss and gradient norm to ~1e-5 (at the default rate Adam amplifies the
# rounding and runs on different layouts drift apart slowly, which is expected).
TINY_LR = {"optimizer.learning_rate": 1e-6, "optimizer.end_learning_rate": 1e-6}
ONE_DEVICE_RUNS = {"default": SAVING, "tiny_lr": dict(SAVING, **TINY_LR)}
# name: (overrides, 1-device run whose step-3 checkpoint it resumes from, or None). Only the
# resumed run keeps checkpoints (tests/test_checkpointing.py resumes it on 1 device); it runs at
# the tiny rate because it is compared with the 1-device run over 17 steps, where Adam at the
# default rate turns the layouts' rounding into percent-level differences on some CPUs' code.
EIGHT_DEVICE_RUNS = {
    "replicated": (BASE_OVERRIDES, None),
    "replicated_tiny_lr": (dict(BASE_OVERRIDES, **TINY_LR), None),
    "fsdp_tiny_lr": (dict(BASE_OVERRIDES, **TINY_LR, **{"mesh.fsdp": True}), None),
    "chunked_tiny_lr": (dict(BASE_OVERRIDES, **TINY_LR, **{"loss.chunked": True}), None),
    "resumed_tiny_lr": (dict(SAVING, **TINY_LR), "tiny_lr"),
}


def only_checkpoint(source_workdir: str, step: int, workdir: str) -> str:
    """A fresh workdir holding nothing but `source_workdir`'s checkpoint at `step`."""
    import shutil
    shutil.copytree(os.path.join(source_workdir, "checkpoints", str(step)),
                    os.path.join(workdir, "checkpoints", str(step)))
    return workdir


@pytest.fixture(scope="session")
def one_device_runs(tmp_path_factory) -> dict[str, str]:
    """{"default" | "tiny_lr": workdir} of pretrain:tiny,runlocal with SAVING (and TINY_LR) on
    1 device, run once per session in whichever worker asks first; each workdir also holds the
    run's console output (console.txt) and the metrics experiment.run returned (returned.json).
    Read-only for the tests."""
    with _once(tmp_path_factory, "one_device") as (shared, done):
        workdirs = {name: os.path.join(shared, "one_device", name) for name in ONE_DEVICE_RUNS}
        if not done:
            from vatt import config_files, experiment
            for name, overrides in ONE_DEVICE_RUNS.items():
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    metrics = experiment.run(config_files.load(TRAINED_SPEC, overrides),
                                             workdirs[name], plots=False, tensorboard=False)
                with open(os.path.join(workdirs[name], "console.txt"), "w") as f:
                    f.write(out.getvalue())
                with open(os.path.join(workdirs[name], "returned.json"), "w") as f:
                    json.dump(metrics, f)  # what experiment.run returned
    return workdirs


@pytest.fixture(scope="session")
def eight_device_runs(tmp_path_factory, one_device_runs) -> dict[str, str]:
    """{name: workdir} of EIGHT_DEVICE_RUNS on 8 fake CPU devices, all in ONE subprocess (one
    interpreter; one compiled program per layout), run once per session; console.txt as for
    one_device_runs. Read-only for the tests."""
    from helpers import run_python
    with _once(tmp_path_factory, "eight_devices") as (shared, done):
        workdirs = {name: os.path.join(shared, "eight_devices", name) for name in EIGHT_DEVICE_RUNS}
        if not done:
            for name, (_, source) in EIGHT_DEVICE_RUNS.items():
                if source:
                    only_checkpoint(one_device_runs[source], 3, workdirs[name])
            runs = {name: (overrides, workdirs[name])
                    for name, (overrides, _) in EIGHT_DEVICE_RUNS.items()}
            out = run_python(f"""
                import contextlib, io, jax, json, os
                from vatt import config_files, experiment
                assert jax.device_count() == 8
                for overrides, workdir in {runs!r}.values():
                    out = io.StringIO()
                    with contextlib.redirect_stdout(out):
                        experiment.run(config_files.load({TRAINED_SPEC!r}, overrides), workdir,
                                       plots=False, tensorboard=False)
                    with open(os.path.join(workdir, "console.txt"), "w") as f:
                        f.write(out.getvalue())
                print("RESULT:" + json.dumps(jax.device_count()))
                """, num_devices=8)
            assert out == 8
    return workdirs


# The longest modules first (xdist's loadfile hands modules out in this order: pytest.ini turns
# off its own reordering, which puts the modules with the most tests first, so that the
# 20-parameter config-validation module ran first and the 150 s test_train.py started 5 minutes
# in), alternating ones that wait on the shared trained runs (one_device_runs, ...) with ones
# that do not. With three workers on two cores a worker waiting on a lock costs no core time
# (test_pretrain_task.py waits ~70 s for the 8-device runs while the other two run); handing it
# out after two modules that wait on nothing measured no better (683 s against 611 and 645 s,
# within the VM's run-to-run spread). Short modules follow in collection order and fill the end.
LONG_MODULES_FIRST = ("test_train.py", "test_ablation.py", "test_pretrain_task.py",
                      "test_real_data_resume.py", "test_checkpointing.py", "test_notebooks.py",
                      "test_grad_cache.py", "test_cloud_storage.py", "test_real_recipe.py",
                      "test_models.py", "test_bench.py", "test_convert.py", "test_finetune.py",
                      "test_data_bench.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONG_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
