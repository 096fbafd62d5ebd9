"""VATT contrastive pretraining: configs/pretrain.py:<variant>[,<option>...] (or pretrain:<...>).

Variants (the argument after the colon):
  tiny       the embedded synthetic world on 2 CPU cores, a few minutes:
               python -m vatt.main --config=configs/pretrain.py:tiny --workdir=/tmp/vatt_tiny
  tiny_howto100m
             the tiny model on a HowTo100M-layout folder built with the builders' tiny config:
               python -m vatt.data.build howto100m/tiny --manual_dir=<videos+caption.json> --data_dir=/tmp/tfds
               python -m vatt.main --config=configs/pretrain.py:tiny_howto100m --workdir=/tmp/w \
                   --config.data.data_dir=/tmp/tfds
  tiny_real  the real-data recipe below at the builders' tiny config (5 fps, 32 px, 8 kHz) and the
             tiny model: HowTo100M + AudioSet, MSR-VTT zero-shot every 50 steps and an ESC-50
             probe every 100 (what CI runs on ../shared/media, tests/test_real_recipe.py):
               for d in howto100m audioset msrvtt esc50; do python -m vatt.data.build $d/tiny \
                   --manual_dir=/data/$d --data_dir=/tmp/tfds; done
               python -m vatt.main --config=pretrain:tiny_real --workdir=/tmp/w --config.data.data_dir=/tmp/tfds \
                   --config.evals.zeroshot_msrvtt.data.data_dir=/tmp/tfds \
                   --config.evals.linear_probe_esc50.data.data_dir=/tmp/tfds
  bbs, mbs, lbs, ma_medium
             the paper's models and pretraining settings (global batch 2048, 500k steps, Adam,
             warmup to 1e-4 then cosine to 5e-5, temperature 0.07, DropToken 50%), on the
             synthetic world unless the option howto100m_audioset is given:
               python -m vatt.main --config=configs/pretrain.py:mbs --workdir=gs://.../mbs
             Check the model before booking a pod:
               python -m vatt.main --config=configs/pretrain.py:mbs --dry_run
Options (after the variant, comma-separated):
  howto100m_audioset  (bbs, mbs, lbs, ma_medium) the paper's real-data recipe: a 1:1 mixture of
             HowTo100M (train) and AudioSet (unbalanced_train), both built with the builders'
             default config (10 fps, short side 256, 48 kHz); 32 frames at 10 fps, 224 px, 3.2 s
             of 48 kHz audio synced, K = 5 neighbouring captions of at most 16 words (AudioSet
             clips have none and count in NCE only); the official code's augmentation (crop
             "vgg": short side to 224, random 224 square; colour jitter 1.0; Gaussian audio noise
             0.01); bfloat16 compute on GPU/TPU (model.dtype="auto"); evaluations during
             training, each on its own schedule: MSR-VTT 1k-A zero-shot retrieval every 10k
             steps, ESC-50 (5 folds) and UCF101 (3 splits) linear probes every 50k and 100k. One
             command per variant; only the data folders are to be set, and an empty one stops
             the run before it starts, naming its key:
               python -m vatt.main --config=pretrain:mbs,howto100m_audioset --workdir=/runs/mbs \
                   --config.data.data_dir=/data/tfds \
                   --config.evals.zeroshot_msrvtt.data.data_dir=/data/tfds \
                   --config.evals.linear_probe_esc50.data.data_dir=/data/tfds \
                   --config.evals.linear_probe_ucf101.data.data_dir=/data/tfds
  paper_augment  (with howto100m_audioset or tiny_real) the paper's augmentation instead of the
             official code's: Inception-style random resized crop (area 0.08-1; data.crop=
             "inception"), no audio noise (data.audio_noise=0). Each is also a key of its own
             (--config.data.crop, --config.data.color_jitter, --config.data.audio_noise).
  runlocal   the same code path at CPU-test scale (1-layer backbones, small batch and inputs, few
             steps), what the tests, the notebooks and smoke runs use (pretrain:tiny,runlocal,
             pretrain:bbs,howto100m_audioset,runlocal).
Any key can be overridden: --config.total_steps=1000 --config.model.video.droptoken_keep=0.75
"""

import ml_collections

