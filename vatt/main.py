r"""Entry point: python -m vatt.main --config=configs/<file>.py[:<arg>] --workdir=<dir>.

Override any config key with --config.<key>=<value>. The config is validated before
anything starts; a bad value stops the run with one line naming the key and the fix.

  --dry_run        build the model abstractly (no parameter memory, no data), print a
                   per-module table and one JSON line of parameter, token and FLOP counts.
  --coordinator_address/--num_processes/--process_id
                   join a multi-process run by hand (otherwise JAX detects SLURM / TPU pods).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/pretrain.py:tiny.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints and plots.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the model summary as JSON and exit.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Total number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _in_multiprocess_cluster() -> bool:
    """True under launch/local.py, a multi-task SLURM step, or a multi-host TPU VM slice,
    where jax.distributed must be initialised (it then detects the rest itself)."""
    env = os.environ
    if env.get("VATT_COORDINATOR_ADDRESS"):
        return True
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and env.get("SLURM_STEP_ID") is not None:
        return True
    return len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1


def _dry_run(config) -> None:
    from vatt.models.summary import summarize
    table, report = summarize(config.model)
    print(table)
    print(json.dumps(report))


def _report_zeroshot(metrics: dict[str, float]) -> None:
    """States plainly whether zero-shot retrieval is far above chance."""
    n = metrics.get("zeroshot/num_clips")
    if not n:
        return
    chance = 100.0 / n
    lines = [f"Zero-shot retrieval on {int(n)} held-out clips (chance R@1 = {chance:.2f}%):"]
    ok = True
    for task, label in (("t2v", "text->video"), ("v2a", "video->audio")):
        r1 = metrics[f"zeroshot/{task}/R@1"]
        ratio = r1 / chance
        ok &= ratio >= 25
        lines.append(f"  {label:13s} R@1 {r1:6.2f}%  R@5 {metrics[f'zeroshot/{task}/R@5']:6.2f}%  "
                     f"R@10 {metrics[f'zeroshot/{task}/R@10']:6.2f}%  MedR "
                     f"{metrics[f'zeroshot/{task}/MedR']:.1f}  = {ratio:.1f}x chance")
    lines.append("RESULT: both R@1 are at least 25x chance: the model learned the shared factors."
                 if ok else "RESULT: an R@1 is below 25x chance: the model has not learned enough.")
    print("\n".join(lines), flush=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}: use --flag=value")
    config = _CONFIG.value
    if config is None:
        _fail("--config is required, e.g. --config=configs/pretrain.py:tiny")
    # TensorFlow (data layer only) must never take an accelerator from JAX.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    if _DRY_RUN.value:
        _dry_run(config)
        return
    if not _WORKDIR.value:
        _fail("--workdir is required for training, e.g. --workdir=/tmp/vatt_tiny")

    if _COORDINATOR.value or _NUM_PROCESSES.value or _in_multiprocess_cluster():
        from vatt.parallel.distributed import initialize
        initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)

    import jax

    from vatt.config_validation import ConfigError, validate
    try:
        validate(config, jax.device_count(), jax.process_count())
    except ConfigError as e:
        _fail(str(e))

    from vatt.train.loop import NonFiniteError, OutOfMemoryError, Preempted, train_and_evaluate
    logging.set_verbosity(logging.WARNING)
    try:
        metrics = train_and_evaluate(config, _WORKDIR.value)
    except Preempted as e:
        # A clean exit: the scheduler restarts the job and it resumes from this checkpoint.
        if jax.process_index() == 0:
            print(f"Preempted at step {e.step}: checkpoint saved in {_WORKDIR.value}; run the "
                  "same command to continue.", flush=True)
        return
    except (NonFiniteError, OutOfMemoryError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    if jax.process_index() == 0:
        _report_zeroshot(metrics)


if __name__ == "__main__":
    app.run(main)
