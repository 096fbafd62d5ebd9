"""Shared pieces of the downstream configs (finetune / linear_probe / zeroshot); not a config."""

import importlib.util
import os

import ml_collections

from vatt.data import pipeline
from vatt.models.configs import model_config

_PRETRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrain.py")


def pretrain_config(variant: str) -> ml_collections.ConfigDict:
    """configs/pretrain.py:<variant> (the model and synthetic world must match the checkpoint)."""
    spec = importlib.util.spec_from_file_location("vatt_pretrain_config", _PRETRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def base(task: str, arg: str, default_variant: str) -> tuple[ml_collections.ConfigDict, str, str]:
    """Common keys; `arg` is "<dataset>[,<pretraining variant>]". Returns (config, dataset, variant)."""
    dataset, _, variant = (arg or "synthetic").partition(",")
    variant = variant or ("tiny" if dataset == "synthetic" else default_variant)
    pre = pretrain_config(variant)
    config = ml_collections.ConfigDict()
    config.task = task
    config.dataset = dataset
    config.variant = variant
    config.seed = 0
    config.mesh = ml_collections.ConfigDict({"data": -1})
    config.init_from = ""  # pretraining workdir / checkpoint; "" = random init (the baseline)
    config.model = pre.model
    config.log_every_steps = 50
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 0
    return config, dataset, variant


def synthetic_data(variant: str) -> ml_collections.ConfigDict:
    return pretrain_config(variant).data


def real_data(name: str, split: str, modalities: str, *, num_frames: int = 32,
              frame_size: int = 224, audio_rate: int = 48000) -> ml_collections.ConfigDict:
    """A vatt.data.pipeline config. `fps`, `audio_rate` and `max_words` mirror the pipeline's keys
    for the start-up shape checks (vatt.config_validation reads them)."""
    c = pipeline.default_config()
    c.name, c.split, c.modalities = name, split, modalities
    c.num_frames, c.frame_size, c.target_fps = num_frames, frame_size, 10.0
    c.fps = c.get_ref("target_fps")
    c.audio_rate = audio_rate  # stored sample rate of the built dataset (default builder: 48 kHz)
    c.max_words = c.get_ref("max_text_len")
    return c


def evaluate_only(config: ml_collections.ConfigDict) -> None:
    """Schedule of an evaluate-only run (linear probe, zero-shot): one no-op step (see
    vatt.tasks.linear_probe.EvaluateTask), then the evaluators."""
    config.total_steps = 1
    config.batch_size = 8
    config.log_every_steps = 1
    config.optimizer = ml_collections.ConfigDict({
        "name": "sgd", "learning_rate": 1e-9, "end_learning_rate": 0.0, "warmup_steps": 0})
