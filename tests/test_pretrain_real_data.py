"""A tiny pretraining run, in process, from a built HowTo100M-layout dataset (real mp4s with audio
tracks), after checking what the build wrote and skipped against what the fixture wrote."""

import json

import numpy as np

from helpers import config, records, train_values


def test_tiny_pretraining_from_built_howto100m(tmp_path):
    from vatt import experiment
    from vatt.data.build import build
    from vatt.testing import media as fixtures
    source, data_dir, workdir = tmp_path / "src", tmp_path / "tfds", tmp_path / "run"
    wrote = fixtures.write_howto100m(str(source), num_videos=3, seconds=6.0, bad=True)
    summary = build("howto100m/tiny", manual_dir=str(source), data_dir=str(data_dir))
    # The build survives the corrupt files and reports them, by name and reason.
    # Written clips: each good 6 s video has 3 non-empty captions (centres 0.85, 2.35, 5.3 s);
    # 3 s clips around them that do not overlap are [0, 3] and [3, 6]: 2 per video. The silent
    # 3 s video gives 1 clip, kept with zero audio.
    assert summary["config"]["clip_seconds"] == 3.0
    assert summary["written"] == {"train": 2 * len(wrote["good"]) + len(wrote["padded"])}
    skipped = {(i["item"], i["reason"]) for i in summary["items"] if i["action"] == "skipped"}
    expected = set(wrote["bad"].items())
    # Caption 3 of every good video is the empty string.
    expected |= {(f"{vid}#caption2", "empty_caption") for vid in wrote["good"]}
    assert skipped == expected
    reasons = {}
    for _, reason in expected:
        reasons[reason] = reasons.get(reason, 0) + 1
    assert summary["skipped"] == {"train": reasons}
    kept = {(i["item"].split("@")[0], i["reason"]) for i in summary["items"] if i["action"] == "kept"}
    assert kept == {(vid, "no_audio_track_zero_filled") for vid in wrote["padded"]}

    cfg = config("pretrain:tiny_howto100m,runlocal", data__data_dir=str(data_dir),
                 total_steps=6, batch_size=4, log_every_steps=2, checkpoint_every_steps=3,
                 optimizer__warmup_steps=1)
    assert cfg.model.video.num_layers == cfg.model.audio.num_layers == cfg.model.text.num_layers == 1
    metrics = experiment.run(cfg, str(workdir), plots=False, tensorboard=False)
    assert metrics == {}  # no evaluator on a built dataset unless config.evals names one
    losses = train_values(str(workdir))
    assert sorted(losses) == [2, 4, 6] and all(np.isfinite(v) for v in losses.values())
    assert all(np.isfinite(r["train/grad_norm"]) for r in records(str(workdir))
               if "train/grad_norm" in r)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["3", "6"]
    # The data stream's position is saved with the model, as JSON: the global positions consumed.
    data_state = json.loads((workdir / "checkpoints" / "6" / "data" / "metadata").read_text())
    assert data_state["kind"] == "train" and data_state["position"] == 6 * 4
