"""The fast training-transform paths of vatt.data.transforms against the tf.image formulas they
replace: colour jitter (closed-form saturation, fused brightness / contrast, XLA-compiled) equals
tf.image's brightness -> contrast -> saturation -> clip for the same seed, including saturation
clipping and values pushed outside [0, 1]; it is deterministic in its seed; decode_window equals
decode + crop + resize + clip; maybe_flip equals tf.reverse; the tf.image fallback is exact."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from vatt.data import transforms as T  # noqa: E402

# float32 rounding differs between the fused closed form and tf.image's HSV round trip (a few
# ulps of values <= ~1.5, and the channel means are summed in another order): seen <= 6e-7.
ATOL = 1e-5


def _ref_colour_jitter(frames, seed, strength):
    """The previous implementation: tf.image's stateless random ops in sequence."""
    s = tf.random.experimental.stateless_split(seed, 3)
    frames = tf.image.stateless_random_brightness(frames, 0.125 * strength, s[0])
    frames = tf.image.stateless_random_contrast(frames, 1 - 0.4 * strength, 1 + 0.4 * strength, s[1])
    frames = tf.image.stateless_random_saturation(frames, 1 - 0.4 * strength, 1 + 0.4 * strength, s[2])
    return tf.clip_by_value(frames, 0.0, 1.0)


