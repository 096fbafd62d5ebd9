"""Input pipeline on tiny built datasets (ArrayRecord, read by index): batch format,
determinism, exact resume from a position, the same global stream on any number of hosts,
epochs that visit every example once, exact mixing (text masked for AudioSet), multi-view
evaluation, DMVR records converted from TFRecords, TFRecord builds refused with the fix."""

import json

import numpy as np
import pytest

from vatt.testing import media as F


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from vatt.data.build import build

    root = tmp_path_factory.mktemp("pipe")
    dd = str(root / "tfds")
    for name, writer in {"howto100m": F.write_howto100m, "audioset": F.write_audioset,
                         "esc50": F.write_esc50}.items():
        writer(str(root / name))
        build(name, manual_dir=str(root / name), data_dir=dd, config="tiny")
    return dd


def _cfg(data_dir, **kw):
    from vatt.data import pipeline

    c = pipeline.default_config()
    c.name, c.data_dir = "howto100m/tiny", data_dir
    c.num_frames, c.target_fps, c.frame_size = 4, 2.5, 16
    c.num_captions, c.max_text_len = 3, 6
    c.audio_noise = 0.01
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return len(a) == len(b) and all(set(x) == set(y) and all(np.array_equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


def test_training_batch_format(data_dir):
    from vatt.data import pipeline

    it = pipeline.make_iterator(_cfg(data_dir), global_batch_size=4, training=True, seed=0)
    b = next(it)
    assert set(b) == {"video", "audio", "text", "text_mask"}
    assert b["video"].shape == (4, 4, 16, 16, 3) and b["video"].dtype == np.float32
    assert -1.0 <= b["video"].min() and b["video"].max() <= 1.0
    # 4 frames at 2.5 fps = 1.6 s of 8 kHz audio, synced with the frames.
    assert b["audio"].shape == (4, 12800) and b["audio"].dtype == np.float32
    assert b["text"].shape == (4, 3, 6) and b["text"].dtype == np.int32
    assert b["text_mask"].shape == (4, 3) and b["text_mask"].dtype == np.float32
    assert (b["text_mask"][:, 0] == 1).all()  # every HowTo100M clip has its centre caption
    # Padding rows are masked and all-zero.
    assert ((b["text"].max(-1) > 0) == (b["text_mask"] > 0)).all()


def test_deterministic_and_exact_resume(data_dir):
    from vatt.data import pipeline

    cfg = _cfg(data_dir)
    a = _take(pipeline.make_iterator(cfg, global_batch_size=3, training=True, seed=5), 5)
    b = _take(pipeline.make_iterator(cfg, global_batch_size=3, training=True, seed=5), 5)
    c = _take(pipeline.make_iterator(cfg, global_batch_size=3, training=True, seed=6), 5)
    assert _same(a, b) and not _same(a, c)
    it = pipeline.make_iterator(cfg, global_batch_size=3, training=True, seed=5)
    _take(it, 3)  # 9 elements: crosses the 7-clip epoch boundary
    state = json.loads(json.dumps(it.get_state()))
    assert state == {"version": 2, "kind": "train", "seed": 5, "position": 9}
    rest = _take(it, 2)
    assert _same(rest, a[3:])
    resumed = pipeline.make_iterator(cfg, global_batch_size=3, training=True, seed=5, state=state)
    assert _same(_take(resumed, 2), rest)
    it.set_state(state)
    assert _same(_take(it, 2), rest)


def test_vgg_crop_and_no_jitter(data_dir):
    from vatt.data import pipeline

    cfg = _cfg(data_dir, crop="vgg", vgg_resize=(20, 24), color_jitter=0.0, flip=False)
    b = next(pipeline.make_iterator(cfg, global_batch_size=2, training=True))
    assert b["video"].shape == (2, 4, 16, 16, 3)


def test_official_jitter_probability_and_peak_scaled_audio_noise(data_dir):
    """color_jitter_prob=0.8 leaves about a fifth of the clips unjittered (exactly the clips of
    color_jitter=0), the others as prob=1 jitters them; audio_noise_scale='peak' makes the noise
    std audio_noise x the clip's peak."""
    from vatt.data import pipeline

    def batch(**kw):
        cfg = _cfg(data_dir, **{"audio_noise": 0.0, **kw})
        return next(pipeline.make_iterator(cfg, global_batch_size=20, training=True, seed=9))

    plain, always, often = batch(color_jitter=0.0), batch(), batch(color_jitter_prob=0.8)
    kept = [np.array_equal(o, p) for o, p in zip(often["video"], plain["video"])]
    jittered = [np.array_equal(o, a) for o, a in zip(often["video"], always["video"])]
    assert 1 <= sum(kept) <= 9 and all(k != j for k, j in zip(kept, jittered))
    clean = batch(color_jitter=0.0)["audio"]
    for scale, want in (("absolute", lambda a: 0.05), ("peak", lambda a: 0.05 * np.abs(a).max())):
        noisy = batch(color_jitter=0.0, audio_noise=0.05, audio_noise_scale=scale)["audio"]
        for a, n in zip(clean, noisy):
            if np.abs(a).max() > 0:
                np.testing.assert_allclose((n - a).std(), want(a), rtol=0.05)


def test_host_shards_are_disjoint(data_dir):
    from vatt.data import pipeline

    cfg = _cfg(data_dir, modalities="video,text")
    seen = []
    lens = []
    for p in range(2):
        it = pipeline.make_iterator(cfg, global_batch_size=4, training=False, process_index=p, process_count=2)
        lens.append(len(it))
        for b in it:
            assert b["video"].shape == (2, 4, 16, 16, 3) and "audio" not in b
            seen += [tuple(t.ravel()) + (round(float(v.mean()), 4),)
                     for t, v, ok in zip(b["text"], b["video"], b["valid"]) if ok]
    assert lens[0] == lens[1] == 2  # 7 clips: hosts hold 4 and 3, both yield ceil(4/2) batches
    assert len(seen) == 7 and len(set(seen)) == 7


def test_mixture_masks_text_for_audioset(data_dir):
    from vatt.data import pipeline

    cfg = _cfg(data_dir, mixture="howto100m/tiny:train:1,audioset/tiny:balanced_train:1")
    it = pipeline.make_iterator(cfg, global_batch_size=8, training=True, seed=3)
    batches = _take(it, 3)
    masks = np.concatenate([b["text_mask"] for b in batches])
    assert set(batches[0]) == {"video", "audio", "text", "text_mask"}
    assert int((masks.max(-1) == 0).sum()) == 12  # AudioSet clips are fully masked
    state = it.get_state()
    assert state["position"] == 24
    # The 1:1 interleave is exact: every batch holds 4 clips of each source.
    assert [int((b["text_mask"].max(-1) == 0).sum()) for b in batches] == [4, 4, 4]
    more = _take(it, 2)
    resumed = pipeline.make_iterator(cfg, global_batch_size=8, training=True, seed=3, state=state)
    assert _same(_take(resumed, 2), more)


def test_eval_multiview_audio_only(data_dir):
    from vatt.data import pipeline

    cfg = _cfg(data_dir, name="esc50/tiny", split="fold1+fold2", eval_num_clips=2)
    it = pipeline.make_iterator(cfg, global_batch_size=3, training=False)
    bs = list(it)
    assert len(bs) == len(it) == 2
    assert set(bs[0]) == {"audio", "label", "valid"}
    assert bs[0]["audio"].shape == (3, 2, 12800) and bs[0]["label"].dtype == np.int32
    assert bs[1]["valid"].tolist() == [1.0, 0.0, 0.0]
    labels = sorted(int(lab) for b in bs for lab, v in zip(b["label"], b["valid"]) if v)
    assert labels == sorted([7, 8, 14, 15])


def test_eval_multicrop_video_and_multilabel(data_dir):
    from vatt.data import pipeline

    cfg = _cfg(data_dir, name="audioset/tiny", split="balanced_train", eval_num_clips=2, eval_num_crops=3)
    b = next(pipeline.make_iterator(cfg, global_batch_size=4, training=False))
    assert b["video"].shape == (4, 6, 4, 16, 16, 3) and b["audio"].shape == (4, 6, 12800)
    assert b["labels"].shape[0] == 4 and b["labels"].dtype == np.float32
    assert b["valid"].tolist() == [1, 1, 1, 0]
    assert sorted(b["labels"][:3].sum(-1).tolist()) == [1, 2, 2]


def test_dmvr_records_are_converted_then_read_by_index(data_dir, tmp_path):
    from vatt.data import decode, dmvr, pipeline, to_array_record, tokenizer

    frames = np.stack([np.full([24, 32, 3], 10 * k, np.uint8) for k in range(12)])
    ex = [dmvr.make_example(decode.encode_jpeg(frames), np.zeros(8000, np.float32),
                            ["hello world"], label=k, video_id=f"v{k}") for k in range(3)]
    ex.insert(1, dmvr.make_example([], np.zeros(100, np.float32), ["no frames"]))
    ex.insert(2, b"not a sequence example")
    dmvr.write(str(tmp_path / "x-0.tfrecord"), ex)
    with open(tmp_path / "x-0.tfrecord", "rb") as f:  # a second file cut in its last record
        whole = f.read()
    with open(tmp_path / "x-1.tfrecord", "wb") as f:
        f.write(whole[: len(whole) - 50])
    tokenizer.save_vocab(str(tmp_path / "vocab.txt"), ["<pad>", "<unk>", "hello", "world"])
    kw = dict(dmvr_fps=5.0, dmvr_sample_rate=8000, dmvr_num_classes=5,
              vocab_path=str(tmp_path / "vocab.txt"), num_captions=1)
    with pytest.raises(ValueError, match=r"not ArrayRecord .*python -m vatt\.data\.to_array_record dmvr"):
        pipeline.make_iterator(_cfg(data_dir, name=f"dmvr:{tmp_path}/x-*.tfrecord", **kw),
                               global_batch_size=2, training=True)
    out = tmp_path / "ar"
    assert to_array_record.main(["dmvr", f"{tmp_path}/x-*.tfrecord", f"--out_dir={out}"]) == 0
    summary = json.loads((out / "conversion_summary.json").read_text())
    # File 0: 3 good records, 1 without frames, 1 garbage; file 1: the same up to its cut.
    assert summary["written"] == 5
    assert summary["skipped"] == {"no_frames": 2, "unparseable_record": 2, "truncated_file": 1}
    cfg = _cfg(data_dir, name=f"dmvr:{out}/*.array_record", **kw)
    b = next(pipeline.make_iterator(cfg, global_batch_size=2, training=True))
    assert b["video"].shape == (2, 4, 16, 16, 3) and b["label"].shape == (2,)
    assert b["text"][:, 0, :3].tolist() == [[2, 3, 0]] * 2
    ev = list(pipeline.make_iterator(cfg, global_batch_size=2, training=False))
    labels = [int(lab) for e in ev for lab, v in zip(e["label"], e["valid"]) if v]
    assert labels == [0, 1, 2, 0, 1]


def test_one_epoch_visits_every_example_once_and_the_next_reshuffles(data_dir):
    from vatt.data import pipeline

    cfg = _cfg(data_dir, name="esc50/tiny", split="fold1+fold2+fold3+fold4+fold5", modalities="label")
    n = len(pipeline.make_iterator(cfg, global_batch_size=1, training=False))
    it = pipeline.make_iterator(cfg, global_batch_size=n, training=True, seed=1)
    first, second = (next(it)["label"].tolist() for _ in range(2))
    ev = list(pipeline.make_iterator(cfg, global_batch_size=n, training=False))[0]["label"].tolist()
    assert sorted(first) == sorted(second) == sorted(ev)
    assert first != second and first != ev


@pytest.mark.parametrize("hosts", [2, 4])
def test_every_host_count_reads_the_same_global_batches(data_dir, hosts):
    """Host p's batch is rows [p*b, (p+1)*b) of the one-host global batch, from any position:
    a run resumed on another number of hosts continues the same stream."""
    from vatt.data import pipeline

    cfg = _cfg(data_dir)
    one = _take(pipeline.make_iterator(cfg, global_batch_size=4, training=True, seed=2), 4)
    state = {"version": 2, "kind": "train", "seed": 2, "position": 8}  # after 2 global batches
    parts = [_take(pipeline.make_iterator(cfg, global_batch_size=4, training=True, seed=2,
                                          process_index=p, process_count=hosts, state=state), 2)
             for p in range(hosts)]
    for t in range(2):
        for k, v in one[2 + t].items():
            assert np.array_equal(np.concatenate([parts[p][t][k] for p in range(hosts)]), v), k


def test_a_resumed_stream_reads_only_what_it_trains_on(data_dir, monkeypatch):
    """From position 8, every read is one whole batch of positions 8, 12, 16, ... (tf.data may
    run two batches' reads in parallel, so their order is not fixed): no earlier record is read
    (nothing is skipped by reading) and the first batch is among them."""
    import tensorflow as tf

    from vatt.data import pipeline, positions

    calls = []
    make_sources = pipeline._sources

    def logged(cfg):
        out = make_sources(cfg)
        for s in out:
            def read(indices, _read=s.read):
                calls.append([int(i) for i in indices])
                return _read(indices)
            s.read = read
        return out

    monkeypatch.setattr(pipeline, "_sources", logged)
    state = {"version": 2, "kind": "train", "seed": 4, "position": 8}
    it = pipeline.make_iterator(_cfg(data_dir), global_batch_size=4, training=True, seed=4, state=state)
    first = next(it)
    seen = list(calls)  # prefetching goes on reading ahead meanwhile
    plan = positions.mixture_plan([1.0])
    ahead = positions.training_positions(tf.constant(8, tf.int64), 4 * (len(seen) + 4), 4, plan, [7])
    batches = np.asarray(ahead["example"]).reshape(-1, 4).tolist()
    assert seen and batches[0] in seen
    assert all(call in batches[: len(seen) + 4] for call in seen)
    assert first["video"].shape[0] == 4


def test_a_tfrecord_build_is_refused_with_the_command_that_converts_it(tmp_path):
    import tensorflow_datasets as tfds

    import vatt.data.builders  # noqa: F401
    from vatt.data import pipeline, to_array_record

    F.write_esc50(str(tmp_path / "esc"))
    dd = str(tmp_path / "tfds")
    builder = tfds.builder("esc50/tiny", data_dir=dd)
    builder.download_and_prepare(file_format="tfrecord", download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / "esc")))
    cfg = _cfg(dd, name="esc50/tiny", split="fold1")
    with pytest.raises(ValueError, match=r"stored as tfrecord.*python -m vatt\.data\.to_array_record esc50/tiny"):
        pipeline.make_iterator(cfg, global_batch_size=2, training=False)
    assert to_array_record.main(["esc50/tiny", f"--data_dir={dd}"]) == 0
    labels = [int(lab) for b in pipeline.make_iterator(cfg, global_batch_size=2, training=False)
              for lab, v in zip(b["label"], b["valid"]) if v]
    assert sorted(labels) == [7, 8]


def test_bench_smoke():
    from vatt.data import bench

    assert bench.run(clips=3, frame_size=16, num_frames=4, short_side=24, stored_seconds=1.0,
                     sample_rate=8000, cores=1, verbose=False) > 0
