"""Build every tiny dataset layout (real media files + bad ones) and check what was written."""

import numpy as np
import pytest

from vatt.testing import media as F


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from vatt.data.build import build

    root = tmp_path_factory.mktemp("data")
    out = {"data_dir": str(root / "tfds"), "info": {}, "summary": {}}
    writers = {"howto100m": F.write_howto100m, "audioset": F.write_audioset,
               "ucf101_local": F.write_ucf101, "esc50": F.write_esc50, "msrvtt": F.write_msrvtt}
    for name, writer in writers.items():
        out["info"][name] = writer(str(root / name))
        out["summary"][name] = build(name, manual_dir=str(root / name), data_dir=out["data_dir"], config="tiny")
    return out


def _load(built, name, split):
    import tensorflow_datasets as tfds

    # Built datasets are ArrayRecord: tfds reads them back by index (decoded to numpy).
    return [{k: np.asarray(v) if isinstance(v, list) else v for k, v in ex.items()}
            for ex in tfds.data_source(f"{name}/tiny", split=split, data_dir=built["data_dir"])]


def _skipped(summary):
    return {(it["item"], it["reason"]) for it in summary["items"] if it["action"] == "skipped"}


def test_howto100m(built):
    s = built["summary"]["howto100m"]
    exs = {(e["video_id"].decode(), round(float(e["start"]), 2)): e for e in _load(built, "howto100m", "train")}
    # 3 good 6 s videos -> 2 non-overlapping 3 s clips each; the silent video -> 1 clip (kept).
    assert sorted(exs) == [("silent", 0.0), ("vid0", 0.0), ("vid0", 3.0), ("vid1", 0.0), ("vid1", 3.0),
                           ("vid2", 0.0), ("vid2", 3.0)]
    assert s["written"]["train"] == 7
    e = exs[("vid1", 3.0)]
    assert e["video"].shape == (15, 32, 42, 3) and e["audio"].shape == (24000,) and e["has_audio"]
    # Caption neighbourhood: centre caption first, then by distance; the empty caption is dropped.
    assert [c.decode() for c in e["caption"]] == ["stir well 1", "add the Salt!", "first step of video 1"]
    np.testing.assert_allclose(e["caption_start"], [1.7, -1.3, -2.8], atol=1e-5)
    assert [c.decode() for c in exs[("vid0", 0.0)]["caption"]][0] == "first step of video 0"
    silent = exs[("silent", 0.0)]
    assert not silent["has_audio"] and not silent["audio"].any() and silent["audio"].shape == (24000,)
    assert {("corrupt", "corrupt_file"), ("missing", "missing_file"), ("badrow", "bad_row"),
            ("vid0#caption2", "empty_caption")} <= _skipped(s)
    assert s["kept_with_fix"]["train"] == {"no_audio_track_zero_filled": 1}
    from vatt.data import tokenizer as tok
    import tensorflow_datasets as tfds
    vocab = tok.load_vocab(tfds.builder("howto100m/tiny", data_dir=built["data_dir"]).data_dir)
    assert vocab[:2] == ["<pad>", "<unk>"] and {"salt", "stir", "audio"} <= set(vocab)


def test_audioset(built):
    s = built["summary"]["audioset"]
    info = built["info"]["audioset"]
    train = _load(built, "audioset", "balanced_train")
    got = {e["video_id"].decode(): sorted(e["labels"].tolist()) for e in train}
    assert got == {k: sorted(v) for k, v in info["splits"]["balanced_train"].items()}
    assert len(_load(built, "audioset", "eval")) == 1
    assert train[0]["video"].shape[1:] == (32, 42, 3) and train[0]["audio"].ndim == 1
    assert s["skipped"]["balanced_train"] == {"missing_file": 1, "bad_row": 1, "empty_file": 1}
    import tensorflow_datasets as tfds
    b = tfds.builder("audioset/tiny", data_dir=built["data_dir"])
    assert b.info.metadata["class_names"][:2] == ["Speech", "Male speech"]


def test_ucf101_splits_and_case(built):
    s = built["summary"]["ucf101_local"]
    for split in (1, 2, 3):
        train = _load(built, "ucf101_local", f"train{split}")
        test = _load(built, "ucf101_local", f"test{split}")
        # The YoYo g03 file is truncated (corrupt): missing from test3 / train1 / train2.
        assert len(test) == (2 if split == 3 else 3) and len(train) == (6 if split == 3 else 5)
        assert all(f"_g{split:02d}_" in e["filename"].decode() for e in test)
        assert not any(f"_g{split:02d}_" in e["filename"].decode() for e in train)
    labels = {e["filename"].decode().split("/")[0]: int(e["label"]) for e in _load(built, "ucf101_local", "train3")}
    assert labels == {"ApplyEyeMakeup": 0, "HandstandPushups": 1, "YoYo": 2}  # case-insensitive match
    assert s["skipped"]["test3"] == {"corrupt_file": 1}
    e = _load(built, "ucf101_local", "test1")[0]
    assert e["video"].shape[1:] == (32, 42, 3) and e["video"].shape[0] in (7, 8)


def test_esc50_folds(built):
    s = built["summary"]["esc50"]
    for fold in range(1, 6):
        exs = _load(built, "esc50", f"fold{fold}")
        assert len(exs) == 2 and all(int(e["fold"]) == fold for e in exs)
        assert all(e["audio"].shape == (8000,) for e in exs)
        assert sorted(int(e["label"]) for e in exs) == [(fold * 7 + j) % 50 for j in range(2)]
    assert len(_load(built, "esc50", "fold1+fold2+fold3+fold4")) == 8
    assert s["skipped"]["fold1"] == {"corrupt_file": 1, "missing_file": 1}
    assert s["skipped"]["meta"] == {"bad_row": 1}


def test_msrvtt_1ka(built):
    s = built["summary"]["msrvtt"]
    info = built["info"]["msrvtt"]
    train = _load(built, "msrvtt", "train")
    test = _load(built, "msrvtt", "test")
    assert sorted(e["video_id"].decode() for e in train) == sorted(info["train"])
    assert sorted(e["video_id"].decode() for e in test) == sorted(info["test"])
    e = [x for x in train if x["video_id"] == b"video0"][0]
    assert len(e["caption"]) == 20  # the empty and the non-string caption were dropped
    t = [x for x in test if x["video_id"] == b"video1"][0]
    assert t["caption_1k"].decode() == "the 1k-A caption of clip 1"
    assert ("video6", "corrupt_file") in _skipped(s)
    assert s["skipped"]["meta"] == {"empty_caption": 1, "bad_row": 1}


def test_build_is_reused_and_cli(built, tmp_path, capsys):
    from vatt.data import build as build_mod

    rc = build_mod.main(["esc50/tiny", "--manual_dir", "/nonexistent", "--data_dir", built["data_dir"]])
    assert rc == 0  # already built: reused, not rebuilt from the (absent) manual dir
    assert "examples written" in capsys.readouterr().out
