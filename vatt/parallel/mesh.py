"""The one sharding model: jax.jit over a device Mesh with NamedSharding.

The global batch is split over the `data` axis; parameters are replicated. Each
host builds only its share of the batch and the shares are assembled into global
arrays, so the same code runs on 1 CPU, N fake CPU devices, several processes and
a pod.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_data: int = -1) -> Mesh:
    """A 1-D mesh over every device (`num_data=-1`) or the first `num_data` devices."""
    devices = jax.devices()
    n = len(devices) if num_data in (-1, None) else int(num_data)
    if n > len(devices) or n < 1:
        raise ValueError(f"mesh.data={num_data} but {len(devices)} devices are visible; "
                         f"use -1 (all devices) or a number in [1, {len(devices)}]")
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis over `data`, everything else unsplit."""
    return NamedSharding(mesh, P(DATA_AXIS))


def state_sharding_rule(mesh: Mesh, fsdp: bool, min_fsdp_size: int = 2**14):
    """Sharding of one state leaf: replicated, or (FSDP) split over `data` along its largest
    dimension that the axis size divides.

    FSDP stores parameters and optimizer state 1/N per device; jit inserts the all-gathers
    before use and reduce-scatters the gradients. Small leaves (biases, norms, scalars)
    stay replicated: sharding them costs more in collectives than it saves.
    """
    n = mesh.shape[DATA_AXIS]

    def rule(leaf) -> NamedSharding:
        shape = getattr(leaf, "shape", ())
        if not fsdp or n == 1 or int(np.prod(shape, dtype=np.int64)) < min_fsdp_size:
            return replicated(mesh)
        for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
            if shape[dim] % n == 0:
                spec = [None] * len(shape)
                spec[dim] = DATA_AXIS
                return NamedSharding(mesh, P(*spec))
        return replicated(mesh)

    return rule


def host_to_global(host_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles per-host shares [b_local, ...] into global arrays [B, ...] sharded on `data`."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in host_batch.items()}


def fetch(tree: Any) -> Any:
    """Global arrays to host numpy on every process (gathers across hosts if needed)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)
