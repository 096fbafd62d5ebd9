r"""Entry point: python -m vatt.main --config=<config>[:<arg>] --workdir=<dir>.

<config> is a config file (configs/pretrain.py) or a shipped config's name (pretrain), so an
installed package runs from anywhere: python -m vatt.main --config=pretrain:tiny --workdir=/tmp/t
(vatt.config_files). Override any config key with --config.<key>=<value>. The config is validated
before anything starts; a bad value stops the run with one line naming the key and the fix.

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

from vatt import config_files


def _define_flags() -> None:
    """Flags of the command line (defined when it runs, not when the module is imported)."""
    config_flags.DEFINE_config_file("config", None, "Config file or shipped config name, e.g. "
                                    "configs/pretrain.py:tiny or pretrain:tiny.")
    flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints and plots: a local "
                        "path or gs://<bucket>/<path>.")
    flags.DEFINE_bool("dry_run", False, "Print the model summary as JSON and exit.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "Total number of processes.")
    flags.DEFINE_integer("process_id", None, "This process's index.")


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


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}: use --flag=value")
    f = flags.FLAGS
    config = f.config
    if config is None:
        _fail("--config is required, e.g. --config=configs/pretrain.py:tiny or --config=pretrain:tiny")
    # TensorFlow (data layer only) must never take an accelerator from JAX.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    if f.dry_run:
        _dry_run(config)
        return
    if not f.workdir:
        _fail("--workdir is required for training, e.g. --workdir=/tmp/vatt_tiny")
    from vatt import paths
    problem = paths.unsupported(f.workdir, "--workdir", "checkpoint")
    if problem:  # before JAX starts; experiment.run checks it again for Python callers
        _fail(problem)

    if f.coordinator_address or f.num_processes or _in_multiprocess_cluster():
        from vatt.parallel.distributed import initialize
        initialize(f.coordinator_address, f.num_processes, f.process_id)

    import jax

    from vatt import experiment
    from vatt.config_validation import ConfigError
    from vatt.train.loop import NonFiniteError, OutOfMemoryError, Preempted
    logging.set_verbosity(logging.WARNING)
    try:
        metrics = experiment.run(config, f.workdir)
    except ConfigError as e:
        _fail(str(e))
    except Preempted as e:
        # A clean exit: the scheduler restarts the job and it resumes from this checkpoint.
        if jax.process_index() == 0:
            print(f"Preempted at step {e.step}: checkpoint saved in {f.workdir}; run the "
                  "same command to continue.", flush=True)
        return
    except (NonFiniteError, OutOfMemoryError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    if jax.process_index() == 0:
        summary = experiment.zeroshot_summary(metrics)
        if summary:
            print(summary, flush=True)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, after resolving --config to a file (a shipped config named from anywhere)."""
    try:
        argv = config_files.resolve_argv(argv)
        config_files.check_override_keys(argv)
    except FileNotFoundError as e:
        _fail(str(e))
    except KeyError as e:
        _fail(f"{e.args[0]} (overrides can only set keys the config declares)")
    return app.parse_flags_with_usage(argv)


def run_cli() -> None:
    _define_flags()
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run_cli()
