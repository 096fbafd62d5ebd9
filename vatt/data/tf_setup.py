"""TensorFlow set-up for the data layer: TF runs on the host CPU only."""

from __future__ import annotations


def hide_accelerators() -> None:
    """Keep TensorFlow off GPUs/TPUs so JAX owns them (tf.data only needs the host CPU)."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
        tf.config.set_visible_devices([], "TPU")
    except (RuntimeError, ValueError):
        pass  # Already initialised (devices can only be hidden before first use) or no such type.
