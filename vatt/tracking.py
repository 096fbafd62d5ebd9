"""Experiment tracking beside metrics.jsonl and TensorBoard: an optional Weights & Biases run.

`config.tracking.wandb=True` makes vatt.experiment build a WandbSink on process 0 and hand it to
the run's MetricsWriter, which sends it every numeric metric it writes to metrics.jsonl, under
the same name and step. The W&B run id is drawn once per workdir and kept in
<workdir>/wandb_run_id, so a run restarted in the same workdir (preemption, requeue) continues the
same tracked run (wandb.init(id=..., resume="allow")). `wandb_mode="offline"` needs no network
and no login: the run is written under <workdir>/wandb/ and uploaded later with `wandb sync`.

wandb is an optional dependency (pip install 'vatt[wandb]'); this module imports it only when a
sink is built, and vatt.config_validation refuses a config that asks for it when it is absent.
A W&B run that cannot start (online mode without a login) is a one-line ConfigError too, raised
before training starts.
"""

from __future__ import annotations

import os
import secrets
import string
from typing import Any, Protocol

import ml_collections

from vatt import paths
from vatt.errors import ConfigError

WANDB_MODES = ("online", "offline", "disabled")
RUN_ID_FILE = "wandb_run_id"
INSTALL_HINT = "pip install 'vatt[wandb]' (or pip install wandb)"


class Tracker(Protocol):
    """Where MetricsWriter mirrors its numeric metrics (called on the writer's thread)."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def wandb_available() -> bool:
    """True if `import wandb` works (the check behind the one-line config error)."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def stable_run_id(workdir: str) -> str:
    """The W&B run id of `workdir`: read from <workdir>/wandb_run_id, drawn and written there the
    first time. The workdir may be a URL (gs://bucket/run, vatt.paths)."""
    path = paths.join(workdir, RUN_ID_FILE)
    if paths.exists(path):
        run_id = paths.read_text(path).strip()
        if run_id:
            return run_id
    # 12 lowercase letters/digits: the alphabet of W&B's own ids, and never a clash in practice.
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(12))
    paths.write_text(path, run_id + "\n")  # whole or not at all: a restart never reads half
    return run_id


class WandbSink:
    """One W&B run for one workdir; logs what MetricsWriter writes.

    Args:
      workdir: run directory; holds wandb_run_id, and (when local) W&B's own files in wandb/.
      project, entity, name: the W&B run's place and display name ("" lets W&B choose; the
        name defaults to the workdir's last component).
      mode: one of WANDB_MODES.
      config: the run's config as plain dicts (shown as the W&B run's config).
    """

    def __init__(self, workdir: str, *, project: str, entity: str = "", mode: str = "online",
                 name: str = "", config: dict[str, Any] | None = None):
        import wandb

        workdir = paths.resolve(workdir)
        self.run_id = stable_run_id(workdir)
        # W&B writes its files through the local file system: next to metrics.jsonl when the
        # workdir is local, else where WANDB_DIR (or the current directory) says.
        local_dir = None if paths.is_remote(workdir) else workdir
        try:
            self._run = wandb.init(
                project=project or None, entity=entity or None, mode=mode,
                name=name or os.path.basename(workdir) or None, id=self.run_id, resume="allow",
                dir=local_dir, config=config or {})
        except Exception as e:  # no login, no network, bad entity: one actionable line
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
            raise ConfigError(
                f"wandb could not start run {self.run_id} (config.tracking.wandb_mode={mode!r}): "
                f"{detail}. To track without network or login: "
                "--config.tracking.wandb_mode=offline, then `wandb sync` the run later") from e

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not metrics or self._run is None:
            return
        # W&B refuses steps below its current one, which a restarted run repeats between its
        # checkpoint and the preemption; resumption is bit-identical, so those values are the
        # ones already logged: skip them instead of letting W&B warn for each.
        if step < self._run.step:
            return
        self._run.log(dict(metrics), step=int(step))

    def close(self) -> None:
        """Finishes the run (uploads what is pending when online). Idempotent."""
        if self._run is not None:
            self._run.finish()
            self._run = None


def from_config(config: ml_collections.ConfigDict, workdir: str,
                process_index: int) -> WandbSink | None:
    """The sink `config.tracking` asks for, on process 0; None when tracking is off."""
    tracking = config.tracking
    if not tracking.wandb or process_index != 0:
        return None
    return WandbSink(workdir, project=tracking.wandb_project, entity=tracking.wandb_entity,
                     mode=tracking.wandb_mode, name=tracking.wandb_name,
                     config=config.to_dict())
