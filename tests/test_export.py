"""python -m vatt.export: a checkpoint to .safetensors / .npz (no pickle) with its config.json
beside; reloaded arrays equal the checkpoint's bit for bit; --part keeps one backbone."""

import json
import os

import ml_dtypes
import numpy as np
import pytest

from vatt import export, weight_files


def _same_bits(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert (x.dtype, x.shape) == (y.dtype, y.shape), k
        assert x.tobytes() == y.tobytes(), k


def test_formats_round_trip_every_dtype():
    tree = {"a/kernel": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
            "a/bf16": (np.arange(6, dtype=np.float32) / 3).astype(ml_dtypes.bfloat16),
            "b/count": np.int64(-5) * np.ones((), np.int64), "b/mask": np.array([True, False]),
            "b/ids": np.arange(5, dtype=np.int32), "b/half": np.ones((2, 1), np.float16),
            "c/empty": np.zeros((0, 3), np.float32), "c/nan": np.array([np.nan, -0.0, np.inf])}
    for write, read in [(weight_files.to_safetensors, weight_files.from_safetensors),
                        (weight_files.to_npz, weight_files.from_npz)]:
        back, meta = read(write(tree, {"vatt_part": "all"}))
        _same_bits(tree, back)
        assert meta["vatt_part"] == "all"
    data = weight_files.to_safetensors(tree)
    n = int.from_bytes(data[:8], "little")
    assert n % 8 == 0 and len(data) == 8 + n + sum(np.asarray(v).nbytes for v in tree.values())


def test_export_reloads_bit_for_bit(one_device_runs, tmp_path, capsys):
    from vatt.train.checkpointing import load_model_tree

    workdir = one_device_runs["default"]
    want = load_model_tree(workdir)
    assert any(k.startswith("heads/") for k in want)  # batch-norm statistics included
    out = str(tmp_path / "model.safetensors")
    assert export.main([f"--workdir={workdir}", f"--output={out}"]) == 0
    assert f"Exported {len(want)} arrays" in capsys.readouterr().out
    _same_bits(want, weight_files.load(out))
    assert weight_files.load_metadata(out)["vatt_part"] == "all"
    with open(os.path.join(workdir, "config.json")) as f, open(out + ".config.json") as g:
        assert json.load(f) == json.load(g)

    video = str(tmp_path / "video.npz")
    assert export.main([f"--workdir={workdir}", f"--output={video}", "--part=video"]) == 0
    got = weight_files.load(video)
    _same_bits({k: v for k, v in want.items() if k.startswith("video_backbone/")}, got)
    assert got and all(k.startswith("video_backbone/") for k in got)
    assert any("/encoder/" in k for k in got) and any("/tokenizer/" in k for k in got)
    with np.load(video, allow_pickle=False) as z:  # plain NumPy reads it, without pickle
        assert set(z.files) == set(got) | {weight_files.METADATA}
    assert os.path.exists(video + ".config.json")


@pytest.mark.parametrize("args, message", [
    (["--part=vision"], "--part='vision' is not known: use one of all, video, audio, text"),
    (["--output=model.pt"], "name the file <name>.safetensors or <name>.npz"),
    (["--workdir=<tmp>"], "config.json does not exist: --workdir must be a training run"),
    (["--verbose"], "unexpected argument '--verbose'"),
])
def test_bad_arguments_are_refused(tmp_path, capsys, args, message):
    argv = {"--workdir": str(tmp_path / "run"), "--output": str(tmp_path / "m.npz")}
    for a in args:
        flag, _, value = a.partition("=")
        argv[flag] = value.replace("<tmp>", str(tmp_path))
    assert export.main([f"{k}={v}" if v else k for k, v in argv.items()]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_part_of_other_models():
    ma = {"video_tokenizer/x": np.zeros(1), "text_tokenizer/x": np.zeros(1),
          "shared_backbone/w": np.zeros(1), "heads/va/w": np.zeros(1)}
    assert sorted(export.select(ma, "video", {})) == ["shared_backbone/w", "video_tokenizer/x"]
    clf = {"backbone/encoder/w": np.zeros(1), "head/kernel": np.zeros(1)}
    cfg = {"finetune": {"modality": "audio"}}
    assert list(export.select(clf, "audio", cfg)) == ["backbone/encoder/w"]
    with pytest.raises(export.ExportError, match="classifier over the 'audio' backbone"):
        export.select(clf, "video", cfg)
    with pytest.raises(export.ExportError, match="holds no text backbone"):
        export.select({"video_backbone/w": np.zeros(1)}, "text", {})
