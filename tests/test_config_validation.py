"""Config validation: a bad value is refused with one line that names the key and the fix; every
shipped config loads, validates and builds its task; overrides reach what they configure."""

import subprocess
import sys

import ml_collections
import pytest

from subprocess_utils import REPO_ROOT, child_env
from vatt import config_files
from vatt.config_validation import ConfigError, validate

TINY = "pretrain:tiny"


def test_tiny_config_is_valid():
    validate(config_files.load(TINY), num_devices=8)
    validate(config_files.load(TINY), num_devices=1)
    validate(config_files.load(TINY + ",runlocal"), num_devices=8)


@pytest.mark.parametrize("mutate, num_devices, pattern", [
    (lambda c: setattr(c, "batch_size", 30), 8, r"^config.batch_size=30 is not divisible by the 8 devices: use a multiple of 8, such as 32$"),
    (lambda c: setattr(c.model.video, "patch_size", (4, 5, 8)), 1, r"^config.model.video.patch_size=\(4, 5, 8\) does not divide the clip 8x32x32"),
    (lambda c: setattr(c.model.audio, "patch_size", 300), 1, r"^config.model.audio.patch_size=300 does not divide the 6400 audio samples"),
    (lambda c: setattr(c, "total_steps", 0), 1, r"^config.total_steps=0 must be >= 1$"),
    (lambda c: setattr(c.loss, "combine", "max"), 1, r"^config.loss.combine='max' is not known: use one of 'mean', 'sum'$"),
    (lambda c: setattr(c.optimizer, "name", "lamb"), 1, r"^config.optimizer.name='lamb' is not known: use one of 'adam', 'adamw', 'sgd'$"),
    (lambda c: setattr(c.model.video, "droptoken_keep", 0.0), 1, r"droptoken_keep=0.0 must be in \(0, 1\]"),
    (lambda c: setattr(c.eval, "num_clips", 10_000), 1, r"^config.eval.num_clips=10000"),
    (lambda c: setattr(c.mesh, "data", 16), 8, r"^config.mesh.data=16 but 8 devices"),
])
def test_bad_values_are_named(mutate, num_devices, pattern):
    config = config_files.load(TINY)
    mutate(config)
    with pytest.raises(ConfigError, match=pattern) as err:
        validate(config, num_devices=num_devices)
    assert "\n" not in str(err.value)


def _typo(value: str) -> str:
    return value[:-1]  # "skip" -> "ski", "float32" -> "float3", ...


# (config, key) of every key with a fixed set of values.
FIXED_SET_KEYS = [
    (TINY, "task"), (TINY, "nonfinite"), (TINY, "loss.combine"), (TINY, "loss.mil_nce_variant"),
    (TINY, "loss.cka_kernel"), (TINY, "loss.cka_space"), (TINY, "optimizer.name"),
    (TINY, "model.dtype"),
    (TINY, "model.attention_impl"), (TINY, "model.remat_policy"),
    (TINY, "model.droptoken_mode"), (TINY, "model.head.kind"), (TINY, "model.head.bn_placement"),
    (TINY, "eval.embedding_map"), ("finetune:synthetic", "finetune.modality"),
    ("linear_probe:synthetic", "evals.linear_probe_synthetic.kind"),
    ("linear_probe:synthetic", "evals.linear_probe_synthetic.modality"),
    ("zeroshot:synthetic", "evals.zeroshot_synthetic.kind"), (TINY, "tracking.wandb_mode"),
    ("pretrain:bbs", "model.text.kind"),
    (("pretrain:tiny_howto100m", {"data.data_dir": "/tmp/built"}), "data.tokenizer"),
    (("zeroshot:msrvtt", {"data.data_dir": "/tmp/built"}), "data.tokenizer"),
]


def _load(spec) -> ml_collections.ConfigDict:
    """spec: a config name, or (name, overrides) for configs that need e.g. a data_dir."""
    return config_files.load(*spec) if isinstance(spec, tuple) else config_files.load(spec)


@pytest.mark.parametrize("spec, key", FIXED_SET_KEYS)
def test_misspelled_fixed_set_value_is_refused(spec, key):
    config = _load(spec)
    validate(config, num_devices=1)  # valid as shipped
    good = config
    for part in key.split("."):
        good = good[part]
    bad = _typo(good)
    config_files.apply_override(config, key, bad)
    with pytest.raises(ConfigError) as err:
        validate(config, num_devices=1)
    message = str(err.value)
    assert message.startswith(f"config.{key}={bad!r} is not known: use one of "), message
    assert repr(good) in message.split("use one of ", 1)[1]  # the fix names the right value
    assert "\n" not in message


