"""Per-example TensorFlow transforms: temporal sampling, crops, flips, colour, audio, text.

All randomness is stateless (tf.random.stateless_*) from a per-example seed [2] int64, so an
example's augmentation depends only on (run seed, source, epoch, position) and a resumed run
reproduces it exactly. Frames arrive JPEG-encoded ([N] tf.string) and only the sampled frames
are decoded (with the crop applied during decoding). The per-pixel float work after the resize
(flip, colour jitter) runs as XLA-compiled TensorFlow functions, one fused pass over the clip
instead of one per op; VATT_DATA_XLA=0 selects the plain tf.image ops instead.
"""

from __future__ import annotations

import os
import threading

import tensorflow as tf


def fold_in(seed: tf.Tensor, data) -> tf.Tensor:
    """A new [2] int64 seed from `seed` and an integer (stateless, deterministic)."""
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


def frame_indices(num_stored: tf.Tensor, start: tf.Tensor, num_frames: int, stride: float) -> tf.Tensor:
    """[num_frames] indices start + floor(k * stride), clamped to the last frame (short clips
    repeat their last frame)."""
    idx = tf.cast(start, tf.float32) + tf.floor(tf.range(num_frames, dtype=tf.float32) * stride)
    return tf.minimum(tf.cast(idx, tf.int32), num_stored - 1)


def span(num_frames: int, stride: float) -> int:
    """Number of stored frames a clip of `num_frames` at `stride` covers."""
    return int((num_frames - 1) * stride) + 1


def random_start(num_stored: tf.Tensor, clip_span: int, seed: tf.Tensor) -> tf.Tensor:
    hi = tf.maximum(num_stored - clip_span, 0) + 1
    return tf.random.stateless_uniform([], seed, 0, hi, dtype=tf.int32)


def even_starts(num_stored: tf.Tensor, clip_span: int, num_clips: int) -> tf.Tensor:
    """[num_clips] starts spread evenly over the stored frames (multi-clip evaluation)."""
    last = tf.cast(tf.maximum(num_stored - clip_span, 0), tf.float32)
    if num_clips == 1:
        return tf.cast(tf.round(last / 2.0), tf.int32)[None]
    return tf.cast(tf.round(tf.linspace(0.0, last, num_clips)), tf.int32)


