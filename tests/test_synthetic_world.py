"""The embedded synthetic world: deterministic, host-splittable, factors shared across modalities."""

import numpy as np
import pytest

from vatt.data import synthetic
from vatt.data.synthetic import SyntheticWorld, WorldSpec


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld(WorldSpec(), seed=3)


def test_shapes_and_ranges(world):
    spec = world.spec
    b = world.train_batch(step=0, global_batch_size=8)
    assert b["video"].shape == (8, spec.num_frames, spec.frame_size, spec.frame_size, 3)
    assert b["audio"].shape == (8, spec.audio_samples)
    assert b["text"].shape == (8, spec.num_captions, spec.max_words)
    assert b["text_mask"].shape == (8, spec.num_captions)
    assert b["video"].dtype == np.float32 and b["text"].dtype == np.int32
    assert b["video"].min() >= -1 and b["video"].max() <= 1
    assert np.abs(b["audio"]).max() <= 1


def test_same_seed_same_data_and_host_split(world):
    full = world.train_batch(step=5, global_batch_size=8)
    again = SyntheticWorld(WorldSpec(), seed=3).train_batch(step=5, global_batch_size=8)
    for k in full:
        np.testing.assert_array_equal(full[k], again[k])
    halves = [world.train_batch(5, 8, process_index=p, process_count=2) for p in range(2)]
    for k in full:
        np.testing.assert_array_equal(full[k], np.concatenate([h[k] for h in halves]))
    other = SyntheticWorld(WorldSpec(), seed=4).train_batch(step=5, global_batch_size=8)
    assert not np.array_equal(full["video"], other["video"])


def test_consecutive_steps_differ(world):
    a, b = world.train_batch(0, 8), world.train_batch(1, 8)
    assert not np.array_equal(a["video"], b["video"])


def test_eval_split_has_distinct_captions(world):
    combos = world.eval_combinations(256)
    captions = {world.caption_of(c) for c in combos}
    assert len(captions) == 256
    batches = list(world.eval_batches(num_clips=10, batch_size=4))
    assert [int(b["valid"].sum()) for b in batches] == [4, 4, 2]
    assert batches[0]["text"].shape[1] == 1


def test_caption_names_the_factors(world):
    ex = world.eval_example(0, combination=0)
    words = [synthetic.VOCAB[i] for i in ex["text"][0] if i]
    factors = synthetic.decode_factors(0)
    for values, f in zip(synthetic.FACTOR_VALUES, factors):
        assert values[f] in words


def test_colour_drives_pitch_and_pixels():
    spec = WorldSpec(num_frames=4, frame_size=32, audio_rate=8000)
    rng = np.random.default_rng(0)
    spectra_peaks, colours = [], []
    for colour in (0, 7):
        factors = (colour, 0, 2, 2, 0)  # big steady circle
        audio = synthetic.render_audio(factors, spec, rng)
        spectrum = np.abs(np.fft.rfft(audio))
        spectra_peaks.append(np.argmax(spectrum) * spec.audio_rate / len(audio))
        video = synthetic.render_video(factors, spec, rng)
        colours.append(video.reshape(-1, 3).max(axis=0))
    assert spectra_peaks[1] > 3 * spectra_peaks[0]  # white is pitched far above red
    assert colours[0][0] > colours[0][1] + 0.5        # red frames are red


def test_no_text_fraction_masks_text():
    world = SyntheticWorld(WorldSpec(no_text_fraction=1.0), seed=0)
    b = world.train_batch(0, 4)
    assert b["text_mask"].sum() == 0 and b["text"].sum() == 0