@pytest.mark.parametrize("spec", ["pretrain:tiny_howto100m", "zeroshot:msrvtt"])
def test_bos_eos_need_the_dmvr_tokenizer(spec):
    config = config_files.load(spec, {"data.data_dir": "/tmp/built", "data.append_eos": True})
    with pytest.raises(ConfigError, match=r"^config.data.append_eos=True needs "
                       r"config.data.tokenizer='dmvr' \(") as err:
        validate(config, num_devices=1)
    assert "\n" not in str(err.value)
    config.data.tokenizer = "dmvr"
    validate(config, num_devices=1)


def test_probe_classifiers_and_primary_are_checked():
    config = config_files.load("linear_probe:synthetic")
    entry = config.evals.linear_probe_synthetic
    good = tuple(entry.classifiers)
    entry.classifiers = good[:-1] + (_typo(good[-1]),)
    with pytest.raises(ConfigError, match=r"^config.evals.linear_probe_synthetic.classifiers="
                       r".*: use a non-empty subset of \(") as err:
        validate(config, num_devices=1)
    assert repr(good[-1]) in str(err.value)
    entry.classifiers = good
    entry.primary = _typo(entry.primary)
    with pytest.raises(ConfigError, match=r"^config.evals.linear_probe_synthetic.primary="
                       f"'{entry.primary}' must be one of its classifiers"):
        validate(config, num_devices=1)


@pytest.mark.parametrize("spec", ["linear_probe:synthetic,runlocal", "zeroshot:synthetic,runlocal"])
def test_evaluate_only_configs_refuse_training_steps(spec):
    config = config_files.load(spec)
    validate(config, num_devices=1)
    config.total_steps = 5
    task = config.task
    with pytest.raises(ConfigError, match=f"^config.total_steps=5: task '{task}' evaluates only "
                       r"\(nothing is trained\); use 0$"):
        validate(config, num_devices=1)


# Every shipped config variant (a paper-scale runlocal variant runs 2 steps, its warmup too).
SHIPPED = (
    [f"pretrain:{v}{o}" for v in ("tiny", "tiny_howto100m") for o in ("", ",runlocal")]
    + [f"pretrain:{v}{o}" for v in ("bbs", "mbs", "lbs", "ma_medium") for o in ("", ",runlocal")]
    + [f"{name}:{d}{o}" for name, datasets in (("finetune", ("synthetic", "ucf101", "esc50")),
                                              ("linear_probe", ("synthetic", "ucf101", "hmdb51", "esc50")),
                                              ("zeroshot", ("synthetic", "msrvtt", "youcook2")))
       for d in datasets for o in ("", ",runlocal")])


@pytest.mark.parametrize("spec", SHIPPED)
def test_shipped_config_loads_validates_and_builds_its_task(spec, tmp_path):
    from vatt.tasks import build_task
    config = config_files.load(spec)
    assert config.task == spec.split(":")[0]
    if config.data.name != "synthetic":
        # A built dataset is required: validation names the key until it is set.
        with pytest.raises(ConfigError, match=r"^config.data.data_dir is empty"):
            validate(config, num_devices=1)
        config.data.data_dir = str(tmp_path)
    validate(config, num_devices=1)
    if "runlocal" not in spec:
        validate(config, num_devices=8)
    task = build_task(config)
    assert task.evaluate_only == (config.task in ("linear_probe", "zeroshot"))
    # The evaluators are built (and their prefixes checked) before anything runs.
    prefixes = [e.prefix for e in task.evaluators()]
    assert len(set(prefixes)) == len(prefixes)
    if config.task != "pretrain" or config.data.name == "synthetic":
        assert prefixes


def test_cli_parser_accepts_eps_and_it_reaches_the_optimizer():
    """--config.optimizer.eps=1e-7 (the official code's value) parses to the float 1e-7 by the
    command line's parser and by config_files, and changes the Adam update as it should."""
    import jax.numpy as jnp
    from absl import flags
    from ml_collections import config_flags
    from vatt.train.optimizer import build_optimizer, learning_rate
    argv = config_files.resolve_argv(["prog", "--config=pretrain:tiny,runlocal",
                                      "--config.optimizer.eps=1e-7"])
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=argv)
    fv(argv)
    assert fv.config.optimizer.eps == 1e-7 and isinstance(fv.config.optimizer.eps, float)
    for overrides in (["optimizer.eps=1e-7"], ["--config.optimizer.eps=1e-7"],
                      {"optimizer.eps": 1e-7}):
        assert config_files.load("pretrain:tiny,runlocal", overrides).optimizer.eps == 1e-7

    def first_update(eps):
        cfg = config_files.load("pretrain:tiny,runlocal", {"optimizer.eps": eps,
                                                            "optimizer.warmup_steps": 0}).optimizer
        tx, schedule = build_optimizer(cfg, total_steps=100)
        params = {"w": jnp.zeros(3)}
        grads = {"w": jnp.full(3, 1e-7, jnp.float32)}
        direction, _ = tx.update(grads, tx.init(params), params)
        lr = float(learning_rate(schedule, 0))
        return -lr * float(direction["w"][0]), lr

    # Adam's first step (the train step scales the direction by -lr): -lr * g / (|g| + eps); with g = 1e-7: -lr/2 at eps 1e-7, -lr/1.1 at
    # the default 1e-8, and almost nothing at a huge eps.
    u7, lr = first_update(1e-7)
    u8, _ = first_update(1e-8)
    huge, _ = first_update(1.0)
    assert lr == pytest.approx(1e-3)
    assert u7 == pytest.approx(-lr / 2, rel=1e-3)
    assert u8 == pytest.approx(-lr / 1.1, rel=1e-3)
    assert abs(huge) < 1e-6 * abs(u8)


