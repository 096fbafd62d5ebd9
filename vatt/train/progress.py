"""The console progress line of the train loop: step, loss, clips/s, the share of the time spent
waiting for input, and ETA (process 0)."""

from __future__ import annotations

import dataclasses
import time


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Figures of the steps since the previous report.

    input_wait_s: seconds per step the loop waited for its batch (blocked on the prefetch
      queue: the input pipeline was behind). input_wait_fraction: that over the step time; near
      1 the run is input-bound, near 0 compute-bound (the devices are the bottleneck).
    """
    clips_per_sec: float
    sec_per_step: float
    input_wait_s: float
    input_wait_fraction: float


class ProgressReporter:
    """One console line per log step: step, loss, clips/s, input wait and ETA (process 0)."""

    def __init__(self, total_steps: int, batch_size: int):
        self.total_steps = total_steps
        self.batch_size = batch_size
        self._last_time: float | None = None
        self._last_step = 0
        self._wait = 0.0
        self._excluded = 0.0

    def start(self, step: int) -> None:
        self._last_time, self._last_step = time.perf_counter(), step
        self._wait = self._excluded = 0.0

    def waited(self, seconds: float) -> None:
        """Adds time the loop spent blocked on the next batch."""
        self._wait += seconds

    def exclude(self, seconds: float) -> None:
        """Leaves time that is not a train step (a checkpoint save, an evaluation) out of the
        step time."""
        self._excluded += seconds

    def throughput(self, step: int) -> Throughput:
        """Figures since the previous call (or start)."""
        now = time.perf_counter()
        steps = max(step - self._last_step, 1)
        elapsed = max(now - (self._last_time or now) - self._excluded, 0.0)
        wait, self._wait, self._excluded = self._wait, 0.0, 0.0
        self._last_time, self._last_step = now, step
        sec_per_step = elapsed / steps
        return Throughput(
            clips_per_sec=self.batch_size / sec_per_step if sec_per_step > 0 else 0.0,
            sec_per_step=sec_per_step, input_wait_s=wait / steps,
            input_wait_fraction=min(wait / elapsed, 1.0) if elapsed > 0 else 0.0)

    def line(self, step: int, loss: float, figures: Throughput) -> str:
        eta = format_duration((self.total_steps - step) * figures.sec_per_step)
        return (f"step {step:>6d}/{self.total_steps} | loss {loss:8.4f} | "
                f"{figures.clips_per_sec:8.1f} clips/s | input wait "
                f"{100 * figures.input_wait_fraction:3.0f}% | ETA {eta}")
