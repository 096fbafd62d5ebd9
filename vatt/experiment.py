"""Runs one experiment from a config: validate it, build the task and the writer, hand both to
the one train loop. The Python form of `python -m vatt.main` (tests and notebooks use it).

  from vatt import config_files, experiment
  config = config_files.load("pretrain:tiny,runlocal", {"total_steps": 50})
  metrics = experiment.run(config, "/tmp/vatt_run")
"""

from __future__ import annotations

import jax
import ml_collections

from vatt import tracking
from vatt.config_validation import validate, validate_workdir
from vatt.metrics_writer import MetricsWriter
from vatt.tasks import build_task
from vatt.train.loop import train_and_evaluate


def run(config: ml_collections.ConfigDict, workdir: str, *, plots: bool = True,
        tensorboard: bool = True) -> dict[str, float]:
    """Validates `config` and `workdir` (ConfigError before anything starts), then trains
    and/or evaluates in `workdir` (local, or a gs:// URL: vatt.paths); returns the final
    evaluation metrics. Raises train.loop's Preempted, NonFiniteError and OutOfMemoryError as
    the loop does. PNGs are drawn only when both `plots` and config.plots say so."""
    validate(config, jax.device_count(), jax.process_count())
    workdir = validate_workdir(workdir)  # absolute locally; a URL is never made a local path
    task = build_task(config)
    # The W&B run of config.tracking (process 0), before training: a login or network problem
    # stops the run with one line; its id is the workdir's, so a resumed run continues it.
    tracker = tracking.from_config(config, workdir, jax.process_index())
    writer = MetricsWriter(workdir, tensorboard=tensorboard, plots=plots and bool(config.plots),
                           trackers=[tracker] if tracker else [])
    try:
        return train_and_evaluate(config, workdir, task, writer)
    finally:
        writer.close()  # drains TensorBoard events, draws the pending plots and the curves


def zeroshot_summary(metrics: dict[str, float]) -> str:
    """Says plainly whether synthetic zero-shot retrieval is far above chance ("" if absent)."""
    n = metrics.get("zeroshot/num_clips")
    if not n or "zeroshot/v2a/R@1" not in metrics:
        return ""
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
    return "\n".join(lines)