def inception_window(shape: tf.Tensor, seed: tf.Tensor, area=(0.08, 1.0), aspect=(3 / 4, 4 / 3)):
    """Random-resized-crop window (Inception style) of an image of shape [h, w, c]: [y, x, h, w]."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_size=shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=aspect, area_range=area, max_attempts=50,
        use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def vgg_window(shape: tf.Tensor, seed: tf.Tensor, out_size: int, resize_range=(256, 320)):
    """VGG-style scale jitter: resize the short side to U[resize_range] and take a random
    `out_size` square; expressed as a window of the original frame: [y, x, h, w] int32."""
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    short = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
    target = tf.random.stateless_uniform([], s1, float(resize_range[0]), float(resize_range[1]) + 1e-3)
    side = tf.cast(tf.minimum(short, short * out_size / target), tf.int32)
    side = tf.maximum(side, 1)
    u = tf.random.stateless_uniform([2], s2)
    y = tf.cast(u[0] * tf.cast(shape[0] - side + 1, tf.float32), tf.int32)
    x = tf.cast(u[1] * tf.cast(shape[1] - side + 1, tf.float32), tf.int32)
    return tf.stack([tf.minimum(y, shape[0] - side), tf.minimum(x, shape[1] - side), side, side])


def centre_windows(shape: tf.Tensor, num_crops: int, fraction: float = 1.0) -> tf.Tensor:
    """[num_crops, 4] square windows of side fraction*short side: the centre one (1 crop) or
    spread along the long side (3 crops: start, centre, end)."""
    side = tf.maximum(tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * fraction, tf.int32), 1)
    dy, dx = shape[0] - side, shape[1] - side
    if num_crops == 1:
        pos = tf.constant([0.5])
    else:
        pos = tf.linspace(0.0, 1.0, num_crops)
    along_y = dy > dx
    y = tf.where(along_y, tf.cast(pos * tf.cast(dy, tf.float32), tf.int32), tf.fill([num_crops], dy // 2))
    x = tf.where(along_y, tf.fill([num_crops], dx // 2), tf.cast(pos * tf.cast(dx, tf.float32), tf.int32))
    return tf.stack([y, x, tf.fill([num_crops], side), tf.fill([num_crops], side)], axis=1)


def _xla(fn):
    """`fn` compiled by XLA. TensorFlow runs every elementwise op as its own kernel, one full pass
    over a clip's 19 MB of float32 frames each (memory-bound on the CPU: ~5 ms a pass per core);
    XLA fuses a chain of them into one loop over the pixels. The shapes here are static per
    pipeline (frames [T, size, size, 3]), so each compiles once per process."""
    return tf.function(fn, jit_compile=True)


_XLA_OK = None
_XLA_LOCK = threading.Lock()


def _xla_ok() -> bool:
    """Whether the XLA-compiled forms below are used: probed once, eagerly, on first use; False
    when this TensorFlow cannot compile for the CPU or VATT_DATA_XLA=0 (the plain tf.image ops
    are then used: same results, about twice the time per clip)."""
    global _XLA_OK
    with _XLA_LOCK:
        if _XLA_OK is None:
            _XLA_OK = os.environ.get("VATT_DATA_XLA", "1") != "0" and _probe_xla()
    return _XLA_OK


def _probe_xla() -> bool:
    # TensorFlow's own copy of XLA reads XLA_FLAGS once, at its first compile, and aborts the
    # process on any flag its version does not know; XLA_FLAGS is set for JAX (another XLA
    # version, and flags such as the tests' --xla_backend_optimization_level=0 are not meant for
    # these kernels), so TensorFlow's XLA is made to read it empty, and it is restored at once.
    saved = os.environ.pop("XLA_FLAGS", None)
    try:
        with tf.init_scope():
            return bool(_reverse_width(tf.constant([[[1.0], [2.0]]])).numpy()[0, 0, 0] == 2.0)
    except (tf.errors.OpError, RuntimeError, ValueError, TypeError):
        return False
    finally:
        if saved is not None:
            os.environ["XLA_FLAGS"] = saved


@_xla
def _reverse_width(frames):
    return tf.reverse(frames, axis=[-2])


def _decode_crops(encoded: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """JPEG strings [T] -> uint8 [T, h, w, 3], cropped to `window` [y, x, h, w] while decoding."""
    def one(s):
        return tf.io.decode_and_crop_jpeg(s, window, channels=3)
    return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


def decode_window(encoded: tf.Tensor, window: tf.Tensor, size: int,
                  flip: tf.Tensor | None = None) -> tf.Tensor:
    """JPEG strings [T] -> float32 [T, size, size, 3] in [0, 1], cropped to `window` [y, x, h, w]
    while decoding, then bilinearly resized (no antialiasing); mirrored left-right where the
    bool scalar `flip` is true (see flip_draw).

    The mirror is applied to the uint8 crops, before the resize: half-pixel-centred bilinear
    resizing is symmetric, so the result is the mirror of the resized clip (to float rounding),
    at a fraction of the bytes (a 256-pixel uint8 crop instead of 19 MB of float32 frames).

    No clip after the resize: each output is two nested lerps a + (b - a) t, t in [0, 1], of
    inputs in [0, 1], which float rounding keeps in [0, 1] (a 19 MB pass saved per clip).
    """
    frames = _decode_crops(encoded, window)
    if flip is not None:
        frames = tf.cond(flip, lambda: tf.reverse(frames, axis=[-2]), lambda: frames)
    # Resizing float32 is about twice as fast as resizing the uint8 crops directly.
    return tf.image.resize(tf.cast(frames, tf.float32) / 255.0, [size, size], antialias=False)


def _jitter_factors(seed: tf.Tensor, strength: float):
    """(brightness delta, contrast factor, saturation factor), float32 scalars: the same draws,
    from the same split of `seed`, as tf.image.stateless_random_{brightness,contrast,saturation}."""
    s = tf.random.experimental.stateless_split(seed, 3)
    delta = tf.random.stateless_uniform([], s[0], -0.125 * strength, 0.125 * strength)
    contrast = tf.random.stateless_uniform([], s[1], 1 - 0.4 * strength, 1 + 0.4 * strength)
    saturation = tf.random.stateless_uniform([], s[2], 1 - 0.4 * strength, 1 + 0.4 * strength)
    return delta, contrast, saturation


def _channel_mean(frames):
    """float32 [T, H, W, 3] -> [T, 1, 1, 3], the mean over H and W."""
    if frames.shape.rank != 4 or None in frames.shape[:3] or (frames.shape[1] * frames.shape[2]) % 8:
        return tf.reduce_mean(frames, axis=[-3, -2], keepdims=True)
    # Summing groups of 8 pixels (24 contiguous floats) first is a reduction XLA vectorises; the
    # direct one over H and W, with the 3 channels innermost, takes twice as long.
    t, h, w = frames.shape[:3]
    sums = tf.reduce_sum(tf.reshape(frames, [t, -1, 24]), axis=1)  # [T, 24]
    return tf.reshape(tf.reduce_sum(tf.reshape(sums, [t, 8, 3]), axis=1) / (h * w), [t, 1, 1, 3])


def _jitter_math(frames, delta, contrast, saturation, signed=False):
    """tf.image's brightness -> contrast -> saturation -> clip to [0, 1], in closed form on RGB
    (then mapped to [-1, 1] in the same loop when `signed`, the model's input range).

    frames: float32 [T, H, W, 3]. Brightness then contrast is one affine map per frame and channel:
    (x + d - (mu + d)) c + mu + d = c x + (1 - c) mu + d, mu the frame's channel mean (over H, W)
    before either. Saturation scales HSV's S = (V - m) / V (V, m: max and min over r, g, b) by f and
    clips it to 1, keeping H and V; in RGB each channel is V - S V g(H) with g in [0, 1], so
    c' = V - k (V - c) with k = S' / S = min(f, V / (V - m)) (f: the saturation factor). Where
    V <= 0 tf.image sets S = 0, i.e. grey V; k clipped at 0 gives the same. Where V == m > 0,
    k = f and c' = c.
    """
    y = frames * contrast + ((1.0 - contrast) * _channel_mean(frames) + delta)
    # V and m as [T, H, W, 1] from size-1 slices, not reductions over the channel axis: XLA then
    # fuses everything below into one vectorised loop over the interleaved r, g, b values.
    r, g, b = y[..., 0:1], y[..., 1:2], y[..., 2:3]
    v = tf.maximum(tf.maximum(r, g), b)
    m = tf.minimum(tf.minimum(r, g), b)
    k = tf.clip_by_value(v / tf.maximum(v - m, 1e-12), 0.0, saturation)
    out = tf.clip_by_value(v - k * (v - y), 0.0, 1.0)
    return out * 2.0 - 1.0 if signed else out


_jitter_xla = _xla(_jitter_math)
_jitter_signed_xla = _xla(lambda frames, d, c, f: _jitter_math(frames, d, c, f, signed=True))


def colour_jitter(frames: tf.Tensor, seed: tf.Tensor, strength: float = 1.0,
                  signed: bool = False) -> tf.Tensor:
    """Same brightness / contrast / saturation change for every frame of a clip.

    frames: float32 [T, H, W, 3] in [0, 1] -> same shape, in [0, 1] (in [-1, 1] when `signed`:
    2x - 1 fused into the same pass). Equal (to float rounding, ~1e-6) to
    tf.image.stateless_random_brightness(0.125 s), _contrast(1 -+ 0.4 s) and _saturation(1 -+ 0.4 s)
    in that order, each from its part of stateless_split(seed, 3), then a clip; s = strength.
    """
    if not _xla_ok():
        s = tf.random.experimental.stateless_split(seed, 3)
        frames = tf.image.stateless_random_brightness(frames, 0.125 * strength, s[0])
        frames = tf.image.stateless_random_contrast(frames, 1 - 0.4 * strength, 1 + 0.4 * strength, s[1])
        frames = tf.image.stateless_random_saturation(frames, 1 - 0.4 * strength, 1 + 0.4 * strength, s[2])
        frames = tf.clip_by_value(frames, 0.0, 1.0)
        return frames * 2.0 - 1.0 if signed else frames
    return (_jitter_signed_xla if signed else _jitter_xla)(frames, *_jitter_factors(seed, strength))


def flip_draw(seed: tf.Tensor) -> tf.Tensor:
    """Whether to mirror a clip: a bool scalar, true with probability 1/2 (drawn from `seed`)."""
    return tf.random.stateless_uniform([], seed) < 0.5


def maybe_flip(frames: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Left-right flip of frames [..., W, C] with probability 1/2 (flip_draw(seed))."""
    flip = flip_draw(seed)
    reverse = _reverse_width if _xla_ok() else (lambda x: tf.reverse(x, axis=[-2]))
    return tf.cond(flip, lambda: reverse(frames), lambda: frames)


def audio_window(wave: tf.Tensor, start_sample: tf.Tensor, num_samples: int) -> tf.Tensor:
    """[num_samples] from `start_sample`, zero-padded past the end of the waveform."""
    start_sample = tf.clip_by_value(start_sample, 0, tf.maximum(tf.shape(wave)[0], 0))
    out = wave[start_sample : start_sample + num_samples]
    out = tf.pad(out, [[0, num_samples - tf.shape(out)[0]]])
    return tf.ensure_shape(out, [num_samples])


def add_noise(wave: tf.Tensor, seed: tf.Tensor, std: float) -> tf.Tensor:
    return wave + std * tf.random.stateless_normal(tf.shape(wave), seed)


def captions_to_ids(captions: tf.Tensor, tokenizer, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Caption strings [C] -> ids int32 [k, L] and mask float32 [k] (first k captions kept;
    captions without any word and missing rows are masked out)."""
    captions = captions[:k]
    ids = tokenizer(captions)  # [c, L]
    c = tf.shape(ids)[0]
    ids = tf.pad(ids, [[0, k - c], [0, 0]])
    mask = tf.cast(tf.reduce_any(ids > 0, axis=-1), tf.float32)
    return tf.ensure_shape(ids, [k, tokenizer.max_len]), tf.ensure_shape(mask, [k])
