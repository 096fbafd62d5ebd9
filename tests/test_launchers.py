"""The launchers run what they say. launch/slurm.sbatch and launch/tpu_pod.sh run against
stand-in `srun` / `gcloud` commands (small scripts first on PATH that record their argv), and
the command strings they send to the TPU hosts run in bash against stand-ins too, as a host's
shell would run them. launch/local.py: its output prefixes and exit statuses (its environment,
fail-fast and a real 2-process run are in test_multiprocess_losses.py)."""

import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from subprocess_utils import REPO_ROOT

SLURM = os.path.join(REPO_ROOT, "launch", "slurm.sbatch")
TPU_POD = os.path.join(REPO_ROOT, "launch", "tpu_pod.sh")
LOCAL = os.path.join(REPO_ROOT, "launch", "local.py")
# What a stand-in records of each call: its argv, working directory and the variables a
# launcher sets for the program it starts.
RECORDER = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, sys
    with open(os.environ["LAUNCH_RECORD"], "a") as f:
        f.write(json.dumps({{"cmd": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
                            "cwd": os.getcwd(),
                            "env": {{k: os.environ.get(k) for k in ("TF_FORCE_GPU_ALLOW_GROWTH",
                                                                  "XLA_PYTHON_CLIENT_MEM_FRACTION")}}}})
                + "\\n")
    """)


def _stand_ins(folder, *names) -> str:
    """Writes an executable recorder under each name in `folder`; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(RECORDER)
        os.chmod(path, 0o755)
    return str(folder)


class Launch:
    """Runs a launcher with stand-ins first on PATH; `calls` are what they recorded."""

    def __init__(self, tmp_path, *names):
        self.tmp_path = tmp_path
        self.record = tmp_path / "record.jsonl"
        self.env = dict(os.environ, LAUNCH_RECORD=str(self.record),
                        PATH=_stand_ins(tmp_path / "bin", *names) + os.pathsep + os.environ["PATH"])

    def __call__(self, *args, cwd=None, env=None) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", *args], env=env or self.env, cwd=cwd or self.tmp_path,
                              capture_output=True, text=True, timeout=60)

    def calls(self) -> list[dict]:
        if not self.record.exists():
            return []
        calls = [json.loads(line) for line in self.record.read_text().splitlines()]
        self.record.unlink()
        return calls


@pytest.mark.parametrize("script", [SLURM, TPU_POD])
def test_launcher_is_valid_bash(script):
    proc = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.access(script, os.X_OK), f"{script} lost its executable bit (README runs it)"


def _sbatch_options() -> dict[str, str]:
    with open(SLURM) as f:
        lines = [line.split(None, 1)[1].strip() for line in f if line.startswith("#SBATCH ")]
    return dict((line.split("=", 1) + [""])[:2] for line in lines)


def test_slurm_runs_vatt_main_once_per_gpu_with_the_flags_passed_through(tmp_path):
    launch = Launch(tmp_path, "srun")
    extra = ["--config.batch_size=1024", "--config.init_from=/runs/pre train",
             "--config.model.video.patch_size=(4,16,16)"]
    proc = launch(SLURM, "pretrain:mbs", "/shared/runs/mbs", *extra)
    assert proc.returncode == 0, proc.stderr
    (call,) = launch.calls()
    assert call["cmd"] == "srun"
    assert call["argv"] == ["--kill-on-bad-exit=1", "--gpus-per-task=1", "python", "-m",
                            "vatt.main", "--config=pretrain:mbs", "--workdir=/shared/runs/mbs",
                            *extra]
    # TensorFlow (data layer) must not take the GPU memory JAX needs.
    assert call["env"] == {"TF_FORCE_GPU_ALLOW_GROWTH": "true",
                           "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.9"}
    # One task per GPU; preemption: SIGTERM ahead of the kill (vatt checkpoints and exits 0),
    # then the job is requeued and resumes in the same workdir.
    options = _sbatch_options()
    assert options["--ntasks-per-node"] == options["--gpus-per-node"]
    assert "--requeue" in options and options["--signal"].startswith("TERM@")


def test_slurm_without_workdir_says_how_to_call_it(tmp_path):
    launch = Launch(tmp_path, "srun")
    proc = launch(SLURM, "pretrain:mbs")
    assert proc.returncode != 0 and "usage: sbatch launch/slurm.sbatch" in proc.stderr
    assert launch.calls() == []


