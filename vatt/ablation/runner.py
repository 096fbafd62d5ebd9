"""Runs the points x seeds of an ablation, each through the ordinary CLI in its own process
(`python -m vatt.main`: the run a user would launch, with its validation, checkpoints and
evaluation), then any downstream evaluations of the trained model (e.g. a linear probe, with
--config.init_from=<the run>).

Resumable at two levels: a finished run leaves result.json and is never rerun; an unfinished
one is started again with the same workdir, so the train loop resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Sequence

from vatt import paths
from vatt.ablation.grid import Point
from vatt.plots import read_metrics

RESULT_FILE = "result.json"


class RunFailed(RuntimeError):
    """A CLI run of the ablation exited non-zero; the message names its log."""


@dataclasses.dataclass(frozen=True)
class Study:
    """What every run of the ablation shares.

    config: the training config spec (e.g. "pretrain:tiny" or configs/pretrain.py:tiny).
    workdir: the ablation's local folder; run <point>/seed<k> lives in <workdir>/runs/...
    fixed: overrides applied to every training run; a point's own value of a key wins (an
      equal-time point's total_steps over a fixed --set=total_steps).
    evals: downstream config specs run on each trained model (e.g. "linear_probe:synthetic").
    """
    config: str
    workdir: str
    fixed: tuple[tuple[str, str], ...] = ()
    evals: tuple[str, ...] = ()

    def run_dir(self, point: Point, seed: int) -> str:
        return os.path.join(self.workdir, "runs", point.slug, f"seed{seed}")


def eval_name(spec: str) -> str:
    """Folder of a downstream evaluation: its config's name ("linear_probe:synthetic" ->
    "linear_probe_synthetic")."""
    name = os.path.basename(spec).replace(".py", "")
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def overrides_flags(overrides: Sequence[tuple[str, str]]) -> list[str]:
    return [f"--config.{k}={v}" for k, v in overrides]


def commands(study: Study, point: Point, seed: int) -> list[tuple[str, list[str]]]:
    """(name, argv) of the run's processes: training, then each downstream evaluation.
    Model overrides (model.*) are passed to the evaluations too, so they build the model that
    was trained; the training's other keys (loss, steps, data) are its own."""
    run = study.run_dir(point, seed)
    train_dir = os.path.join(run, "train")
    # Fixed keys first, the point's after them: ml_collections applies flags in order, so the
    # point (the more specific setting) wins where both name a key.
    train_overrides = [*study.fixed, *point.overrides, ("seed", str(seed))]
    out = [("train", [sys.executable, "-m", "vatt.main", f"--config={study.config}",
                      f"--workdir={train_dir}", *overrides_flags(train_overrides)])]
    model_overrides = [(k, v) for k, v in [*study.fixed, *point.overrides]
                       if k.startswith("model.")]
    for spec in study.evals:
        name = eval_name(spec)
        out.append((name, [sys.executable, "-m", "vatt.main", f"--config={spec}",
                           f"--workdir={os.path.join(run, name)}",
                           f"--config.init_from={train_dir}",
                           *overrides_flags([*model_overrides, ("seed", str(seed))])]))
    return out


def final_metrics(workdir: str) -> dict[str, float]:
    """Each metric's value at its last logged step (metrics.jsonl)."""
    series = read_metrics(paths.join(workdir, "metrics.jsonl"))
    return {k: float(values[-1]) for k, (_, values) in series.items() if len(values)}


def step_seconds(workdir: str) -> float:
    """Seconds per training step: the global batch over the median logged clips/s (the loop
    measures it between log steps, compilation excluded)."""
    series = read_metrics(paths.join(workdir, "metrics.jsonl"))
    if "train/clips_per_sec" not in series:
        raise ValueError(f"{workdir}/metrics.jsonl logs no train/clips_per_sec")
    config = json.loads(paths.read_text(paths.join(workdir, "config.json")))
    clips = [v for v in series["train/clips_per_sec"][1] if v > 0]
    return config["batch_size"] / statistics.median(clips)


def read_result(study: Study, point: Point, seed: int) -> dict | None:
    path = os.path.join(study.run_dir(point, seed), RESULT_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_one(study: Study, point: Point, seed: int, log=print) -> dict:
    """Runs (or, when it finished before, reads) one point at one seed; returns its result:
    {"point", "overrides", "seed", "metrics": {key: value}, "step_s", "total_steps",
    "train_wall_s"}. Raises RunFailed naming the log of a process that failed."""
    done = read_result(study, point, seed)
    if done is not None:
        log(f"[done] {point.label} seed {seed}")
        return done
    run = study.run_dir(point, seed)
    os.makedirs(run, exist_ok=True)
    metrics: dict[str, float] = {}
    walls: dict[str, float] = {}
    for name, argv in commands(study, point, seed):
        log(f"[run ] {point.label} seed {seed}: {name}")
        log_path = os.path.join(run, f"{name}.log")
        started = time.perf_counter()
        with open(log_path, "a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT)
        walls[name] = time.perf_counter() - started
        if proc.returncode != 0:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-2000:]
            raise RunFailed(f"{point.label} seed {seed}: {name} exited {proc.returncode}; "
                            f"log {log_path}; rerun the same command to resume it:\n{tail}")
        metrics.update(final_metrics(os.path.join(run, name)))
    train_dir = os.path.join(run, "train")
    config = json.loads(paths.read_text(paths.join(train_dir, "config.json")))
    result = {"point": point.label, "overrides": dict(point.overrides), "seed": seed,
              "metrics": metrics, "step_s": step_seconds(train_dir),
              "total_steps": int(config["total_steps"]), "train_wall_s": walls["train"]}
    paths.write_text(os.path.join(run, RESULT_FILE), json.dumps(result, indent=2))
    return result


def run_all(study: Study, points: Sequence[Point], seeds: Sequence[int], log=print
            ) -> tuple[list[dict], list[str]]:
    """Every point x seed, in order (sequentially, so the step times are not shared cores).
    Returns (results, failures): a failed run is reported and the others still run."""
    results, failures = [], []
    for point in points:
        for seed in seeds:
            try:
                results.append(run_one(study, point, seed, log))
            except RunFailed as e:
                log(f"[FAIL] {e}")
                failures.append(str(e).splitlines()[0])
    return results, failures
