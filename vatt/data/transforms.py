"""Per-example TensorFlow transforms: temporal sampling, crops, flips, colour, audio, text.

All randomness is stateless (tf.random.stateless_*) from a per-example seed [2] int64, so an
example's augmentation depends only on (run seed, source, epoch, position) and a resumed run
reproduces it exactly. Frames arrive JPEG-encoded ([N] tf.string) and only the sampled frames
are decoded (with the crop applied during decoding).
"""

from __future__ import annotations

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


def decode_window(encoded: tf.Tensor, window: tf.Tensor, size: int) -> tf.Tensor:
    """JPEG strings [T] -> float32 [T, size, size, 3] in [0, 1], cropped to `window` while decoding."""
    def one(s):
        return tf.io.decode_and_crop_jpeg(s, window, channels=3)
    frames = tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    frames = tf.image.resize(tf.cast(frames, tf.float32) / 255.0, [size, size], antialias=False)
    return tf.clip_by_value(frames, 0.0, 1.0)


def colour_jitter(frames: tf.Tensor, seed: tf.Tensor, strength: float = 1.0) -> tf.Tensor:
    """Same brightness / contrast / saturation change for every frame of a clip (frames in [0,1])."""
    s = tf.random.experimental.stateless_split(seed, 3)
    frames = tf.image.stateless_random_brightness(frames, 0.125 * strength, s[0])
    frames = tf.image.stateless_random_contrast(frames, 1 - 0.4 * strength, 1 + 0.4 * strength, s[1])
    frames = tf.image.stateless_random_saturation(frames, 1 - 0.4 * strength, 1 + 0.4 * strength, s[2])
    return tf.clip_by_value(frames, 0.0, 1.0)


def maybe_flip(frames: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.cond(flip, lambda: tf.reverse(frames, axis=[-2]), lambda: frames)


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