from vatt import config_files
from vatt.models.configs import model_config

_common = config_files.sibling(__file__, "_common.py")

PAPER_VARIANTS = ("bbs", "mbs", "lbs", "ma_medium")
VARIANTS = ("tiny", "tiny_howto100m", "tiny_real") + PAPER_VARIANTS
OPTIONS = ("runlocal", "howto100m_audioset", "paper_augment")
# The real-data recipe's evaluations during training: (entry name, every_steps) of the paper
# variants. Zero-shot retrieval on the 1k MSR-VTT clips costs a few train steps, so it runs
# often; the probes embed every clip of every split (UCF101: ~13k clips x 3 splits) and refit.
RECIPE_EVAL_EVERY = {"zeroshot_msrvtt": 10_000, "linear_probe_esc50": 50_000,
                     "linear_probe_ucf101": 100_000}


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


def _recipe_data(build: str, *, num_frames: int, fps: float, frame_size: int,
                 audio_samples: int, audioset_split: str) -> ml_collections.ConfigDict:
    """The pretraining data of the real-data recipe: HowTo100M + AudioSet built with the
    builders' config `build`, read as the official code reads them (module docstring)."""
    data = _common.pipeline_config()
    data.name = f"howto100m/{build}"
    # 1:1, as the official loader's unweighted sample_from_datasets; AudioSet clips carry no
    # caption: their text is masked out of MIL-NCE and they count in NCE only.
    data.mixture = f"howto100m/{build}:train:1,audioset/{build}:{audioset_split}:1"
    data.data_dir = ""  # required: the --data_dir given to python -m vatt.data.build
    data.num_frames, data.target_fps, data.frame_size = num_frames, fps, frame_size
    data.audio_samples = audio_samples  # num_frames / fps seconds, synced with the frames
    data.num_captions = 5   # K: the clip's caption and its 4 nearest neighbours in time
    data.max_text_len = 16
    _official_augmentation(data)
    return data


def _official_augmentation(data: ml_collections.ConfigDict) -> None:
    """The official VATT pretraining augmentation, as far as the pipeline's keys express it:
    VGG-style crop (short side resized to the crop size, a random square of it: the official
    min_resize = crop size; its +-20% aspect jitter has no key), horizontal flip, colour jitter
    on 80% of the clips (brightness 32/255, contrast and saturation x[0.6, 1.4]; the official
    one also shifts hue), Gaussian audio noise of std 0.01 x the clip's peak |amplitude|."""
    data.crop = "vgg"
    data.vgg_resize = (data.frame_size, data.frame_size)
    data.flip = True
    data.color_jitter = 1.0
    data.color_jitter_prob = 0.8
    data.audio_noise = 0.01
    data.audio_noise_scale = "peak"


def _paper_augmentation(data: ml_collections.ConfigDict) -> None:
    """The paper's alternatives: a random crop of area 0.08-1 of the frame resized to the crop
    size (Inception style), and no audio noise (the paper describes none)."""
    data.crop = "inception"
    data.min_area = 0.08
    data.audio_noise = 0.0


def _recipe_evals(model: ml_collections.ConfigDict, data: ml_collections.ConfigDict, *,
                  build: str, every: dict[str, int], ucf101: bool) -> ml_collections.ConfigDict:
    """The recipe's `evals`: MSR-VTT zero-shot retrieval and ESC-50 (and UCF101) linear probes
    of built datasets, read at the pretraining clip shape; their data_dir keys are required."""
    # Loaded here, not at import: those configs load this file for their model.
    zeroshot = config_files.sibling(__file__, "zeroshot.py")
    probe = config_files.sibling(__file__, "linear_probe.py")
    evals = ml_collections.ConfigDict()
    entries = {"zeroshot_msrvtt": zeroshot.zeroshot_entry("msrvtt"),
               "linear_probe_esc50": probe.probe_entry("esc50")}
    if ucf101:
        entries["linear_probe_ucf101"] = probe.probe_entry("ucf101")
    for name, entry in entries.items():
        dataset = name.rsplit("_", 1)[1]
        entry.data.name = f"{entry.data.name.split('/')[0]}/{build}"
        entry.data.data_dir = ""  # required: where that dataset was built
        entry.data.num_frames, entry.data.frame_size = data.num_frames, data.frame_size
        entry.data.target_fps = data.target_fps
        entry.data.audio_samples = data.audio_samples
        entry.data.max_text_len = model.text.max_len
        entry.prefix = f"{entry.kind}/{dataset}"  # e.g. zeroshot/msrvtt/t2v/R@1
        entry.every_steps = every[name]
        evals[name] = entry
    return evals


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


