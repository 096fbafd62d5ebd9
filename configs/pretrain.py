"""VATT contrastive pretraining.

Variants (the argument after the colon):
  tiny       the embedded synthetic world on 2 CPU cores, a few minutes:
               python -m vatt.main --config=configs/pretrain.py:tiny --workdir=/tmp/vatt_tiny
  bbs, mbs, lbs, ma_medium
             the paper's models and pretraining settings (global batch 2048, 500k steps, Adam,
             warmup to 1e-4 then cosine to 5e-5, temperature 0.07, DropToken 50%):
               python -m vatt.main --config=configs/pretrain.py:mbs --workdir=gs://.../mbs
             Check the model before booking a pod:
               python -m vatt.main --config=configs/pretrain.py:mbs --dry_run
Any key can be overridden: --config.total_steps=1000 --config.model.video.droptoken_keep=0.75
"""

import ml_collections

from vatt.models.configs import model_config

PAPER_VARIANTS = ("bbs", "mbs", "lbs", "ma_medium")


def _common(variant: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "pretrain"
    config.variant = variant
    config.seed = 0
    # data: devices on the data axis (-1: all). fsdp: shard parameters and optimizer state
    # over the data axis (for the large variants) instead of replicating them.
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": False})
    config.skip_nonfinite = True  # skip (and count) an update with a non-finite loss or gradient
    config.loss = ml_collections.ConfigDict({
        "temperature": 0.07,
        "va_weight": 1.0,
        "vt_weight": 1.0,
        "combine": "mean",                # official code: weighted mean; paper: "sum"
        "mil_nce_variant": "asymmetric",  # VATT/MIL-NCE default; "symmetric": official alternative
        "chunked": False,        # True: shard_map form, each device scores its rows vs gathered columns
        "learn_temperature": False,
        "cka_weight": 0.0,       # > 0: add -cka_weight * (CKA(video,text) + CKA(video,audio))
        "cka_kernel": "linear",  # CKA metrics/loss on pooled backbone outputs: linear | rbf
    })
    return config


def _tiny() -> ml_collections.ConfigDict:
    config = _common("tiny")
    config.total_steps = 600
    config.batch_size = 64
    config.log_every_steps = 50
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 200
    config.data = ml_collections.ConfigDict({
        "name": "synthetic", "num_frames": 8, "frame_size": 32, "fps": 10.0,
        "audio_rate": 8000, "max_words": 12, "num_captions": 2, "no_text_fraction": 0.1})
    model = model_config("tiny")
    for modality in (model.video, model.audio, model.text):
        modality.update({"num_layers": 2, "d_model": 128, "mlp_dim": 256, "num_heads": 4})
    model.video.input_size = (8, 32, 32)   # 8 frames of 32x32: 2x4x4 = 32 voxel tokens
    model.video.patch_size = (4, 8, 8)
    model.audio.input_samples = 6400       # 0.8 s at 8 kHz, synced with the 8 frames at 10 fps
    model.audio.patch_size = 128           # 50 waveform tokens
    model.text.vocab_size = 256
    model.text.embedding_dim = 64
    model.text.max_len = 12
    model.head.va_dim = 128
    model.head.vt_dim = 64
    # No dropout at this scale: the synthetic world is unlimited, so there is nothing to
    # regularise, and on CPU generating dropout masks costs more than the matmuls.
    model.dropout_rate = 0.0
    config.model = model
    config.optimizer = ml_collections.ConfigDict({
        "name": "adam", "learning_rate": 1e-3, "end_learning_rate": 1e-5, "warmup_steps": 50,
        "b1": 0.9, "b2": 0.999, "weight_decay": 0.0, "grad_clip_norm": 1.0})
    config.eval = ml_collections.ConfigDict({"num_clips": 256, "batch_size": 64})
    return config


def _paper(variant: str) -> ml_collections.ConfigDict:
    config = _common(variant)
    config.total_steps = 500_000
    config.batch_size = 2048
    config.log_every_steps = 100
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 5000
    config.data = ml_collections.ConfigDict({
        "name": "synthetic", "num_frames": 32, "frame_size": 224, "fps": 10.0,
        "audio_rate": 48000, "max_words": 16, "num_captions": 5, "no_text_fraction": 0.0})
    config.model = model_config(variant)
    config.optimizer = ml_collections.ConfigDict({
        "name": "adam", "learning_rate": 1e-4, "end_learning_rate": 5e-5,
        "warmup_steps": 10_000,  # paper: 10k; official code: 5k
        "b1": 0.9, "b2": 0.999, "weight_decay": 0.0, "grad_clip_norm": 0.0})
    config.eval = ml_collections.ConfigDict({"num_clips": 256, "batch_size": 256})
    return config


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    variant = arg or "tiny"
    if variant == "tiny":
        return _tiny()
    if variant in PAPER_VARIANTS:
        return _paper(variant)
    raise ValueError(f"configs/pretrain.py:{variant} is not a variant; use tiny or one of {PAPER_VARIANTS}")
