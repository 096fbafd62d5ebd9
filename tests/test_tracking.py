"""Experiment tracking: TensorBoard scalar tags are the metric names of metrics.jsonl, and the
optional W&B run (real wandb, offline: no network, no login) gets the same names and steps and
is continued, under the same id, by a run restarted in the same workdir."""

import glob
import json
import os
import struct
import sys
import time
import zlib

import pytest

from helpers import config
from vatt import tracking
from vatt.config_validation import ConfigError, validate
from vatt.metrics_writer import MetricsWriter

R1 = "zeroshot/t2v/R@1"


def _tensorboard_scalars(logdir) -> dict[tuple[str, int], float]:
    """{(tag, step): value} read with TensorFlow's own event reader (what TensorBoard reads)."""
    import tensorflow as tf
    out = {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out[(value.tag, event.step)] = value.simple_value
    return out


def test_tensorboard_scalar_tags_are_the_metric_names(tmp_path):
    writer = MetricsWriter(str(tmp_path), plots=False)
    writer.write(1, {"train/loss": 2.5})
    writer.write(3, {R1: 12.5, "zeroshot/t2v/MedR": 4.0, "cka/video-text": 0.25})
    writer.close()
    scalars = _tensorboard_scalars(str(tmp_path / "tensorboard"))
    assert scalars == {("train/loss", 1): 2.5, (R1, 3): 12.5, ("zeroshot/t2v/MedR", 3): 4.0,
                       ("cka/video-text", 3): 0.25}
    assert not writer.errors


# ---------------------------------------------------------------------------- W&B, offline
# A .wandb file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version 0), then
# 32 KiB blocks of records, each with a 7-byte header (CRC-32 of type byte + data, length, type:
# 1 full, 2 first, 3 middle, 4 last) holding a serialized wandb_internal_pb2.Record. wandb no
# longer ships a Python reader, so the test reads it here (checking every CRC).
_BLOCK = 32768


def _wandb_records(path: str) -> list:
    from wandb.proto import wandb_internal_pb2
    with open(path, "rb") as f:
        data = f.read()
    assert data[:7] == b":W&B\xe1\xbe\x00", data[:7]
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        if pos + 7 + length > len(data):  # the writer is still at it
            break
        body = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(bytes([kind]) + body) == crc, f"bad CRC at byte {pos} of {path}"
        pending += body
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _offline_run(run_dir: str, timeout: float = 60.0) -> dict:
    """What one offline run directory holds: run id, resume flag, config and history rows.

    wandb.finish() returns before wandb's service process has written the run's last records
    (it finishes writing on its own, even after our process exits): wait for the exit record."""
    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    deadline = time.time() + timeout
    while True:
        records = _wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        assert time.time() < deadline, f"{path} has no exit record after {timeout:.0f} s"
        time.sleep(0.05)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            history.setdefault(r.history.step.num, {}).update(
                {k: v for k, v in row.items() if not k.startswith("_")})
    return {"id": run.run_id, "project": run.project, "resume": run.resume,
            "config": {u.key: json.loads(u.value_json) for u in run.config.update},
            "history": history}


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """wandb in offline mode with every file it writes under tmp_path (nothing in $HOME)."""
    pytest.importorskip("wandb")
    home = tmp_path / "wandb_home"
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")  # no system-metrics sampler
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def _tracked_config():
    c = config("pretrain:tiny,runlocal", tracking__wandb=True, tracking__wandb_mode="offline",
               tracking__wandb_project="vatt-test")
    validate(c, num_devices=1)
    return c


def test_wandb_offline_run_gets_the_metrics_and_a_resumed_run_continues_it(offline_wandb):
    workdir = str(offline_wandb / "run")
    c = _tracked_config()
    assert tracking.from_config(c, workdir, process_index=1) is None  # process 0 only
    assert tracking.from_config(config("pretrain:tiny,runlocal"), workdir, 0) is None  # off

    # First run: steps 1-2, then preempted.
    writer = MetricsWriter(workdir, tensorboard=False, plots=False,
                           trackers=[tracking.from_config(c, workdir, 0)])
    writer.write(1, {"train/loss": 3.0})
    writer.write(2, {"train/loss": 2.0, "train/learning_rate": 1e-3})
    writer.write(2, {R1: 12.5})
    writer.close()
    run_id = open(os.path.join(workdir, tracking.RUN_ID_FILE)).read().strip()

    # Restarted in the same workdir: the same id, continued from step 3.
    writer = MetricsWriter(workdir, tensorboard=False, plots=False,
                           trackers=[tracking.from_config(c, workdir, 0)])
    writer.write(3, {"train/loss": 1.0})
    writer.write(4, {R1: 25.0, "zeroshot/num_clips": 64})
    writer.close()
    assert open(os.path.join(workdir, tracking.RUN_ID_FILE)).read().strip() == run_id

    run_dirs = sorted(glob.glob(os.path.join(workdir, "wandb", "offline-run-*")))
    assert len(run_dirs) == 2, run_dirs  # W&B's files sit in the workdir, one folder per start
    first, second = (_offline_run(d) for d in run_dirs)
    assert first["id"] == second["id"] == run_id
    assert first["project"] == "vatt-test" and second["resume"]
    assert first["history"] == {1: {"train/loss": 3.0},
                                2: {"train/loss": 2.0, "train/learning_rate": 1e-3, R1: 12.5}}
    assert second["history"] == {3: {"train/loss": 1.0}, 4: {R1: 25.0, "zeroshot/num_clips": 64}}
    # The run's config is the vatt config.
    assert second["config"]["batch_size"] == c.batch_size
    assert second["config"]["tracking"]["wandb_mode"] == "offline"
    assert second["config"]["model"]["video"]["num_layers"] == c.model.video.num_layers
    # Same numbers, same names as metrics.jsonl.
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        jsonl = [json.loads(line) for line in f]
    assert [r for r in jsonl if R1 in r][-1][R1] == 25.0


def test_missing_wandb_is_refused_in_one_line(monkeypatch):
    c = config("pretrain:tiny,runlocal", tracking__wandb=True)
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    with pytest.raises(ConfigError) as err:
        validate(c, num_devices=1)
    message = str(err.value)
    assert message == ("config.tracking.wandb=True but the wandb package is not installed: "
                       "pip install 'vatt[wandb]' (or pip install wandb), or set "
                       "config.tracking.wandb=False")
    c.tracking.wandb = False
    validate(c, num_devices=1)  # tracking off: wandb is not needed


def test_a_run_logs_its_metrics_to_wandb_and_tensorboard_under_their_names(offline_wandb):
    """experiment.run with tracking on: the loop's and the evaluator's own metric names (the
    20-step program the loop tests share, read back from the compilation cache)."""
    from vatt import experiment
    workdir = str(offline_wandb / "run")
    c = config("pretrain:tiny,runlocal", total_steps=20, log_every_steps=1, eval__plots=False,
               optimizer__warmup_steps=2, tracking__wandb=True, tracking__wandb_mode="offline")
    metrics = experiment.run(c, workdir, plots=False)
    (run_dir,) = glob.glob(os.path.join(workdir, "wandb", "offline-run-*"))
    run = _offline_run(run_dir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        jsonl = [json.loads(line) for line in f]
    expected = {}
    for record in jsonl:
        expected.setdefault(record["step"], {}).update(
            {k: v for k, v in record.items() if k not in ("step", "time")})
    assert run["history"] == expected  # every number of metrics.jsonl, same name and step
    assert run["history"][20][R1] == pytest.approx(metrics[R1])
    scalars = _tensorboard_scalars(os.path.join(workdir, "tensorboard"))
    assert scalars[(R1, 20)] == pytest.approx(metrics[R1])
    assert {tag for tag, _ in scalars} == {k for r in jsonl for k in r if k not in ("step", "time")}