def _on_host(launch, command: str, home) -> list[dict]:
    """Runs an ssh --command string as a TPU host's shell would, in a home holding the
    checkout folder and stand-ins for ~/venv/bin/{python,pip} and python3; returns their calls."""
    os.makedirs(home / "vatt", exist_ok=True)
    _stand_ins(home / "venv" / "bin", "python", "pip")
    host_path = _stand_ins(home / "host_bin", "python3") + os.pathsep + os.environ["PATH"]
    proc = launch("-c", command, env=dict(launch.env, HOME=str(home), PATH=host_path))
    assert proc.returncode == 0, proc.stderr
    return launch.calls()


def test_tpu_pod_create_setup_run_delete(tmp_path):
    launch = Launch(tmp_path, "gcloud")
    name, zone = "my-tpu", "us-central2-b"
    where = [f"--zone={zone}"]

    assert launch(TPU_POD, "create", name, zone, "v4-64").returncode == 0
    assert [c["argv"] for c in launch.calls()] == [
        ["compute", "tpus", "tpu-vm", "create", name, *where, "--accelerator-type=v4-64",
         "--version=tpu-ubuntu2204-base"]]

    # setup copies this checkout (wherever the launcher is called from) to every host, then
    # installs it there in a venv.
    proc = launch(TPU_POD, "setup", name, zone, cwd="/")
    assert proc.returncode == 0, proc.stderr
    scp, ssh = (c["argv"] for c in launch.calls())
    assert scp == ["compute", "tpus", "tpu-vm", "scp", "--recurse", *where, "--worker=all",
                   REPO_ROOT, f"{name}:~/vatt"]
    assert ssh[:7] == ["compute", "tpus", "tpu-vm", "ssh", name, *where, "--worker=all"]
    assert ssh[7] == "--command" and len(ssh) == 9
    home = tmp_path / "home"
    venv, pip = _on_host(launch, ssh[8], home)
    assert venv["argv"] == ["-m", "venv", f"{home}/venv"]
    assert pip["argv"] == ["install", "-q", "jax[tpu]", "."]
    assert pip["cwd"] == str(home / "vatt")

    # run: vatt.main on every host with the gs:// workdir; extra flags arrive intact even
    # though the hosts' shell splits the command again.
    extra = ["--config.batch_size=1024", "--config.model.video.patch_size=(4,16,16)",
             "--config.init_from=gs://bucket/pre train"]
    proc = launch(TPU_POD, "run", name, zone, "pretrain:mbs", "gs://bucket/runs/mbs", *extra)
    assert proc.returncode == 0, proc.stderr
    (ssh,) = (c["argv"] for c in launch.calls())
    assert ssh[:8] == ["compute", "tpus", "tpu-vm", "ssh", name, *where, "--worker=all",
                       "--command"] and len(ssh) == 9
    (python,) = _on_host(launch, ssh[8], home)
    assert python["argv"] == ["-m", "vatt.main", "--config=pretrain:mbs",
                              "--workdir=gs://bucket/runs/mbs", *extra]
    assert python["cwd"] == str(home / "vatt")
    assert shlex.split(ssh[8])[:3] == ["cd", "~/vatt", "&&"]

    assert launch(TPU_POD, "delete", name, zone).returncode == 0
    assert [c["argv"] for c in launch.calls()] == [
        ["compute", "tpus", "tpu-vm", "delete", name, *where, "--quiet"]]


@pytest.mark.parametrize("args, status, message", [
    (["frobnicate", "my-tpu", "us-central2-b"], 2, "unknown action frobnicate"),
    (["run", "my-tpu", "us-central2-b"], 1, "config, e.g. configs/pretrain.py:mbs"),
    (["run", "my-tpu", "us-central2-b", "pretrain:mbs"], 1, "workdir, e.g. gs://"),
    (["create", "my-tpu"], 1, "zone"),
])
def test_tpu_pod_refuses_bad_calls_before_calling_gcloud(tmp_path, args, status, message):
    launch = Launch(tmp_path, "gcloud")
    proc = launch(TPU_POD, *args)
    assert proc.returncode == status and message in proc.stderr, proc.stderr
    assert launch.calls() == []


# ---------------------------------------------------------------------------- launch/local.py
def _local(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, LOCAL, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def test_local_streams_every_process_with_its_prefix():
    code = "import os; print('id', os.environ['VATT_PROCESS_ID'], os.environ['VATT_NUM_PROCESSES'])"
    proc = _local("--num_processes=3", "--", sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["[p0] id 0 3", "[p1] id 1 3", "[p2] id 2 3"]


def test_local_timeout_stops_everything_with_124():
    proc = _local("--num_processes=2", "--timeout=1", "--", sys.executable, "-c",
                  "import time; time.sleep(60)")
    assert proc.returncode == 124 and "timeout after 1s" in proc.stderr, proc.stderr


def test_local_without_command_is_a_usage_error():
    proc = _local("--num_processes=2")
    assert proc.returncode == 2 and "missing command after --" in proc.stderr
