"""Start-up checks of a run's config: refuse a bad value before anything starts.

Each problem is reported in one line naming the key, the value and what would be
valid, e.g. ``config.batch_size=30 is not divisible by the 8 devices: use a
multiple of 8, such as 32``. Every key with a fixed set of values is checked against the set
its module defines, so a typo never silently selects a default.
"""

from __future__ import annotations

from typing import Any, Iterable

import ml_collections

from vatt import paths
from vatt.errors import ConfigError  # noqa: F401  (raised here; callers import it from here too)
from vatt.alignment import CKA_KERNELS, CKA_SPACES
from vatt.data.pipeline_config import AUDIO_NOISE_SCALES, CROPS, EVAL_NUM_CROPS, TOKENIZERS
from vatt.data.synthetic import FACTOR_NAMES, NUM_COMBINATIONS
from vatt.evaluation.linear_probe import CLASSIFIERS
from vatt.evaluation.registry import KINDS as EVAL_KINDS
from vatt.evaluation.registry import entry_prefixes
from vatt.losses import MIL_NCE_VARIANTS
from vatt.models.classifier import HEAD_INITS
from vatt.models.configs import VARIANTS as MODEL_VARIANTS
from vatt.models.droptoken import DROPTOKEN_MODES
from vatt.models.heads import BN_PLACEMENTS, HEAD_KINDS
from vatt.models.tokenizers import INIT_SCHEMES, POS_INTERPOLATIONS
from vatt.models.transformer import ATTENTION_IMPLS, REMAT_POLICIES
from vatt.models.vatt_model import DTYPE_CHOICES, TEXT_KINDS
from vatt.tasks import EVALUATE_ONLY, TASKS
from vatt.tracking import INSTALL_HINT, WANDB_MODES, wandb_available
from vatt.train.optimizer import GRAD_CLIP_SCOPES, OPTIMIZERS

