"""Peak throughput to compute MFU against: datasheet dense peaks by device kind, and a large
matmul measured in the same process (the only honest "peak" on a CPU)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

# Dense (no sparsity) peak TFLOP/s per device: (bfloat16, float32). float32 matmuls run on the
# tensor cores as TF32 under JAX's default precision on Ampere and later, so the float32 column
# is the TF32 dense peak. Matched by substring of jax.Device.device_kind, first match wins, so
# the more specific names come first.
PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("H100 PCIe", 756.0, 378.0),
    ("H100 NVL", 835.0, 417.0),
    ("H100", 989.4, 494.7),      # SXM5: "NVIDIA H100 80GB HBM3"
    ("H200", 989.4, 494.7),
    ("GH200", 989.4, 494.7),
    ("B200", 2250.0, 1100.0),
    ("A100", 312.0, 156.0),
    ("L40S", 362.0, 183.0),
    ("L4", 121.0, 60.0),
    ("TPU v6 lite", 918.0, 918.0),
    ("TPU v5 lite", 197.0, 197.0),
    ("TPU v5p", 459.0, 459.0),
    ("TPU v5", 459.0, 459.0),
    ("TPU v4", 275.0, 275.0),
)


def datasheet_peak(device: jax.Device, dtype: str) -> float | None:
    """Dense peak FLOP/s of one device for `dtype` ("bfloat16"|"float32"), None if unknown
    (every CPU: there the measured matmul is the peak)."""
    if device.platform == "cpu":
        return None
    kind = device.device_kind
    for name, bf16, f32 in PEAK_TFLOPS:
        if name.lower() in kind.lower():
            return (bf16 if dtype == "bfloat16" else f32) * 1e12
    return None


def measure_matmul(n: int = 2048, dtype: str = "float32", reps: int = 5,
                   device: jax.Device | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    """FLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs) on one device, median of `reps` timed
    runs after one warm-up. On CPU XLA runs it on every core of the host. `clock` reads the
    seconds before and after each timed run (tests pass their own to check the arithmetic)."""
    device = device or jax.devices()[0]
    key = jax.random.key(0)
    a = jax.device_put(jax.random.normal(key, (n, n), jnp.float32).astype(dtype), device)
    b = jax.device_put(jax.random.normal(jax.random.fold_in(key, 1), (n, n),
                                         jnp.float32).astype(dtype), device)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    times = []
    for _ in range(reps):
        t = clock()
        f(a, b).block_until_ready()
        times.append(clock() - t)
    return 2.0 * n**3 / statistics.median(times)