def test_undeclared_key_is_refused():
    with pytest.raises(KeyError, match=r"config.optimizer.epsilon: the config has no 'epsilon'; "
                       r"declared keys: .*\beps\b"):
        config_files.load("pretrain:tiny,runlocal", {"optimizer.epsilon": 1e-7})
    with pytest.raises(KeyError, match=r"config.optimiser.eps: the config has no 'optimiser'"):
        config_files.load("pretrain:tiny,runlocal", ["optimiser.eps=1e-7"])


def _stub(prefix, metrics):
    return type("Stub", (), {"prefix": prefix, "run": lambda self, ctx: dict(metrics)})()


def test_two_evaluators_reporting_under_one_prefix_are_refused():
    from vatt.evaluation.base import check_unique_prefixes, run_evaluators
    from vatt.tasks import build_task
    # Two config.evals entries with the same prefix: one line at validation, and refused
    # when the task builds them (for a caller that skips validation).
    config = config_files.load("linear_probe:synthetic,runlocal")
    entry = config.evals.linear_probe_synthetic
    entry.prefix = "probe"
    config.evals.second = ml_collections.ConfigDict(entry.to_dict())
    with pytest.raises(ConfigError, match=r"^config.evals.second reports its metrics under "
                       r"'probe'/ like config.evals.linear_probe_synthetic: set "
                       r"config.evals.second.prefix to another name$"):
        validate(config, num_devices=1)
    with pytest.raises(ValueError, match="two evaluators report metrics under 'probe'/"):
        build_task(config).evaluators()
    # Left empty, the prefixes of two entries of one kind are made distinct.
    entry.prefix = config.evals.second.prefix = ""
    validate(config, num_devices=1)
    assert sorted(e.prefix for e in build_task(config).evaluators()) == [
        "linear_probe/linear_probe_synthetic", "linear_probe/second"]
    # A zero-shot entry in synthetic pretraining would report under the built-in evaluation's
    # prefix unless it is given its own.
    config = config_files.load("pretrain:tiny,runlocal")
    config.evals.zs = config_files.load("zeroshot:synthetic,runlocal").evals.zeroshot_synthetic
    with pytest.raises(ConfigError, match=r"^config.evals.zs reports its metrics under "
                       r"'zeroshot'/ like the built-in synthetic zero-shot evaluation"):
        validate(config, num_devices=1)
    config.evals.zs.prefix = "zeroshot_again"
    validate(config, num_devices=1)
    # Distinct prefixes that still report one metric name: run_evaluators refuses them.
    a = _stub("zeroshot", {"zeroshot/t2v/R@1": 1.0})
    b = _stub("zeroshot/t2v", {"zeroshot/t2v/R@1": 2.0})
    check_unique_prefixes([a, b])
    with pytest.raises(ValueError, match="metric 'zeroshot/t2v/R@1' is reported by evaluators "
                       "'zeroshot' and 'zeroshot/t2v'"):
        run_evaluators([a, b], ctx=None)
    with pytest.raises(ValueError, match="two evaluators report metrics under 'zeroshot'/"):
        check_unique_prefixes([a, _stub("zeroshot", {})])
    assert run_evaluators([a, _stub("x", {"x/y": 3.0})], ctx=None) == {
        "zeroshot/t2v/R@1": 1.0, "x/y": 3.0}


def _cli(args, tmp_path, num_devices=1):
    return subprocess.run([sys.executable, "-m", "vatt.main", f"--workdir={tmp_path}/run", *args],
                          env=child_env(num_devices), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_refuses_bad_config_before_anything_starts(tmp_path):
    proc = _cli(["--config=pretrain:tiny,runlocal", "--config.batch_size=30"], tmp_path, 8)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == ["error: config.batch_size=30 is not divisible by the 8 devices: use a "
                           "multiple of 8, such as 32"]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_cli_refuses_undeclared_key_in_one_line(tmp_path):
    proc = _cli(["--config=pretrain:tiny,runlocal", "--config.optimizer.epsilon=1e-7"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: config.optimizer.epsilon"), lines
    assert not (tmp_path / "run").exists()