REQUIRED_KEYS = ("task", "total_steps", "batch_size", "seed", "log_every_steps", "eval_every_steps")
NONFINITE = ("skip", "stop")
EMBEDDING_MAPS = ("tsne", "pca")
MODALITIES = ("video", "audio")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _one_of(config: ml_collections.ConfigDict, key: str, allowed: Iterable[Any]) -> None:
    """config.<key> (dotted) must be one of `allowed`."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return  # sections a task does not have are not checked
        node = node[part]
    allowed = tuple(allowed)
    _require(node in allowed, f"config.{key}={node!r} is not known: use one of "
             f"{', '.join(repr(a) for a in allowed)}")


def _tuple(value) -> tuple[int, ...]:
    return tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))


def validate(config: ml_collections.ConfigDict, num_devices: int, num_processes: int = 1) -> None:
    """Raises ConfigError for the first invalid value found."""
    for key in REQUIRED_KEYS:
        _require(key in config, f"config.{key} is missing: every config needs {', '.join(REQUIRED_KEYS)}")
    _one_of(config, "task", TASKS)
    _validate_paths(config)
    evaluate_only = config.task in EVALUATE_ONLY
    if evaluate_only:
        _require(config.total_steps == 0,
                 f"config.total_steps={config.total_steps}: task {config.task!r} evaluates "
                 "only (nothing is trained); use 0")
    else:
        _require(config.total_steps >= 1, f"config.total_steps={config.total_steps} must be >= 1")
    _require(config.log_every_steps >= 1,
             f"config.log_every_steps={config.log_every_steps} must be >= 1")
    _require(config.eval_every_steps >= 0,
             f"config.eval_every_steps={config.eval_every_steps} must be >= 0 (0: evaluate only at the end)")
    _one_of(config, "nonfinite", NONFINITE)
    mesh_data = config.mesh.data
    devices = num_devices if mesh_data in (-1, None) else int(mesh_data)
    _require(1 <= devices <= num_devices,
             f"config.mesh.data={mesh_data} but {num_devices} devices are visible: use -1 (all) "
             f"or a number in [1, {num_devices}]")
    multiple = max(devices, num_processes)
    batch_keys = [("batch_size", config.batch_size)] if not evaluate_only else []
    if "eval" in config:
        batch_keys.append(("eval.batch_size", config.eval.batch_size))
    batch_keys += [(f"evals.{n}.batch_size", e.batch_size) for n, e in config.evals.items()]
    for key, value in batch_keys:
        _require(value >= 1 and value % multiple == 0,
                 f"config.{key}={value} is not divisible by the {multiple} devices: use a multiple "
                 f"of {multiple}, such as {max(multiple, (value // multiple + 1) * multiple)}")
    _validate_accumulation(config, multiple)
    _require(config.memory_limit_gib >= 0,
             f"config.memory_limit_gib={config.memory_limit_gib} must be >= 0 (0: the device's)")
    _require(config.profile_steps >= 0,
             f"config.profile_steps={config.profile_steps} must be >= 0 (0: no profiler trace)")
    _require(config.profile_steps == 0 or config.profile_start_step >= 2,
             f"config.profile_start_step={config.profile_start_step} must be >= 2: step 1 "
             "compiles the train step, which would fill the trace")
    if "model" in config:
        _validate_model(config.model)
    if "data" in config and "model" in config:
        _validate_shapes(config)
    if "optimizer" in config and not evaluate_only:
        opt = config.optimizer
        _one_of(config, "optimizer.name", OPTIMIZERS)
        if "grad_clip_scope" in opt:
            _one_of(config, "optimizer.grad_clip_scope", GRAD_CLIP_SCOPES)
        _require(opt.learning_rate > 0, f"config.optimizer.learning_rate={opt.learning_rate} must be > 0")
        _require(0 <= opt.warmup_steps <= config.total_steps,
                 f"config.optimizer.warmup_steps={opt.warmup_steps} must be in [0, total_steps="
                 f"{config.total_steps}]")
    if "loss" in config:
        loss = config.loss
        _require(loss.temperature > 0, f"config.loss.temperature={loss.temperature} must be > 0")
        _one_of(config, "loss.combine", ("mean", "sum"))
        _require(loss.va_weight >= 0 and loss.vt_weight >= 0 and loss.va_weight + loss.vt_weight > 0,
                 f"config.loss.va_weight={loss.va_weight}, vt_weight={loss.vt_weight}: use "
                 "non-negative weights with a positive sum")
        _one_of(config, "loss.mil_nce_variant", MIL_NCE_VARIANTS)
        _one_of(config, "loss.cka_kernel", CKA_KERNELS)
        _one_of(config, "loss.cka_space", CKA_SPACES)
    if "eval" in config and "num_clips" in config.eval:
        _require(1 <= config.eval.num_clips <= NUM_COMBINATIONS,
                 f"config.eval.num_clips={config.eval.num_clips} must be in [1, {NUM_COMBINATIONS}] so "
                 "that every held-out caption is distinct")
        _one_of(config, "eval.embedding_map", EMBEDDING_MAPS)
    if "finetune" in config:
        _one_of(config, "finetune.modality", MODALITIES)
        if "head_init" in config.finetune:
            _one_of(config, "finetune.head_init", HEAD_INITS)
        _factors("finetune.label_factors", config.finetune.label_factors)
    for name, entry in config.evals.items():
        _validate_eval_entry(config, name, entry)
    _validate_prefixes(config)
    if "tracking" in config:
        _one_of(config, "tracking.wandb_mode", WANDB_MODES)
        _require(not config.tracking.wandb or wandb_available(),
                 "config.tracking.wandb=True but the wandb package is not installed: "
                 f"{INSTALL_HINT}, or set config.tracking.wandb=False")


def _validate_accumulation(config: ml_collections.ConfigDict, devices: int) -> None:
    """config.accumulation_steps: an integer >= 1; > 1 only for pretraining (GradCache), with
    a batch that every chunk spreads evenly over the devices."""
    steps = config.get("accumulation_steps", 1)
    _require(isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1,
             f"config.accumulation_steps={steps!r} must be an integer >= 1 (1: no accumulation)")
    if steps == 1:
        return
    _require(config.task == "pretrain",
             f"config.accumulation_steps={steps}: contrastive gradient accumulation is for "
             f"pretraining only; task {config.task!r} needs 1 (lower config.batch_size instead)")
    multiple = devices * steps
    _require(config.batch_size % multiple == 0,
             f"config.batch_size={config.batch_size} is not divisible by {devices} devices x "
             f"{steps} accumulation steps: each chunk must spread evenly over the devices; use a "
             f"multiple of {multiple}, such as "
             f"{max(multiple, (config.batch_size // multiple + 1) * multiple)}")


def _validate_model(model: ml_collections.ConfigDict) -> None:
    def check(key: str, allowed: Iterable[Any]) -> None:
        _one_of(ml_collections.ConfigDict({"model": model}), key, allowed)
    check("model.backbone", ("modality_specific", "shared"))
    check("model.dtype", DTYPE_CHOICES)
    check("model.attention_impl", ATTENTION_IMPLS)
    check("model.remat_policy", ("none",) + tuple(REMAT_POLICIES))
    check("model.droptoken_mode", DROPTOKEN_MODES)
    check("model.head.kind", HEAD_KINDS)
    check("model.head.bn_placement", BN_PLACEMENTS)
    if "variant" in model:
        check("model.variant", MODEL_VARIANTS)
    if "text" in model and "kind" in model.text:
        check("model.text.kind", TEXT_KINDS)
    if "init_scheme" in model:
        check("model.init_scheme", INIT_SCHEMES)
    if "pos_interpolation" in model:
        check("model.pos_interpolation", POS_INTERPOLATIONS)
    if "text" in model and model.text.get("freeze_embedding", False):
        _require(bool(model.text.get("embedding_path", "")),
                 "config.model.text.freeze_embedding=True needs config.model.text.embedding_path "
                 "(a [vocab_size, embedding_dim] .npy, e.g. the official word2vec table): a "
                 "frozen table without a file would be random; set the path, or "
                 "config.model.text.freeze_embedding=False to learn the table")


def _factors(key: str, factors) -> None:
    unknown = [f for f in factors if f not in FACTOR_NAMES]
    _require(bool(factors) and not unknown,
             f"config.{key}={tuple(factors)}: use a non-empty subset of {FACTOR_NAMES}")


def _validate_eval_entry(config: ml_collections.ConfigDict, name: str,
                         entry: ml_collections.ConfigDict) -> None:
    _one_of(config, f"evals.{name}.kind", EVAL_KINDS)
    every = entry.get("every_steps", 0)
    _require(isinstance(every, int) and not isinstance(every, bool) and every >= 0,
             f"config.evals.{name}.every_steps={every!r} must be an integer >= 0 (0: every "
             "config.eval_every_steps steps, or only at the end when that is 0 too)")
    if "data" in entry and entry.dataset != "synthetic":
        data = entry.data
        _require(bool(data.get("data_dir", "")) or str(data.get("name", "")).startswith("dmvr:"),
                 f"config.evals.{name}.data.data_dir is empty but config.evals.{name}.data.name="
                 f"{data.get('name', '')!r} is a built dataset: set it to the --data_dir given "
                 "to python -m vatt.data.build")
    if entry.dataset == "synthetic":
        _require(config.data.name == "synthetic",
                 f"config.evals.{name}.dataset='synthetic' needs config.data.name='synthetic' "
                 f"(it is {config.data.name!r}): evaluate on a built dataset instead")
    if entry.kind == "linear_probe":
        unknown = [c for c in entry.classifiers if c not in CLASSIFIERS]
        _require(bool(entry.classifiers) and not unknown,
                 f"config.evals.{name}.classifiers={tuple(entry.classifiers)}: use a non-empty "
                 f"subset of {CLASSIFIERS}")
        _require(entry.primary in entry.classifiers,
                 f"config.evals.{name}.primary={entry.primary!r} must be one of its classifiers "
                 f"{tuple(entry.classifiers)}")
        _one_of(config, f"evals.{name}.modality", MODALITIES)
        if entry.dataset == "synthetic":
            _factors(f"evals.{name}.label_factors", entry.label_factors)
    if "data" in entry:
        _one_of(config, f"evals.{name}.data.crop", CROPS)
        _one_of(config, f"evals.{name}.data.eval_num_crops", EVAL_NUM_CROPS)
        _validate_tokenizer(config, f"evals.{name}.data", entry.data)


def _validate_tokenizer(config: ml_collections.ConfigDict, key: str,
                        data: ml_collections.ConfigDict) -> None:
    """config.<key>.tokenizer is known; <bos>/<eos> only with a vocabulary that has them."""
    _one_of(config, f"{key}.tokenizer", TOKENIZERS)
    if data.get("tokenizer", "words") != "dmvr":
        for flag in ("prepend_bos", "append_eos"):
            _require(not data.get(flag, False),
                     f"config.{key}.{flag}=True needs config.{key}.tokenizer='dmvr' (a 'words' "
                     "vocabulary has no <bos>/<eos>): set the tokenizer or drop the flag")


def _validate_prefixes(config: ml_collections.ConfigDict) -> None:
    """Two evaluators must not report under one metric prefix (their metrics would collide)."""
    taken: dict[str, str] = {}
    if config.task == "pretrain" and config.data.name == "synthetic":
        taken["zeroshot"] = "the built-in synthetic zero-shot evaluation"
    for name, prefix in entry_prefixes(config).items():
        _require(prefix not in taken,
                 f"config.evals.{name} reports its metrics under {prefix!r}/ like "
                 f"{taken.get(prefix)}: set config.evals.{name}.prefix to another name")
        taken[prefix] = f"config.evals.{name}"


def _validate_shapes(config: ml_collections.ConfigDict) -> None:
    data, model = config.data, config.model
    synthetic = data.name == "synthetic"
    if not synthetic:
        _require(bool(data.data_dir) or str(data.name).startswith("dmvr:"),
                 f"config.data.data_dir is empty but config.data.name={data.name!r} is a built "
                 "dataset: set it to the --data_dir given to python -m vatt.data.build")
        _one_of(config, "data.crop", CROPS)
        _one_of(config, "data.eval_num_crops", EVAL_NUM_CROPS)
        _one_of(config, "data.audio_noise_scale", AUDIO_NOISE_SCALES)
        _require(0.0 <= data.color_jitter_prob <= 1.0,
                 f"config.data.color_jitter_prob={data.color_jitter_prob} is not a probability: "
                 "use a value in [0, 1] (official VATT: 0.8)")
        _validate_tokenizer(config, "data", data)
    frames = (data.num_frames, data.frame_size, data.frame_size)
    video = model.video
    patch = _tuple(video.patch_size)
    _require(len(patch) == 3, f"config.model.video.patch_size={patch} must be (t, h, w)")
    for name, size, p in zip(("num_frames", "frame_size", "frame_size"), frames, patch):
        _require(p >= 1 and size % p == 0,
                 f"config.model.video.patch_size={patch} does not divide the clip "
                 f"{frames[0]}x{frames[1]}x{frames[2]} (config.data.{name}={size}): pick a patch "
                 f"size that divides it, e.g. {tuple(d for d in _divisors_like(frames, patch))}")
    if synthetic:
        samples = int(round(data.num_frames / data.fps * data.audio_rate))
    else:  # 0: set by the stored sample rate, known only when reading
        samples = int(data.audio_samples)
    if samples:
        p = int(_tuple(model.audio.patch_size)[0])
        _require(p >= 1 and samples % p == 0,
                 f"config.model.audio.patch_size={p} does not divide the {samples} audio samples of a "
                 f"clip (num_frames/fps*audio_rate): use a divisor of {samples}")
    for modality in ("video", "audio"):
        keep = model[modality].droptoken_keep
        _require(0 < keep <= 1, f"config.model.{modality}.droptoken_keep={keep} must be in (0, 1]")
    reads_text = synthetic or data.modalities == "auto" or "text" in str(data.modalities).split(",")
    max_words = data.max_words if synthetic else data.max_text_len
    _require(not reads_text or max_words <= model.text.max_len,
             f"config.data text length {max_words} exceeds config.model.text.max_len="
             f"{model.text.max_len}: raise max_len or shorten the captions")


def _divisors_like(sizes: tuple[int, ...], patch: tuple[int, ...]) -> list[int]:
    """For each axis, the divisor of `size` closest to the requested patch size."""
    out = []
    for size, p in zip(sizes, patch):
        divisors = [d for d in range(1, size + 1) if size % d == 0]
        out.append(min(divisors, key=lambda d: (abs(d - p), -d)))
    return out


# Config keys that hold a location (by their last component) and what reads it (vatt.paths).
PATH_KEYS = {"init_from": "checkpoint", "data_dir": "local", "vocab_path": "epath",
             "embedding_path": "epath"}


def _string_items(node: ml_collections.ConfigDict, prefix: str = "") -> Iterable[tuple[str, str]]:
    """(dotted key, value) of every string in the config, sections included."""
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _string_items(value, f"{prefix}{key}.")
        elif isinstance(value, str):
            yield f"{prefix}{key}", value


def _validate_paths(config: ml_collections.ConfigDict) -> None:
    """Every location in the config must be reachable by what reads it: init_from may be
    gs:// (orbax), a vocabulary any etils.epath URL, a dataset (data_dir, dmvr:<glob> in
    name / mixture) only a local or mounted path."""
    for key, value in _string_items(config):
        last = key.rsplit(".", 1)[-1]
        if last in PATH_KEYS and value:
            checks = [(value, f"config.{key}", PATH_KEYS[last])]
        elif last in ("name", "mixture"):
            checks = [(part.strip()[len("dmvr:"):], f"the DMVR glob of config.{key}", "local")
                      for part in value.split(",") if part.strip().startswith("dmvr:")]
        else:
            continue
        for path, what, kind in checks:
            problem = paths.unsupported(path, what, kind)
            _require(problem is None, problem or "")


def validate_workdir(workdir: str) -> str:
    """The run's workdir made canonical (vatt.paths.resolve: absolute locally, a gs:// URL
    kept), or ConfigError when checkpoints cannot be kept there."""
    problem = paths.unsupported(workdir, "--workdir", "checkpoint")
    _require(problem is None, problem or "")
    return paths.resolve(workdir)
