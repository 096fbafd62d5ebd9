"""Start-up checks of a run's config: refuse a bad value before anything starts.

Each problem is reported in one line naming the key, the value and what would be
valid, e.g. ``config.batch_size=30 is not divisible by the 8 devices: use a
multiple of 8, such as 32``.
"""

from __future__ import annotations

import ml_collections

REQUIRED_KEYS = ("task", "total_steps", "batch_size", "seed", "log_every_steps", "eval_every_steps")


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line with the fix."""


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _tuple(value) -> tuple[int, ...]:
    return tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))


def validate(config: ml_collections.ConfigDict, num_devices: int, num_processes: int = 1) -> None:
    """Raises ConfigError for the first invalid value found."""
    for key in REQUIRED_KEYS:
        _require(key in config, f"config.{key} is missing: every config needs {', '.join(REQUIRED_KEYS)}")
    evaluate_only = config.task in ("linear_probe", "zeroshot")
    _require(config.total_steps >= (0 if evaluate_only else 1),
             f"config.total_steps={config.total_steps} must be >= 1"
             + (" (0 for evaluate-only tasks)" if evaluate_only else ""))
    _require(config.log_every_steps >= 1,
             f"config.log_every_steps={config.log_every_steps} must be >= 1")
    _require(config.eval_every_steps >= 0,
             f"config.eval_every_steps={config.eval_every_steps} must be >= 0 (0: evaluate only at the end)")
    mesh_data = config.get("mesh", {}).get("data", -1)
    devices = num_devices if mesh_data in (-1, None) else int(mesh_data)
    _require(1 <= devices <= num_devices,
             f"config.mesh.data={mesh_data} but {num_devices} devices are visible: use -1 (all) "
             f"or a number in [1, {num_devices}]")
    for key, value in (("batch_size", config.batch_size),
                       ("eval.batch_size", config.get("eval", {}).get("batch_size", devices))):
        multiple = max(devices, num_processes)
        _require(value >= 1 and value % multiple == 0,
                 f"config.{key}={value} is not divisible by the {multiple} devices: use a multiple "
                 f"of {multiple}, such as {max(multiple, (value // multiple + 1) * multiple)}")
    if "data" in config and "model" in config:
        _validate_shapes(config)
    if "optimizer" in config:
        opt = config.optimizer
        _require(opt.name in ("adam", "adamw", "sgd"),
                 f"config.optimizer.name={opt.name!r} is not known: use adam, adamw or sgd")
        _require(opt.learning_rate > 0, f"config.optimizer.learning_rate={opt.learning_rate} must be > 0")
        _require(0 <= opt.warmup_steps <= config.total_steps,
                 f"config.optimizer.warmup_steps={opt.warmup_steps} must be in [0, total_steps="
                 f"{config.total_steps}]")
    if "loss" in config:
        loss = config.loss
        _require(loss.temperature > 0, f"config.loss.temperature={loss.temperature} must be > 0")
        _require(loss.combine in ("mean", "sum"),
                 f"config.loss.combine={loss.combine!r}: use 'mean' (official code) or 'sum' (paper)")
        _require(loss.va_weight >= 0 and loss.vt_weight >= 0 and loss.va_weight + loss.vt_weight > 0,
                 f"config.loss.va_weight={loss.va_weight}, vt_weight={loss.vt_weight}: use "
                 "non-negative weights with a positive sum")
        _require(loss.mil_nce_variant in ("asymmetric", "symmetric"),
                 f"config.loss.mil_nce_variant={loss.mil_nce_variant!r}: use 'asymmetric' or 'symmetric'")
    if "eval" in config and "num_clips" in config.eval:
        from vatt.data.synthetic import NUM_COMBINATIONS
        _require(1 <= config.eval.num_clips <= NUM_COMBINATIONS,
                 f"config.eval.num_clips={config.eval.num_clips} must be in [1, {NUM_COMBINATIONS}] so "
                 "that every held-out caption is distinct")


def _validate_shapes(config: ml_collections.ConfigDict) -> None:
    data, model = config.data, config.model
    synthetic = data.get("name", "synthetic") == "synthetic"
    if not synthetic:
        _require(bool(data.get("data_dir", "")) or str(data.name).startswith("dmvr:"),
                 f"config.data.data_dir is empty but config.data.name={data.name!r} is a built "
                 "dataset: set it to the --data_dir given to python -m vatt.data.build")
    frames = (data.num_frames, data.frame_size, data.frame_size)
    video = model.get("video", None)
    if video is not None and "patch_size" in video:
        patch = _tuple(video.patch_size)
        _require(len(patch) == 3, f"config.model.video.patch_size={patch} must be (t, h, w)")
        for name, size, p in zip(("num_frames", "frame_size", "frame_size"), frames, patch):
            _require(p >= 1 and size % p == 0,
                     f"config.model.video.patch_size={patch} does not divide the clip "
                     f"{frames[0]}x{frames[1]}x{frames[2]} (config.data.{name}={size}): pick a patch "
                     f"size that divides it, e.g. {tuple(d for d in _divisors_like(frames, patch))}")
    audio = model.get("audio", None)
    if synthetic:
        samples = int(round(data.num_frames / data.fps * data.audio_rate))
    else:  # 0: set by the stored sample rate, known only when reading
        samples = int(data.get("audio_samples", 0))
    if audio is not None and "patch_size" in audio and samples:
        p = int(_tuple(audio.patch_size)[0])
        _require(p >= 1 and samples % p == 0,
                 f"config.model.audio.patch_size={p} does not divide the {samples} audio samples of a "
                 f"clip (num_frames/fps*audio_rate): use a divisor of {samples}")
    for modality in ("video", "audio"):
        sub = model.get(modality, None)
        if sub is not None and "droptoken_keep" in sub:
            keep = sub.droptoken_keep
            _require(0 < keep <= 1, f"config.model.{modality}.droptoken_keep={keep} must be in (0, 1]")
    text = model.get("text", None)
    max_words = data.get("max_words", data.get("max_text_len", 0))
    if text is not None and "max_len" in text:
        _require(max_words <= text.max_len,
                 f"config.data text length {max_words} exceeds config.model.text.max_len="
                 f"{text.max_len}: raise max_len or shorten the captions")


def _divisors_like(sizes: tuple[int, ...], patch: tuple[int, ...]) -> list[int]:
    """For each axis, the divisor of `size` closest to the requested patch size."""
    out = []
    for size, p in zip(sizes, patch):
        divisors = [d for d in range(1, size + 1) if size % d == 0]
        out.append(min(divisors, key=lambda d: (abs(d - p), -d)))
    return out
