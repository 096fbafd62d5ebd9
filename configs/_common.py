"""Pieces shared by the shipped configs; not a config itself.

Every key a vatt module reads is declared here or in the config that uses these pieces, so any
of them can be overridden from the command line (--config.optimizer.eps=1e-7).
"""

import ml_collections

from vatt.data.pipeline_config import default_config as pipeline_config


def run_keys(task: str, variant: str) -> ml_collections.ConfigDict:
    """Keys of every run, whatever the task."""
    config = ml_collections.ConfigDict()
    config.task = task
    config.variant = variant
    config.seed = 0  # initialisation, dropout and DropToken (the synthetic world has its own)
    # data: devices on the data axis (-1: all). fsdp: shard parameters and optimizer state
    # over the data axis (for the large variants) instead of replicating them.
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": False})
    config.total_steps = 0
    config.batch_size = 8
    config.log_every_steps = 50
    config.eval_every_steps = 0       # 0: evaluate only at the end
    config.checkpoint_every_steps = 0
    config.checkpoints_to_keep = 3
    # PNGs in <workdir>/plots: the training curves (redrawn after each evaluation) and every
    # evaluator's figures. False: none at all, and matplotlib is never imported (a headless
    # sweep, or a test that reads only metrics); eval.plots turns off the synthetic zero-shot
    # evaluation's figures alone.
    config.plots = True
    # A non-finite loss or gradient: "skip" the update and count it, or "stop" the run keeping
    # the last good checkpoint.
    config.nonfinite = "skip"
    config.debug_nan_at_step = -1     # fault injection for tests: this step's loss becomes NaN
    config.memory_limit_gib = 0.0     # per-device budget of the compiled step (0: the device's)
    # A profiler trace of profile_steps steps from profile_start_step (>= 2: after step 1's
    # compilation) in <workdir>/profile, for TensorBoard's Profile tab / XProf. 0: none.
    config.profile_steps = 0
    config.profile_start_step = 10
    # Contrastive gradient accumulation (GradCache; vatt.train.grad_cache), pretraining only:
    # N > 1 computes the global batch's exact loss and gradients in N chunks with about 1/N of
    # the activation memory (batch_size must be divisible by devices x N). 1: all at once.
    config.accumulation_steps = 1
    config.init_from = ""             # a pretraining workdir / checkpoint whose weights to load
    config.evals = ml_collections.ConfigDict()  # extra evaluators (vatt.evaluation.registry)
    # Experiment tracking beside metrics.jsonl and TensorBoard (vatt.tracking; process 0 only):
    # a W&B run with the same metric names and steps, its id kept in <workdir>/wandb_run_id so a
    # resumed run continues it. Needs pip install 'vatt[wandb]'. mode: online | offline (no
    # network, files in <workdir>/wandb/, upload with `wandb sync`) | disabled. "" lets W&B
    # choose the entity; the run's name defaults to the workdir's last component.
    config.tracking = ml_collections.ConfigDict({
        "wandb": False, "wandb_project": "vatt", "wandb_entity": "", "wandb_mode": "online",
        "wandb_name": ""})
    return config


def optimizer(name: str, learning_rate: float, end_learning_rate: float, warmup_steps: int,
              **overrides) -> ml_collections.ConfigDict:
    """Every optimizer key (vatt.train.optimizer reads them all, whichever `name` is used)."""
    cfg = ml_collections.ConfigDict({
        "name": name,                     # adam | adamw | sgd
        "learning_rate": learning_rate,   # peak, after linear warmup; cosine decay after it
        "end_learning_rate": end_learning_rate,
        "warmup_steps": warmup_steps,
        "b1": 0.9, "b2": 0.999, "eps": 1e-8,   # adam / adamw (official VATT code: eps 1e-7)
        "weight_decay": 0.0,              # adamw
        "momentum": 0.9, "nesterov": False,    # sgd
        "grad_clip_norm": 0.0,            # > 0: clip the global gradient norm first
        # which gradients: "all" | "backbone" (a classifier's backbone only: official fine-tuning)
        "grad_clip_scope": "all",
    })
    cfg.update(overrides)
    return cfg


def synthetic_data(num_frames: int, frame_size: int, audio_rate: int, max_words: int,
                   num_captions: int, no_text_fraction: float) -> ml_collections.ConfigDict:
    """The embedded synthetic world (vatt/data/synthetic.py), clips at 10 fps."""
    return ml_collections.ConfigDict({
        "name": "synthetic", "num_frames": num_frames, "frame_size": frame_size, "fps": 10.0,
        "audio_rate": audio_rate, "max_words": max_words, "num_captions": num_captions,
        "no_text_fraction": no_text_fraction,
        # The world itself (which clips exist, the held-out split): the same for every training
        # seed, as a real dataset would be (vatt.data.synthetic.world_from_config).
        "world_seed": 0})


def real_data(name: str, split: str, modalities: str, *, num_frames: int = 32,
              frame_size: int = 224, audio_rate: int = 48000) -> ml_collections.ConfigDict:
    """A vatt.data.pipeline config. `fps`, `audio_rate` and `max_words` mirror the pipeline's keys
    for the start-up shape checks (vatt.config_validation reads them)."""
    c = pipeline_config()
    c.name, c.split, c.modalities = name, split, modalities
    c.num_frames, c.frame_size, c.target_fps = num_frames, frame_size, 10.0
    c.fps = c.get_ref("target_fps")
    c.audio_rate = audio_rate  # stored sample rate of the built dataset (default builder: 48 kHz)
    c.max_words = c.get_ref("max_text_len")
    return c


def synthetic_eval(num_clips: int, batch_size: int) -> ml_collections.ConfigDict:
    """The built-in zero-shot evaluation of pretraining on the synthetic world."""
    return ml_collections.ConfigDict({
        "num_clips": num_clips, "batch_size": batch_size,
        "plots": True,               # PNGs in <workdir>/plots after each evaluation
        "embedding_map": "tsne",     # tsne | pca
        "embedding_map_clips": 192,  # exact t-SNE is O(n^2): map at most this many clips
    })


def downstream_keys(task: str, arg: str | None, pretrain) -> tuple[ml_collections.ConfigDict, str,
                                                                   set, ml_collections.ConfigDict]:
    """Keys of a downstream run (finetune / linear_probe / zeroshot) from its argument
    "<dataset>[,<pretraining variant>][,runlocal]": the model is the pretraining variant's (tiny
    for the synthetic world, else mbs), so the checkpoint named by init_from fits it.

    pretrain: the configs/pretrain.py module. Returns (config, dataset, options, the pretraining
    config of the variant).
    """
    from vatt import config_files
    parts, opts = config_files.options(arg)
    dataset = parts[0] if parts else "synthetic"
    variant = parts[1] if len(parts) > 1 else ("tiny" if dataset == "synthetic" else "mbs")
    pre = pretrain.get_config(",".join([variant, *sorted(opts)]))
    config = run_keys(task, variant)
    config.dataset = dataset
    config.model = pre.model
    return config, dataset, opts, pre


def add_evaluation(config: ml_collections.ConfigDict, name: str, entry: ml_collections.ConfigDict,
                   pre: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Makes `entry` the one `evals` entry of an evaluate-only config. On a real dataset
    config.data is the entry's data section itself (one object), so --config.data.data_dir=...
    reaches the evaluator, and captions are read at the model's text length."""
    config.evals = ml_collections.ConfigDict({name: entry})
    if config.dataset == "synthetic":
        config.data = pre.data
    else:
        config.data = entry.data
        config.data.max_text_len = config.model.text.max_len
    return config
