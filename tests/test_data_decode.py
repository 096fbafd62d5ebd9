"""Decoding (PyAV), tokenizer and DMVR format: no dataset builds here."""

import numpy as np
import pytest

from vatt.data import decode as D
from vatt.testing import media as F
from vatt.data import tokenizer as tok


@pytest.mark.parametrize("name,kw", [
    ("a.mp4", dict(codec="mpeg4")),
    ("b.mp4", dict(codec="h264")),
    ("c.avi", dict(codec="mjpeg", audio_codec="pcm_s16le")),
    ("d.avi", dict(codec="mpeg4", audio_codec="pcm_s16le")),
])
def test_decode_real_videos(tmp_path, name, kw):
    path = str(tmp_path / name)
    F.write_video(path, seconds=2.0, fps=10, **kw)
    clip = D.decode_clip(path, fps=5, short_side=24, sample_rate=8000)
    assert clip.frames.shape == (10, 24, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (16000,) and clip.has_audio
    # Frame k of the file has brightness ~20 + 10 k: at 5 fps we see source frames 0, 2, 4, ...
    means = clip.frames[:, 12:, 8:].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, 20 + 20 * np.arange(10), atol=6)
    assert 0.2 < np.abs(clip.audio).max() < 0.4
    # A window: frames from 0.5 s, audio of the same duration.
    w = D.decode_clip(path, start=0.5, end=1.5, fps=10, short_side=24, sample_rate=8000)
    assert w.frames.shape[0] == 10 and w.audio.shape == (8000,)
    np.testing.assert_allclose(w.frames[:, 12:, 8:].mean(axis=(1, 2, 3)), 70 + 10 * np.arange(10), atol=6)


def test_decode_no_audio_and_wav(tmp_path):
    F.write_video(str(tmp_path / "s.mp4"), seconds=1.0, audio=False)
    c = D.decode_clip(str(tmp_path / "s.mp4"), fps=10, short_side=16, sample_rate=8000)
    assert not c.has_audio and c.audio.shape == (8000,) and not c.audio.any()
    F.write_wav(str(tmp_path / "x.wav"), seconds=1.0, sample_rate=16000)
    w = D.decode_clip(str(tmp_path / "x.wav"), video=False, sample_rate=8000)
    assert w.audio.shape == (8000,) and w.has_audio


def test_decode_bad_files(tmp_path):
    F.write_garbage(str(tmp_path / "g.mp4"))
    F.write_empty(str(tmp_path / "e.mp4"))
    F.write_video(str(tmp_path / "t.mp4"), seconds=2.0)
    F.truncate(str(tmp_path / "t.mp4"), 0.3)
    expect = {"g.mp4": D.CORRUPT, "e.mp4": D.EMPTY, "t.mp4": D.CORRUPT, "missing.mp4": D.MISSING}
    for name, reason in expect.items():
        with pytest.raises(D.DecodeError) as e:
            D.decode_clip(str(tmp_path / name))
        assert e.value.reason == reason, name


def test_tokenizer_python_and_tf_agree(tmp_path):
    caps = ["Add the Salt!", "add salt, then STIR", "stir stir", "ÉTÉ café don't"]
    vocab = tok.build_vocab(tok.count_words(caps), size=8)
    assert vocab[:2] == ["<pad>", "<unk>"] and vocab[2] == "stir" and len(vocab) == 8
    tok.save_vocab(str(tmp_path / "vocab.txt"), vocab)
    assert tok.load_vocab(str(tmp_path)) == vocab
    assert tok.words("ÉTÉ café don't") == ["été", "café", "don't"]
    tft = tok.TFTokenizer(vocab, max_len=5)
    got = tft(np.array(caps + ["", "zzz qqq"], dtype=object)).numpy()
    want = np.array([tok.encode(c, vocab, 5) for c in caps + ["", "zzz qqq"]])
    np.testing.assert_array_equal(got, want)
    assert got.shape == (6, 5) and (got[-2] == 0).all() and (got[-1][:2] == 1).all()


def test_dmvr_roundtrip(tmp_path):
    import tensorflow as tf

    from vatt.data import dmvr

    frames = np.full([6, 20, 30, 3], 100, np.uint8)
    jpegs = D.encode_jpeg(frames)
    wave = np.linspace(-1, 1, 3000).astype(np.float32)
    path = str(tmp_path / "d.tfrecord")
    dmvr.write(path, [dmvr.make_example(jpegs, wave, ["a caption", "another"], label=3, video_id="v0"),
                      dmvr.make_example(jpegs[:2], wave[:10])])
    els = [{k: v.numpy() for k, v in dmvr.parse(r).items()} for r in tf.data.TFRecordDataset(path)]
    assert len(els) == 2
    assert els[0]["video"].shape == (6,) and els[0]["label"] == 3
    np.testing.assert_allclose(els[0]["audio"], wave)
    assert list(els[0]["caption"]) == [b"a caption", b"another"] and els[0]["video_id"] == b"v0"
    assert els[1]["label"] == -1 and els[1]["caption"].shape == (0,)
    # Converted to ArrayRecord: the same records, in order, by index.
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    summary = dmvr.convert(path, str(tmp_path / "ar"))
    assert summary["written"] == 2 and summary["skipped"] == {}
    records = ArrayRecordDataSource(dmvr.array_record_files(str(tmp_path / "ar" / "*.array_record")))
    assert len(records) == 2
    assert dmvr.parse(records[1])["video"].shape == (2,)


def test_caption_cleaning_non_utf8(tmp_path):
    from vatt.data.builders import base

    p = tmp_path / "c.json"
    p.write_bytes(b'{"v": {"text": ["ok caption", "bad \xff\xfe bytes", "  "]}}')
    text, utf8 = base.load_text(str(p))
    assert not utf8
    import json
    caps = json.loads(text)["v"]["text"]
    assert base.clean_caption(caps[0]) == ("ok caption", None)
    assert base.clean_caption(caps[1]) == (None, base.NON_UTF8_CAPTION)
    assert base.clean_caption(caps[2]) == (None, base.EMPTY_CAPTION)
    assert base.clean_caption(b"\xff") == (None, base.NON_UTF8_CAPTION)
    assert base.clean_caption(7) == (None, base.BAD_ROW)
