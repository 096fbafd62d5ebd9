"""Deflation (MMV): running a video model on still images.

Two equivalent routes:
1. ``images_to_video(images, t)``: repeat the image over t frames (t = the temporal patch size)
   and run the unchanged video model (temporal grid 1).
2. ``deflate_video_tokenizer(tokenizer)``: a VideoTokenizer with temporal patch 1 whose voxel
   kernel is the original one summed over its t temporal taps (sum_t W_t x = W (x repeated t
   times)) and whose temporal position table is the original one interpolated to length 1 (with
   the tokenizer's own ``pos_interpolation``; the official spline reads row 0 there). Feed it
   images as [B, 1, H, W, 3]. Both routes give identical tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vatt.models.tokenizers import VideoTokenizer, interpolate_table


def images_to_video(images: jax.Array, num_frames: int) -> jax.Array:
    """images [B, H, W, 3] -> video [B, num_frames, H, W, 3] (the image repeated)."""
    return jnp.repeat(images[:, None], num_frames, axis=1)


def fold_temporal_kernel(kernel: jax.Array, patch_size: tuple[int, int, int]) -> jax.Array:
    """Voxel kernel [t*h*w*3, D] ((t, h, w, c) order) -> image kernel [h*w*3, D] summed over t."""
    t, h, w = patch_size
    return kernel.reshape(t, h * w * 3, kernel.shape[-1]).sum(axis=0)


def deflate_video_tokenizer(tokenizer: VideoTokenizer) -> VideoTokenizer:
    """A copy of `tokenizer` for still images [B, 1, H, W, 3] (temporal patch 1, grid 1)."""
    t, h, w = tokenizer.patch_size
    d_model = tokenizer.voxel_proj.out_features
    _, height, width = tokenizer.input_size
    method = getattr(tokenizer, "pos_interpolation", "linear")
    new = VideoTokenizer(d_model, (1, h, w), (1, height, width), dtype=tokenizer.dtype,
                         pos_interpolation=method, rngs=nnx.Rngs(0))
    new.voxel_proj.kernel[...] = fold_temporal_kernel(tokenizer.voxel_proj.kernel[...],
                                                      tokenizer.patch_size)
    new.voxel_proj.bias[...] = tokenizer.voxel_proj.bias[...]
    new.temporal_pos[...] = interpolate_table(tokenizer.temporal_pos[...], 1, method)
    new.vertical_pos[...] = tokenizer.vertical_pos[...]
    new.horizontal_pos[...] = tokenizer.horizontal_pos[...]
    new.pos_ln.scale[...] = tokenizer.pos_ln.scale[...]
    new.pos_ln.bias[...] = tokenizer.pos_ln.bias[...]
    new.agg_token[...] = tokenizer.agg_token[...]
    return new
