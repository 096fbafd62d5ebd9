"""metrics.jsonl, TensorBoard event files, plots and the console progress line.

Only process 0 writes. metrics.jsonl is appended synchronously (one short line, and tests and
tools read it as soon as the process ends); everything slower (TensorBoard event files via
tensorboardX, matplotlib plots, t-SNE) runs on one background thread fed by a queue, so the
train loop never waits for disk or plotting. `close()` drains the queue; it is also registered
with `atexit` so a run that never calls it still finishes its plots and event files.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import queue
import threading
import time
import traceback
from typing import Any, Callable

import jax
import numpy as np

# The writer of each workdir in this process, so evaluators (which only see ctx.workdir) can
# send images and plot jobs to the same background thread and event file.
_ACTIVE: dict[str, "MetricsWriter"] = {}


def active_writer(workdir: str) -> "MetricsWriter | None":
    """The open MetricsWriter of `workdir` in this process, or None."""
    return _ACTIVE.get(os.path.abspath(workdir))


def _plain(value: Any) -> Any:
    """JSON-safe Python scalar (NaN/inf become strings so the file stays valid JSON)."""
    value = np.asarray(value).item() if not isinstance(value, (str, int, float)) else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _is_eval_key(key: str) -> bool:
    return not key.startswith("train/")


class MetricsWriter:
    """Appends one JSON object per line to <workdir>/metrics.jsonl and mirrors every numeric
    value as a TensorBoard scalar under <workdir>/tensorboard.

    Entries are appended across restarts; each carries `step` (and the wall time),
    so a step re-run after a restart is recognisable: the last entry for a step wins.
    After a write with evaluation metrics (keys not under `train/`) and on `close()`, the
    training curves are re-plotted to <workdir>/plots/training_curves.png.

    Args:
      workdir: run directory.
      tensorboard: write TensorBoard event files (tensorboardX; no TensorFlow).
      plots: write PNG plots (matplotlib, Agg backend).
    """

    def __init__(self, workdir: str, tensorboard: bool = True, plots: bool = True):
        self.workdir = os.path.abspath(workdir)
        self.path = os.path.join(self.workdir, "metrics.jsonl")
        self.plots_dir = os.path.join(self.workdir, "plots")
        self.tensorboard_dir = os.path.join(self.workdir, "tensorboard")
        self.enabled = jax.process_index() == 0
        self.tensorboard = tensorboard
        self.plots = plots
        self._tb = None  # tensorboardX.SummaryWriter, created on the background thread
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.errors: list[str] = []
        if self.enabled:
            os.makedirs(self.workdir, exist_ok=True)
            _ACTIVE[self.workdir] = self
            atexit.register(self.close)

    # ------------------------------------------------------------------ background thread
    def _worker(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            except Exception:  # a failed plot must never take the run down; say so once
                message = traceback.format_exc(limit=3)
                self.errors.append(message)
                print(f"metrics writer: background job failed:\n{message}", flush=True)
            finally:
                self._queue.task_done()

    def submit(self, job: Callable[[], None]) -> None:
        """Runs `job()` on the writer's background thread (process 0; no-op elsewhere)."""
        if not self.enabled or self._closed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name="metrics-writer",
                                            daemon=True)
            self._thread.start()
        self._queue.put(job)

    def _summary_writer(self):
        if self._tb is None:
            from tensorboardX import SummaryWriter  # protobuf only, no TensorFlow
            self._tb = SummaryWriter(logdir=self.tensorboard_dir, flush_secs=30)
        return self._tb

    # ------------------------------------------------------------------ public API
    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in metrics.items()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        scalars = {k: float(v) for k, v in record.items()
                   if k not in ("step", "time") and isinstance(v, (int, float))}
        if self.tensorboard and scalars:
            def to_tensorboard(step=int(step), wall=record["time"]):
                tb = self._summary_writer()
                for k, v in scalars.items():
                    tb.add_scalar(k, v, step, walltime=wall)
            self.submit(to_tensorboard)
        if self.plots and any(_is_eval_key(k) for k in scalars):
            self.submit(self._plot_training_curves)

    def write_image(self, step: int, tag: str, image: np.ndarray) -> None:
        """Adds an image to TensorBoard. image: [H, W] (colour-mapped with viridis over its
        own range) or [H, W, 3] floats in [0, 1] / uint8."""
        if not (self.enabled and self.tensorboard):
            return
        image = np.asarray(image)

        def job():
            img = image
            if img.ndim == 2:
                from matplotlib import colormaps
                lo, hi = float(np.min(img)), float(np.max(img))
                img = colormaps["viridis"]((img - lo) / (hi - lo if hi > lo else 1.0))[..., :3]
            # Nearest-neighbour upscaling: a 4x4 CKA matrix would be 4 pixels wide otherwise.
            scale = max(1, 192 // max(img.shape[:2]))
            img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
            self._summary_writer().add_image(tag, img, int(step), dataformats="HWC")
        self.submit(job)

    def write_text(self, tag: str, text: str, step: int = 0) -> None:
        """Adds text (e.g. the run's config) to TensorBoard."""
        if self.enabled and self.tensorboard:
            self.submit(lambda: self._summary_writer().add_text(tag, text, step))

    def _plot_training_curves(self) -> None:
        from vatt import plots
        if os.path.exists(self.path):
            plots.plot_training_curves(self.path, os.path.join(self.plots_dir,
                                                               "training_curves.png"))

    def flush(self) -> None:
        """Waits until every queued event and plot is written."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Plots the training curves, drains the queue and closes the event file. Idempotent."""
        if not self.enabled or self._closed:
            return
        if self.plots:
            self.submit(self._plot_training_curves)
        self.flush()
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if _ACTIVE.get(self.workdir) is self:
            del _ACTIVE[self.workdir]
        try:
            atexit.unregister(self.close)
        except Exception:  # interpreter shutting down
            pass


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class ProgressReporter:
    """One console line per log step: step, loss, clips/s and ETA (process 0 only)."""

    def __init__(self, total_steps: int, batch_size: int):
        self.total_steps = total_steps
        self.batch_size = batch_size
        self._last_time: float | None = None
        self._last_step = 0

    def start(self, step: int) -> None:
        self._last_time, self._last_step = time.perf_counter(), step

    def throughput(self, step: int) -> tuple[float, float]:
        """(clips/s, seconds per step) since the previous call."""
        now = time.perf_counter()
        steps = max(step - self._last_step, 1)
        elapsed = now - (self._last_time or now)
        self._last_time, self._last_step = now, step
        sec_per_step = elapsed / steps
        return (self.batch_size / sec_per_step if sec_per_step > 0 else 0.0), sec_per_step

    def line(self, step: int, loss: float, clips_per_sec: float, sec_per_step: float) -> str:
        eta = format_duration((self.total_steps - step) * sec_per_step)
        return (f"step {step:>6d}/{self.total_steps} | loss {loss:8.4f} | "
                f"{clips_per_sec:8.1f} clips/s | ETA {eta}")
