"""VATT contrastive pretraining: configs/pretrain.py:<variant>[,runlocal] (or pretrain:<variant>).

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
Option `runlocal` (e.g. pretrain:tiny,runlocal or pretrain:bbs,runlocal): the same code path at
CPU-test scale (1-layer backbones, small batch and inputs, few steps), what the tests, the
notebooks and smoke runs use.
Any key can be overridden: --config.total_steps=1000 --config.model.video.droptoken_keep=0.75
"""

import ml_collections

from vatt import config_files
from vatt.models.configs import model_config

_common = config_files.sibling(__file__, "_common.py")

PAPER_VARIANTS = ("bbs", "mbs", "lbs", "ma_medium")
VARIANTS = ("tiny", "tiny_howto100m") + PAPER_VARIANTS


def _pretrain_keys(variant: str) -> ml_collections.ConfigDict:
    config = _common.run_keys("pretrain", variant)
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
        "cka_space": "pooled",   # the CKA loss's inputs: pooled backbone outputs | common (FAC embeddings)
    })
    return config


def _tiny() -> ml_collections.ConfigDict:
    config = _pretrain_keys("tiny")
    config.total_steps, config.batch_size = 600, 64
    config.log_every_steps, config.checkpoint_every_steps = 50, 200
    config.data = _common.synthetic_data(8, 32, 8000, max_words=12, num_captions=2,
                                         no_text_fraction=0.1)
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
    config.optimizer = _common.optimizer("adam", 1e-3, 1e-5, 50, grad_clip_norm=1.0)
    config.eval = _common.synthetic_eval(num_clips=256, batch_size=64)
    return config


def _tiny_howto100m() -> ml_collections.ConfigDict:
    """The tiny model on a HowTo100M-layout dataset built with the builders' `tiny` config."""
    config = _tiny()
    config.variant = "tiny_howto100m"
    config.total_steps, config.batch_size = 100, 8
    config.log_every_steps, config.checkpoint_every_steps = 10, 50
    data = _common.pipeline_config()
    data.name = "howto100m/tiny"   # 5 fps, 32 px, 8 kHz (python -m vatt.data.build ... --config=tiny)
    data.data_dir = ""             # required: the --data_dir given to python -m vatt.data.build
    data.num_frames = 8
    data.target_fps = 5.0
    data.frame_size = 32
    data.audio_samples = 12_800    # 8 frames at 5 fps = 1.6 s of 8 kHz audio, synced
    data.num_captions = 2
    data.max_text_len = 12
    config.data = data
    config.model.audio.input_samples = 12_800
    config.model.text.vocab_size = 2**16   # ids come from the vocabulary built with the data
    return config


def _paper(variant: str) -> ml_collections.ConfigDict:
    config = _pretrain_keys(variant)
    config.total_steps, config.batch_size = 500_000, 2048
    config.log_every_steps, config.checkpoint_every_steps = 100, 5000
    # Paper shapes: 32 frames of 224 px at 10 fps, 3.2 s of 48 kHz audio, K = 5 captions.
    # Real pretraining reads HowTo100M + AudioSet (configs select them via config.data).
    config.data = _common.synthetic_data(32, 224, 48000, max_words=16, num_captions=5,
                                         no_text_fraction=0.0)
    config.model = model_config(variant)
    # Warmup: paper 10k steps; official code 5k.
    config.optimizer = _common.optimizer("adam", 1e-4, 5e-5, 10_000)
    config.eval = _common.synthetic_eval(num_clips=256, batch_size=256)
    return config


def _runlocal(config: ml_collections.ConfigDict) -> None:
    """CPU-test scale, same code path: 1-layer backbones, small batch, few steps, small eval."""
    model = config.model
    for group in ("video", "audio", "text", "shared"):
        if group in model:
            model[group].num_layers = 1
    if config.variant in PAPER_VARIANTS:
        # Paper widths, small inputs: 8 frames of 64 px (2x4x4 voxels), 0.8 s of 48 kHz audio.
        config.data.num_frames, config.data.frame_size = 8, 64
        model.video.input_size = (8, 64, 64)
        model.audio.input_samples = 38_400
        config.batch_size, config.total_steps = 2, 2
        config.eval.num_clips, config.eval.batch_size = 4, 2
    else:
        config.batch_size = 16 if config.data.name == "synthetic" else 4
        config.total_steps = 300
        config.eval.num_clips, config.eval.batch_size = 64, 16
        config.eval.embedding_map_clips = 64
    config.log_every_steps = 10
    config.checkpoint_every_steps = 0
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, 20, config.total_steps)


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    parts, opts = config_files.options(arg)
    variant = parts[0] if parts else "tiny"
    if variant == "tiny":
        config = _tiny()
    elif variant == "tiny_howto100m":
        config = _tiny_howto100m()
    elif variant in PAPER_VARIANTS:
        config = _paper(variant)
    else:
        raise ValueError(f"configs/pretrain.py:{variant} is not a variant; use one of {VARIANTS}")
    if "runlocal" in opts:
        _runlocal(config)
    return config
