"""VATT contrastive pretraining.

Variants (the argument after the colon):
  tiny       the embedded synthetic world on 2 CPU cores, a few minutes:
               python -m vatt.main --config=configs/pretrain.py:tiny --workdir=/tmp/vatt_tiny
  tiny_howto100m
             the tiny model on a HowTo100M-layout folder built with the builders' tiny config:
               python -m vatt.data.build howto100m/tiny --manual_dir=<videos+caption.json> --data_dir=/tmp/tfds
               python -m vatt.main --config=configs/pretrain.py:tiny_howto100m --workdir=/tmp/w \
                   --config.data.data_dir=/tmp/tfds
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


def _synthetic_data(num_frames: int, frame_size: int, audio_rate: int, max_words: int,
                    num_captions: int, no_text_fraction: float) -> ml_collections.ConfigDict:
    """The embedded synthetic world (vatt/data/synthetic.py), clips at 10 fps."""
    return ml_collections.ConfigDict({
        "name": "synthetic", "num_frames": num_frames, "frame_size": frame_size, "fps": 10.0,
        "audio_rate": audio_rate, "max_words": max_words, "num_captions": num_captions,
        "no_text_fraction": no_text_fraction})


def _run_schedule(config: ml_collections.ConfigDict, total_steps: int, batch_size: int,
                  log_every: int, checkpoint_every: int) -> None:
    config.total_steps = total_steps
    config.batch_size = batch_size
    config.log_every_steps = log_every
    config.eval_every_steps = 0
    config.checkpoint_every_steps = checkpoint_every


def _common(variant: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "pretrain"
    config.variant = variant
    config.seed = 0
    # data: devices on the data axis (-1: all). fsdp: shard parameters and optimizer state
    # over the data axis (for the large variants) instead of replicating them.
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": False})
    # A non-finite loss or gradient: "skip" the update and count it, or "stop" the run keeping
    # the last good checkpoint.
    config.nonfinite = "skip"
    config.debug_nan_at_step = -1  # fault injection for tests: this step's loss becomes NaN
    config.checkpoints_to_keep = 3
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
    _run_schedule(config, total_steps=600, batch_size=64, log_every=50, checkpoint_every=200)
    config.data = _synthetic_data(8, 32, 8000, max_words=12, num_captions=2, no_text_fraction=0.1)
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


def _tiny_howto100m() -> ml_collections.ConfigDict:
    """The tiny model on a HowTo100M-layout dataset built with the builders' `tiny` config."""
    from vatt.data import pipeline
    config = _tiny()
    config.variant = "tiny_howto100m"
    config.total_steps = 100
    config.batch_size = 8
    config.log_every_steps = 10
    config.checkpoint_every_steps = 50
    data = pipeline.default_config()
    data.name = "howto100m/tiny"   # 5 fps, 32 px, 8 kHz (python -m vatt.data.build ... --config=tiny)
    data.data_dir = ""             # required: the --data_dir given to python -m vatt.data.build
    data.num_frames = 8
    data.target_fps = 5.0
    data.frame_size = 32
    data.audio_samples = 12_800    # 8 frames at 5 fps = 1.6 s of 8 kHz audio, synced
    data.num_captions = 2
    data.max_text_len = 12
    data.shuffle_buffer = 64
    config.data = data
    config.model.audio.input_samples = 12_800
    config.model.text.vocab_size = 2**16   # ids come from the vocabulary built with the data
    return config


def _paper(variant: str) -> ml_collections.ConfigDict:
    config = _common(variant)
    _run_schedule(config, total_steps=500_000, batch_size=2048, log_every=100,
                  checkpoint_every=5000)
    # Paper shapes: 32 frames of 224 px at 10 fps, 3.2 s of 48 kHz audio, K = 5 captions.
    # Real pretraining reads HowTo100M + AudioSet (configs select them via config.data).
    config.data = _synthetic_data(32, 224, 48000, max_words=16, num_captions=5,
                                  no_text_fraction=0.0)
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
    if variant == "tiny_howto100m":
        return _tiny_howto100m()
    if variant in PAPER_VARIANTS:
        return _paper(variant)
    raise ValueError(f"configs/pretrain.py:{variant} is not a variant; use tiny or one of {PAPER_VARIANTS}")
