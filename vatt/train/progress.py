"""The console progress line of the train loop: step, loss, clips/s and ETA (process 0)."""

from __future__ import annotations

import time


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
