"""The command line (python -m vatt.main): --dry_run's counts, the out-of-memory pre-check, a
shipped config named from outside the checkout, an unknown config name. Subprocesses only where
the command line itself is under test."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import helpers
from subprocess_utils import child_env


def vatt_main(args, cwd, num_devices=1):
    return subprocess.run([sys.executable, "-m", "vatt.main", *args], env=child_env(num_devices),
                          cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def elsewhere(tmp_path):
    """A working directory outside the checkout, with no configs/ folder."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def test_dry_run_counts_parameters_and_tokens(elsewhere):
    import jax
    from flax import nnx
    from vatt import config_files
    from vatt.models import build_model
    proc = vatt_main(["--config=pretrain:tiny", "--dry_run"], cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    json_lines = [line for line in lines if line.startswith("{")]
    assert len(json_lines) == 1 and lines[-1] == json_lines[0]
    report = json.loads(json_lines[0])
    assert not os.listdir(elsewhere)  # a dry run writes nothing

    # Parameters: those of an independently built model. The text word-embedding table is
    # reported on its own and left out of the total, as in the paper's counts.
    config = config_files.load("pretrain:tiny")
    model = build_model(config.model, rngs=nnx.Rngs(0))
    sizes = {"/".join(str(k.key) for k in path if hasattr(k, "key")): int(np.prod(leaf.shape))
             for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]}
    embedding = config.model.text.vocab_size * config.model.text.embedding_dim
    assert embedding == 256 * 64
    word_embedding = [p for p in sizes if p.startswith("text_") and p.endswith("/embedding")]
    assert len(word_embedding) == 1 and sizes[word_embedding[0]] == embedding
    params = report["params"]
    assert params["text_word_embedding"] == embedding
    assert params["total"] + params["text_word_embedding"] == sum(sizes.values())
    for group, top in (("video", "video_backbone"), ("audio", "audio_backbone"),
                       ("text", "text_backbone"), ("heads", "heads")):
        assert params[group] == sum(n for p, n in sizes.items() if p.startswith(top + "/")
                                    and p not in word_embedding), group
    assert params["video"] + params["audio"] + params["text"] + params["heads"] == params["total"]
    # The table's total row says the same.
    assert re.search(rf"^\[total\]\s+{params['total']:,}$", proc.stdout, re.M)

    # Tokens, from the config's shapes: video (8/4) x (32/8) x (32/8) voxels, audio 6400 / 128
    # samples, text max_len; DropToken keeps half of video and audio.
    v, a = config.model.video, config.model.audio
    assert (v.input_size, v.patch_size, a.input_samples, a.patch_size) == (
        (8, 32, 32), (4, 8, 8), 6400, 128)
    assert report["tokens"] == {"video": 2 * 4 * 4, "audio": 50, "text": 12}
    assert v.droptoken_keep == a.droptoken_keep == 0.5
    assert report["tokens_kept"] == {"video": 16, "audio": 25}
    assert report["gflops_per_clip"] > 0 and report["gflops_per_clip_matmul_only"] > 0


def test_out_of_memory_precheck_stops_before_step_one(tmp_path):
    """A per-device budget the train step cannot fit: the run stops after compiling, before
    any step, naming what it needs and the fixes (the CLI prints it as "error: ..." and
    exits 1)."""
    from vatt import config_files, experiment
    from vatt.train.step import OutOfMemoryError
    config = config_files.load("pretrain:tiny,runlocal", {
        "total_steps": 20, "optimizer.warmup_steps": 2, "memory_limit_gib": 0.0001})
    with pytest.raises(OutOfMemoryError) as err:
        experiment.run(config, str(tmp_path), plots=False, tensorboard=False)
    message = str(err.value)
    match = re.match(r"the train step needs (\d+\.\d+) GiB per device but a device holds "
                     r"0\.00 GiB: ", message)
    assert match and float(match.group(1)) > 0.0001, message
    for fix in ("config.batch_size", "config.model.remat_policy=full", "config.mesh.fsdp=True",
                "config.model.dtype=bfloat16", "more devices"):
        assert fix in message
    assert not os.path.exists(tmp_path / "metrics.jsonl")  # no step ran, nothing was logged
    checkpoints = tmp_path / "checkpoints"
    assert not (checkpoints.exists() and [d for d in os.listdir(checkpoints) if d.isdigit()])


def test_shipped_config_runs_from_outside_the_checkout(elsewhere):
    # The 20-step program of tests/test_train.py (shared through the compilation cache).
    proc = vatt_main(["--config=pretrain:tiny,runlocal", "--workdir=run",
                      "--config.total_steps=20", "--config.optimizer.warmup_steps=2",
                      "--config.log_every_steps=1",
                      "--config.eval.plots=False"], cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    workdir = str(elsewhere / "run")
    losses = helpers.train_values(workdir)
    assert sorted(losses) == list(range(1, 21)) and all(np.isfinite(list(losses.values())))
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["variant"] == "tiny"
    assert helpers.final_metrics(workdir)["zeroshot/num_clips"] == 64
    assert "Zero-shot retrieval on 64 held-out clips" in proc.stdout


def test_unknown_config_name_lists_the_shipped_ones(elsewhere):
    from vatt import config_files
    proc = vatt_main(["--config=nosuch:tiny", "--workdir=run"], cwd=elsewhere)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: config 'nosuch:tiny': no such file")
    shipped = config_files.shipped_names()
    assert {"pretrain", "finetune", "linear_probe", "zeroshot"} <= set(shipped)
    for name in shipped:
        assert f"{name}:..." in errors[0]
    assert not os.listdir(elsewhere)
