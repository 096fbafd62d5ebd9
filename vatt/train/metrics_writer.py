"""metrics.jsonl and the console progress line. Only process 0 writes."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import numpy as np


def _plain(value: Any) -> Any:
    """JSON-safe Python scalar (NaN/inf become strings so the file stays valid JSON)."""
    value = np.asarray(value).item() if not isinstance(value, (str, int, float)) else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsWriter:
    """Appends one JSON object per line to <workdir>/metrics.jsonl.

    Entries are appended across restarts; each carries `step` (and the wall time),
    so a step re-run after a restart is recognisable: the last entry for a step wins.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = jax.process_index() == 0
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in metrics.items()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


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