def _howto100m_audioset(config: ml_collections.ConfigDict) -> None:
    """The paper variant `config` on the real-data recipe (option howto100m_audioset)."""
    model = config.model
    config.data = _recipe_data("default", num_frames=32, fps=10.0, frame_size=224,
                               audio_samples=model.audio.input_samples,
                               audioset_split="unbalanced_train")
    # bfloat16 matmuls on GPU / TPU (float32 parameters and losses); float32 on a CPU.
    model.dtype = "auto"
    config.evals = _recipe_evals(model, config.data, build="default", every=RECIPE_EVAL_EVERY,
                                 ucf101=True)


def _tiny_real() -> ml_collections.ConfigDict:
    """The tiny model on the real-data recipe at the builders' `tiny` config."""
    config = _tiny()
    config.variant = "tiny_real"
    config.total_steps, config.batch_size = 200, 8
    config.log_every_steps, config.checkpoint_every_steps = 10, 100
    config.data = _recipe_data("tiny", num_frames=8, fps=5.0, frame_size=32,
                               audio_samples=12_800, audioset_split="balanced_train")
    config.model.audio.input_samples = 12_800  # 8 frames at 5 fps = 1.6 s of 8 kHz audio
    config.model.text.vocab_size = 2**16   # ids come from the vocabulary built with the data
    config.model.text.max_len = config.data.max_text_len
    config.model.dtype = "auto"  # as the recipe: bfloat16 on GPU / TPU, float32 on a CPU
    config.evals = _recipe_evals(config.model, config.data, build="tiny", ucf101=False,
                                 every={"zeroshot_msrvtt": 50, "linear_probe_esc50": 100})
    for entry in config.evals.values():
        entry.batch_size = 8
    config.evals.zeroshot_msrvtt.data.eval_num_clips = 2
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
        if config.data.name != "synthetic":
            config.data.audio_samples = model.audio.input_samples
            config.data.vgg_resize = (64, 64)
            for entry in config.evals.values():
                entry.data.num_frames, entry.data.frame_size = 8, 64
                entry.data.audio_samples = model.audio.input_samples
                entry.batch_size = 2
    else:
        config.batch_size = 16 if config.data.name == "synthetic" else 4
        config.total_steps = 300
        config.eval.num_clips, config.eval.batch_size = 64, 16
        config.eval.embedding_map_clips = 64
    config.log_every_steps = 10
    config.checkpoint_every_steps = 0
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, 20, config.total_steps)


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    parts, opts = config_files.options(arg, known=OPTIONS)
    variant = parts[0] if parts else "tiny"
    if len(parts) > 1:
        raise ValueError(f"configs/pretrain.py:{arg}: {parts[1]!r} is not an option; use any of "
                         f"{OPTIONS} after the variant")
    if variant == "tiny":
        config = _tiny()
    elif variant == "tiny_howto100m":
        config = _tiny_howto100m()
    elif variant == "tiny_real":
        config = _tiny_real()
    elif variant in PAPER_VARIANTS:
        config = _paper(variant)
    else:
        raise ValueError(f"configs/pretrain.py:{variant} is not a variant; use one of {VARIANTS}")
    if "howto100m_audioset" in opts:
        if variant not in PAPER_VARIANTS:
            raise ValueError(f"configs/pretrain.py:{arg}: the option howto100m_audioset is for "
                             f"the paper variants {PAPER_VARIANTS} (tiny_real is its tiny form)")
        _howto100m_audioset(config)
    if "paper_augment" in opts:
        if config.data.name == "synthetic" or not config.data.mixture:
            raise ValueError(f"configs/pretrain.py:{arg}: the option paper_augment is for the "
                             "real-data recipe (howto100m_audioset, tiny_real)")
        _paper_augmentation(config.data)
    if "runlocal" in opts:
        _runlocal(config)
    return config
