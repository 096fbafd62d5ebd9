"""A profiler trace of a window of train steps (config.profile_steps steps from
config.profile_start_step), written where TensorBoard's profile plugin and XProf look:
<workdir>/profile/plugins/profile/<run>/<host>.xplane.pb (one file per process).

  tensorboard --logdir=<workdir>/profile     # Profile tab; or xprof --logdir=<workdir>/profile

Each step runs under jax.profiler.StepTraceAnnotation("train", step_num=step), so the trace
viewer and XProf's step-time breakdown see step boundaries. The window starts after step 1's
compilation by default (profile_start_step >= 2), and the trace stops only after the window's
last step has finished on the devices (block_until_ready), so it holds whole steps.
A gs:// workdir: the profiler writes locally (it has no Cloud Storage client of its own here)
and the files are uploaded when the window closes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any

import jax

from vatt import paths

PROFILE_DIR = "profile"


class StepProfiler:
    """start_step, num_steps: the window (num_steps 0: never traces)."""

    def __init__(self, workdir: str, start_step: int, num_steps: int, is_main: bool):
        self.start, self.stop = start_step, start_step + num_steps - 1
        self.enabled = num_steps > 0
        self.target = paths.join(workdir, PROFILE_DIR)
        self.local = (tempfile.mkdtemp(prefix="vatt-profile-") if paths.is_remote(workdir)
                      else self.target)
        self.is_main = is_main
        self.active = False

    def annotate(self, step: int) -> contextlib.AbstractContextManager:
        """The context of step `step`'s dispatch: starts the trace at the window's first step
        and marks the step inside the window."""
        if not self.enabled or not (self.start <= step <= self.stop):
            return contextlib.nullcontext()
        if not self.active:
            os.makedirs(self.local, exist_ok=True)
            jax.profiler.start_trace(self.local)
            self.active = True
        return jax.profiler.StepTraceAnnotation("train", step_num=step)

    def after_step(self, step: int, outputs: Any) -> None:
        """Ends the trace after the window's last step, once the devices have finished it."""
        if self.active and step >= self.stop:
            jax.block_until_ready(outputs)
            self.close()

    def close(self) -> None:
        if not self.active:
            return
        jax.profiler.stop_trace()
        self.active = False
        if self.local != self.target:
            for root, _, files in os.walk(self.local):
                for name in files:
                    src = os.path.join(root, name)
                    rel = os.path.relpath(src, self.local)
                    with open(src, "rb") as f:
                        paths.write_bytes(paths.join(self.target, *rel.split(os.sep)), f.read())
            shutil.rmtree(self.local, ignore_errors=True)
        if self.is_main:
            print(f"Profiler trace of steps {self.start}..{self.stop} written to {self.target} "
                  f"(tensorboard --logdir={self.target}, Profile tab).", flush=True)
