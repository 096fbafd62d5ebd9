"""Fine-tuning: backbone loading from a pretraining checkpoint of another input size (position
tables interpolated, heads kept), and end-to-end runs of the one train loop on tiny real-format
UCF101 (video, multi-clip x multi-crop test) and ESC-50 (audio)."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def tiny_model() -> ml_collections.ConfigDict:
    from vatt.models import model_config
    m = model_config("tiny")  # 1 layer, d 32; video 8x32x32 (4x8x8 voxels), audio 3200 (64)
    m.dropout_rate = 0.0
    return m


def write_pretrain_checkpoint(workdir: str, model_cfg: ml_collections.ConfigDict, seed: int = 3) -> None:
    """A pretraining-format checkpoint (TrainState at <workdir>/checkpoints/1/state)."""
    from vatt.models import build_model
    from vatt.train.checkpointing import Checkpointer
    from vatt.train.state import TrainState, split_model
    _, params, rest = split_model(build_model(model_cfg, rngs=nnx.Rngs(params=seed)))
    state = TrainState(step=jnp.ones((), jnp.int32), params=params, rest=rest, opt_state=(),
                       rng=jax.random.key_data(jax.random.key(0)), skipped=jnp.zeros((), jnp.int32))
    ckpt = Checkpointer(workdir, 1)
    ckpt.save(1, state, {"step": 1})
    ckpt.close()


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("pretrain"))
    write_pretrain_checkpoint(wd, tiny_model())
    return wd


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from vatt.testing import media as F
    from vatt.data.build import build
    root = tmp_path_factory.mktemp("ft_data")
    dd = str(root / "tfds")
    F.write_ucf101(str(root / "ucf101"))
    build("ucf101_local", manual_dir=str(root / "ucf101"), data_dir=dd, config="tiny")
    F.write_esc50(str(root / "esc50"))
    build("esc50", manual_dir=str(root / "esc50"), data_dir=dd, config="tiny")
    return dd


def test_backbone_loads_with_other_input_size(pretrain_dir):
    from vatt.tasks.finetune import FinetuneTask
    from vatt.train import pretrained
    from vatt.train.state import split_model
    config = load_config("finetune", "synthetic")
    config.model = tiny_model()
    config.model.video.input_size = (8, 48, 48)  # pretrained 8x32x32: 4x4 spatial tables -> 6x6
    config.init_from = pretrain_dir
    task = FinetuneTask(config)
    _, params, rest = split_model(task.build_model(nnx.Rngs(params=9, dropout=1)))
    new_params, new_rest = task.load_pretrained(params, rest)
    src = pretrained.load_checkpoint_tree(pretrain_dir)
    p = new_params.to_pure_dict()
    tok = p["backbone"]["tokenizer"]
    assert tok["vertical_pos"].shape == (6, 32) and tok["temporal_pos"].shape == (2, 32)
    np.testing.assert_allclose(tok["temporal_pos"], src["video_backbone/tokenizer/temporal_pos"])
    np.testing.assert_allclose(tok["vertical_pos"][0], src["video_backbone/tokenizer/vertical_pos"][0],
                               rtol=0.3, atol=0.05)  # linear resize keeps the table's shape
    np.testing.assert_allclose(tok["voxel_proj"]["kernel"], src["video_backbone/tokenizer/voxel_proj/kernel"])
    enc = pretrained._flatten(p["backbone"]["encoder"])
    assert enc and all(np.array_equal(v, src[f"video_backbone/encoder/{k}"]) for k, v in enc.items())
    assert np.all(p["head"]["kernel"] == 0)  # the new head keeps its initialisation
    # The interpolated model runs at its own input size.
    model = task.build_model(nnx.Rngs(params=9, dropout=1))
    nnx.update(model, new_params, new_rest)
    assert model(jnp.zeros((1, 8, 48, 48, 3))).shape == (1, task.num_classes)
    # A checkpoint of a mismatching width is refused with a clear message.
    bad = tiny_model()
    bad.video.d_model = 48
    config.model = bad
    _, bp, _ = split_model(FinetuneTask(config).build_model(nnx.Rngs(params=0, dropout=1)))
    with pytest.raises(ValueError, match="only position tables"):
        pretrained.copy_matching(bp, pretrained.load_checkpoint_tree(pretrain_dir),
                                 pretrained.backbone_path_map("video"))


def _last_metrics(workdir: str) -> dict:
    out: dict = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            out.update(json.loads(line))
    return out


def test_finetune_ucf101_multiview(data_dir, pretrain_dir, tmp_path):
    from vatt.train.loop import train_and_evaluate
    config = load_config("finetune", "ucf101")
    config.model = tiny_model()
    config.model.video.input_size = (4, 16, 16)  # pretrained at 8x32x32: tables interpolated
    d = config.data
    d.name, d.data_dir = "ucf101_local/tiny", data_dir
    d.num_frames, d.target_fps, d.frame_size, d.shuffle_buffer = 4, 5.0, 16, 8
    d.eval_num_clips, d.eval_num_crops = 2, 3
    config.total_steps, config.batch_size, config.log_every_steps = 2, 4, 1
    config.optimizer.warmup_steps = 1
    config.eval.batch_size = 4
    config.init_from = pretrain_dir
    metrics = train_and_evaluate(config, str(tmp_path))
    for key in ("finetune/top1", "finetune/top5", "finetune/test1/top1", "finetune/test1/top5"):
        assert key in metrics and 0.0 <= metrics[key] <= 100.0
    assert metrics["finetune/test1/num_examples"] == 3.0  # one video per class in test split 1
    logged = _last_metrics(str(tmp_path))
    assert "finetune/top1" in logged and "train/top1" in logged


def test_finetune_esc50_audio(data_dir, tmp_path):
    from vatt.evaluation.classification import average_over_splits
    from vatt.train.loop import train_and_evaluate
    config = load_config("finetune", "esc50")
    config.model = tiny_model()
    d = config.data
    d.name, d.data_dir, d.shuffle_buffer = "esc50/tiny", data_dir, 8
    d.num_frames, d.target_fps, d.audio_rate = 4, 10.0, 8000   # 0.4 s windows of 8 kHz = 3200
    d.eval_num_clips = 2
    config.total_steps, config.batch_size, config.log_every_steps = 2, 4, 1
    config.optimizer.warmup_steps = 1
    config.eval.batch_size = 4
    metrics = train_and_evaluate(config, str(tmp_path))  # no init_from: random-init baseline
    assert {"finetune/top1", "finetune/top5", "finetune/fold1/top1"} <= set(metrics)
    avg = average_over_splits([str(tmp_path), str(tmp_path)])
    assert avg["finetune/top1_mean_over_splits"] == pytest.approx(metrics["finetune/top1"])
