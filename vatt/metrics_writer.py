"""The run's writer: metrics.jsonl, TensorBoard event files, PNG figures and trackers (W&B).

Only process 0 writes. metrics.jsonl is appended synchronously (one short line, and tests and
tools read it as soon as the process ends); everything slower (TensorBoard event files via
tensorboardX, matplotlib plots, t-SNE, trackers such as vatt.tracking's W&B run) runs on one
background thread fed by a queue, so the train loop never waits for disk, network or plotting.
`close()` drains the queue and closes the trackers; it is also registered with `atexit` so a run
that never calls it still finishes its plots, event files and tracked run.

It implements vatt.evaluation.base.Writer: vatt.experiment builds it and hands it to the train
loop, which hands it to the evaluators in their context; evaluators describe figures
(`plot("similarity", ...)`) and this module, which sits above them, draws them with vatt.plots.
"""

from __future__ import annotations

import atexit
import json
import math
import queue
import threading
import time
import traceback
from typing import Any, Callable, Sequence

import jax
import numpy as np

from vatt import event_files, paths
from vatt import plots as plots_lib
from vatt.tracking import Tracker


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
    After a write with evaluation metrics (keys not under `train/`) and on `close()` (when
    records came after that), the training curves are re-plotted to
    <workdir>/plots/training_curves.png.

    Args:
      workdir: run directory, local or a URL such as gs://bucket/run (vatt.paths: there each
        metrics.jsonl append rewrites the object, event files are uploaded at each flush).
      tensorboard: write TensorBoard event files (tensorboardX; no TensorFlow). Scalar tags are
        the metric names exactly as in metrics.jsonl ("zeroshot/t2v/R@1").
      plots: write PNG plots (matplotlib, Agg backend).
      trackers: experiment trackers (vatt.tracking, e.g. a W&B run) that get every numeric
        metric under the same name and step, from the background thread; closed by `close()`.
    """

    def __init__(self, workdir: str, tensorboard: bool = True, plots: bool = True,
                 trackers: Sequence[Tracker] = ()):
        self.workdir = paths.resolve(workdir)  # a URL (gs://bucket/run) stays one (vatt.paths)
        self.path = paths.join(self.workdir, "metrics.jsonl")
        self.plots_dir = paths.join(self.workdir, "plots")
        self.tensorboard_dir = paths.join(self.workdir, "tensorboard")
        self._metrics_file = paths.TextAppender(self.path)
        self.enabled = jax.process_index() == 0
        self.tensorboard = tensorboard
        self.plots = plots
        self.trackers = list(trackers) if self.enabled else []
        self._tb = None  # tensorboardX.SummaryWriter, created on the background thread
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Whether the last queued curves plot has every record of metrics.jsonl: close() redraws
        # only when something was logged since (a run that ends with its final evaluation
        # already drew them; each draw costs about a second).
        self._curves_current = False
        self.errors: list[str] = []
        if self.enabled:
            paths.makedirs(self.workdir)
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
            event_files.register(self.tensorboard_dir)  # a gs:// logdir through etils.epath
            self._tb = SummaryWriter(logdir=self.tensorboard_dir, flush_secs=30)
        return self._tb

    # ------------------------------------------------------------------ public API
    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in metrics.items()})
        self._metrics_file.append(json.dumps(record) + "\n")
        self._curves_current = False
        scalars = {k: float(v) for k, v in record.items()
                   if k not in ("step", "time") and isinstance(v, (int, float))}
        if self.tensorboard and scalars:
            def to_tensorboard(step=int(step), wall=record["time"]):
                # A Summary proto of our own: tensorboardX's add_scalar rewrites tags to TF op
                # names ("R@1" -> "R_1"); the tag must be the name users read in metrics.jsonl.
                from tensorboardX.proto.summary_pb2 import Summary
                summary = Summary(value=[Summary.Value(tag=k, simple_value=v)
                                         for k, v in scalars.items()])
                self._summary_writer()._get_file_writer().add_summary(summary, step, wall)
            self.submit(to_tensorboard)
        for tracker in self.trackers if scalars else ():
            self.submit(lambda t=tracker, step=int(step): t.log(step, scalars))
        if self.plots and any(_is_eval_key(k) for k in scalars):
            self._submit_curves()

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

    def plot(self, kind: str, *args: Any, **kwargs: Any) -> None:
        """Draws vatt.plots.plot_<kind>(*args, **kwargs) on the background thread (process 0;
        only when the writer was made with plots=True)."""
        fn = getattr(plots_lib, f"plot_{kind}", None)
        if fn is None:
            raise ValueError(f"plot kind {kind!r} is not known: vatt.plots has no plot_{kind}")
        if self.plots:
            self.submit(lambda: fn(*args, **kwargs))

    def write_text(self, tag: str, text: str, step: int = 0) -> None:
        """Adds text (e.g. the run's config) to TensorBoard."""
        if self.enabled and self.tensorboard:
            self.submit(lambda: self._summary_writer().add_text(tag, text, step))

    def _submit_curves(self) -> None:
        self._curves_current = True
        self.submit(self._plot_training_curves)

    def _plot_training_curves(self) -> None:
        if paths.exists(self.path):
            plots_lib.plot_training_curves(self.path, paths.join(self.plots_dir,
                                                                 "training_curves.png"))

    def flush(self) -> None:
        """Waits until every queued event and plot is written."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Plots the training curves (unless the last plot already has every record), drains
        the queue and closes the event file. Idempotent."""
        if not self.enabled or self._closed:
            return
        if self.plots and not self._curves_current:
            self._submit_curves()
        self.flush()
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        for tracker in self.trackers:
            tracker.close()  # after the queue is drained: every metric has been logged
        self.trackers = []
        try:
            atexit.unregister(self.close)
        except Exception:  # interpreter shutting down
            pass
