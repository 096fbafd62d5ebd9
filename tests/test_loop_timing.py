"""The loop's honest timing: each log step reports the time the step waited for its batch
(input-bound vs compute-bound at a glance), and config.profile_steps writes a profiler trace of
a window of steps that TensorBoard's profile plugin / XProf open."""

import glob
import os
import time

import helpers
import pytest
from vatt import config_files
from vatt.metrics_writer import MetricsWriter
from vatt.tasks.pretrain import PretrainTask, SyntheticTrainStream
from vatt.train.loop import train_and_evaluate

SPEC = "pretrain:tiny,runlocal"
PACE_S = 0.6  # the slow stream's seconds per batch: far above the tiny step's ~40 ms


class PacedStream(SyntheticTrainStream):
    """The synthetic stream at most one batch every PACE_S seconds: an input pipeline that
    cannot keep up (as a real decoder behind a fast accelerator)."""

    def __next__(self):
        time.sleep(PACE_S)
        return super().__next__()


class PacedTask(PretrainTask):
    def train_stream(self, start_step, process_index, process_count):
        return PacedStream(self.world, self.config.batch_size, start_step, process_index,
                           process_count)


def _run(task_cls, workdir, **overrides):
    config = config_files.load(SPEC, {"eval.num_clips": 16, "eval.plots": False,
                                      "optimizer.warmup_steps": 1, **overrides})
    writer = MetricsWriter(workdir, tensorboard=False, plots=False)
    try:
        train_and_evaluate(config, workdir, task_cls(config), writer)
    finally:
        writer.close()
    return config


def test_input_wait_shows_an_input_bound_run(tmp_path, capsys):
    workdir = str(tmp_path / "paced")
    _run(PacedTask, workdir, total_steps=12, log_every_steps=3)
    logged = [r for r in helpers.records(workdir) if "train/input_wait_fraction" in r]
    assert [r["step"] for r in logged] == [3, 6, 9, 12]
    # While step 1 compiles, the prefetcher fills its queue (3 batches): steps 2-5 drain it
    # faster than the pace. From then on every batch is waited for, the last interval included.
    for r in logged[2:]:
        # The stream's pace bounds the step time from below, and the loop spent most of it
        # blocked on the next batch: input-bound.
        assert r["train/step_s"] >= 0.9 * PACE_S, r
        assert r["train/input_wait_fraction"] > 0.5, r
        assert r["train/input_wait_s"] / r["train/step_s"] == pytest.approx(
            r["train/input_wait_fraction"], rel=1e-6)
    out = capsys.readouterr().out
    wait_lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert len(wait_lines) == 4 and all("input wait" in line for line in wait_lines)


def test_profile_window_is_traced_and_wait_is_logged(tmp_path, capsys):
    workdir = str(tmp_path / "profiled")
    _run(PretrainTask, workdir, total_steps=6, log_every_steps=3, profile_start_step=3,
         profile_steps=2)
    logged = [r for r in helpers.records(workdir) if "train/input_wait_fraction" in r]
    assert [r["step"] for r in logged] == [3, 6]
    assert all(0.0 <= r["train/input_wait_fraction"] <= 1.0 for r in logged)
    traces = glob.glob(os.path.join(workdir, "profile", "plugins", "profile", "*",
                                    "*.xplane.pb"))
    assert len(traces) == 1, traces
    with open(traces[0], "rb") as f:
        trace = f.read()
    # The trace holds the window's steps, marked as train steps 3 and 4 (step 5 is outside).
    assert len(trace) > 10_000 and b"train" in trace
    assert "Profiler trace of steps 3..4 written to" in capsys.readouterr().out