def _ref_decode_window(encoded, window, size):
    frames = tf.map_fn(lambda s: tf.io.decode_and_crop_jpeg(s, window, channels=3), encoded,
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    frames = tf.image.resize(tf.cast(frames, tf.float32) / 255.0, [size, size], antialias=False)
    return tf.clip_by_value(frames, 0.0, 1.0)


def _clip(rng, t=4, h=24, w=24):
    """float32 [t, h, w, 3] in [0, 1]: smooth colour fields plus noise, some pixels fully
    saturated (a channel at 0), some grey, some black and white."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = np.stack([yy, xx, 1 - yy * xx], -1)[None] * rng.uniform(0.3, 1.0, [t, 1, 1, 3])
    x = np.clip(base + rng.normal(0, 0.15, [t, h, w, 3]), 0, 1)
    x[:, 0, :, 2] = 0.0  # S = 1: any f > 1 clips
    x[:, 1, :] = x[:, 1, :, :1]  # grey: V == m
    x[:, 2, :4] = 0.0
    x[:, 2, 4:8] = 1.0
    return tf.constant(x.astype(np.float32))


@pytest.mark.parametrize("shape", [(4, 24, 24, 3), (3, 15, 17, 3)])  # grouped / plain channel mean
@pytest.mark.parametrize("strength", [0.5, 1.0, 2.0])
def test_colour_jitter_matches_tf_image(shape, strength):
    rng = np.random.default_rng(int(strength * 10) + shape[1])
    frames = _clip(rng, *shape[:3])
    worst = 0.0
    for k in range(6):
        seed = tf.constant([k, 17], tf.int64)
        got = T.colour_jitter(frames, seed, strength).numpy()
        want = _ref_colour_jitter(frames, seed, strength).numpy()
        assert got.shape == want.shape and got.dtype == np.float32
        assert got.min() >= 0.0 and got.max() <= 1.0
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst < ATOL, worst


def test_colour_jitter_in_tf_data_map_matches_tf_image():
    """As the pipeline runs it: inside a traced tf.data map function, with a static clip shape."""
    frames = _clip(np.random.default_rng(0), 4, 32, 32)
    seeds = tf.constant([[k, 3] for k in range(5)], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda s: (T.colour_jitter(frames, s, 1.0), _ref_colour_jitter(frames, s, 1.0)),
        num_parallel_calls=2, deterministic=True)
    for got, want in ds.as_numpy_iterator():
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.4, 3.0])
def test_closed_form_saturation_matches_adjust_saturation(factor):
    """With brightness 0 and contrast 1 only the saturation step is left: V - k (V - c) with
    k = min(f, V / (V - m)) against tf.image.adjust_saturation (HSV round trip) then a clip, on
    values inside and outside [0, 1] (as after brightness and contrast), f * S > 1 included."""
    rng = np.random.default_rng(int(factor * 10))
    x = rng.uniform(-0.3, 1.3, [2, 40, 40, 3]).astype(np.float32)
    x[0, :10, :, 1] = 0.0  # S = 1 where V > 0
    x[0, 10:20] = x[0, 10:20, :, :1]  # grey
    x[1, :10] = -np.abs(x[1, :10])  # V <= 0
    x = tf.constant(x)
    want = tf.clip_by_value(tf.image.adjust_saturation(x, factor), 0.0, 1.0).numpy()
    plain = T._jitter_math(x, 0.0, 1.0, factor).numpy()
    compiled = T._jitter_xla(x, tf.constant(0.0), tf.constant(1.0), tf.constant(factor)).numpy()
    np.testing.assert_allclose(plain, want, atol=ATOL, rtol=0)
    np.testing.assert_allclose(compiled, want, atol=ATOL, rtol=0)


def test_colour_jitter_is_a_function_of_its_seed():
    frames = _clip(np.random.default_rng(1))
    jit = tf.function(lambda f, s: T.colour_jitter(f, s, 1.0))
    a = T.colour_jitter(frames, tf.constant([5, 6], tf.int64)).numpy()
    b = jit(frames, tf.constant([5, 6], tf.int64)).numpy()
    c = T.colour_jitter(frames, tf.constant([5, 7], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)  # bit for bit, eager or traced
    assert np.abs(a - c).max() > 1e-2


def _jpegs(n=6, h=64, w=96):
    rng = np.random.default_rng(2)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = []
    for k in range(n):
        img = np.stack([(xx * 2 + k * 9) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.float32)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        out.append(tf.io.encode_jpeg(img, quality=90))
    return tf.stack(out)


@pytest.mark.parametrize("window", [[0, 0, 64, 96], [10, 20, 30, 50], [3, 7, 16, 16], [5, 0, 59, 64]])
def test_decode_window_matches_decode_crop_resize(window):
    enc, win = _jpegs(), tf.constant(window, tf.int32)
    got = T.decode_window(enc, win, 24).numpy()
    want = _ref_decode_window(enc, win, 24).numpy()
    assert got.shape == (6, 24, 24, 3) and got.dtype == np.float32
    assert got.min() >= 0.0 and got.max() <= 1.0  # no clip needed after a bilinear resize
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_maybe_flip_is_reverse_or_identity_by_seed():
    frames = _clip(np.random.default_rng(3))
    seen = set()
    for k in range(8):
        seed = tf.constant([k, 1], tf.int64)
        flip = bool(tf.random.stateless_uniform([], seed) < 0.5)
        want = tf.reverse(frames, axis=[-2]) if flip else frames
        np.testing.assert_array_equal(T.maybe_flip(frames, seed).numpy(), want.numpy())
        seen.add(flip)
    assert seen == {True, False}


def test_plain_fallback_is_the_tf_image_formula(monkeypatch):
    """Without XLA (VATT_DATA_XLA=0 or no CPU compiler) the tf.image ops run: bit-exact."""
    monkeypatch.setattr(T, "_XLA_OK", False)
    frames = _clip(np.random.default_rng(4))
    seed = tf.constant([9, 9], tf.int64)
    np.testing.assert_array_equal(T.colour_jitter(frames, seed, 1.0).numpy(),
                                  _ref_colour_jitter(frames, seed, 1.0).numpy())
    for k in range(4):
        seed = tf.constant([k, 1], tf.int64)
        flip = bool(tf.random.stateless_uniform([], seed) < 0.5)
        want = tf.reverse(frames, axis=[-2]) if flip else frames
        np.testing.assert_array_equal(T.maybe_flip(frames, seed).numpy(), want.numpy())


def test_xla_path_is_in_use():
    """The fast path is what runs here (the probe found XLA), so the tests above exercised it."""
    assert T._xla_ok()


@pytest.mark.parametrize("window", [[0, 0, 64, 96], [5, 17, 40, 29]])
def test_flip_before_the_resize_is_the_mirror_of_the_resized_clip(window):
    encoded = _jpegs()
    win = tf.constant(window, tf.int32)
    plain = T.decode_window(encoded, win, 24).numpy()
    mirrored = T.decode_window(encoded, win, 24, tf.constant(True)).numpy()
    np.testing.assert_allclose(mirrored, plain[:, :, ::-1], atol=1e-6)
    np.testing.assert_array_equal(T.decode_window(encoded, win, 24, tf.constant(False)).numpy(), plain)


def test_signed_jitter_is_twice_the_jitter_minus_one():
    frames = tf.constant(_clip(np.random.default_rng(3)))
    seed = tf.constant([4, 2], tf.int64)
    np.testing.assert_allclose(T.colour_jitter(frames, seed, 1.0, signed=True).numpy(),
                               T.colour_jitter(frames, seed, 1.0).numpy() * 2 - 1, atol=1e-6)
