"""Child of tests/test_multiprocess_losses.py: run under launch/local.py in several processes.

Every process builds the same seeded global batch, keeps the rows its devices own, assembles
global jax.Arrays with jax.make_array_from_process_local_data, computes value + grads of the
losses (global jit form and shard_map chunked form) and process 0 prints RESULT:<json> with the
values and the all-gathered gradients.
"""

import json

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vatt import losses
from vatt.parallel.distributed import initialize

B, K, D = 8, 3, 8


def make_batch():
    """The global batch; the test rebuilds it identically for the single-process reference."""
    r = np.random.RandomState(0)
    v = r.randn(B, D).astype(np.float32)
    t = r.randn(B, K, D).astype(np.float32)
    a = r.randn(B, D).astype(np.float32)
    tm = (r.rand(B, K) > 0.3).astype(np.float32)
    tm[5] = 0.0
    sm = np.ones(B, np.float32)
    sm[2] = 0.0
    return v, t, a, tm, sm


def loss_terms(v, t, a, tm, sm, mesh=None):
    """The three losses, global form (mesh None) or chunked; used by the test too."""
    if mesh is None:
        return (losses.mil_nce(v, t, text_mask=tm, sample_mask=sm),
                losses.mil_nce(v, t, text_mask=tm, variant="symmetric"),
                losses.nce(v, a, mask=sm))
    return (losses.mil_nce_chunked(v, t, mesh, text_mask=tm, sample_mask=sm),
            losses.mil_nce_chunked(v, t, mesh, text_mask=tm, variant="symmetric"),
            losses.nce_chunked(v, a, mesh, mask=sm))


def total(terms):
    return terms[0] + 0.5 * terms[1] + terms[2]


def main():
    # From the VATT_* env vars set by the launcher. Importing jax is fine before this; any call
    # that touches devices is not.
    initialize()
    assert jax.process_count() > 1, "run me under launch/local.py"
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    batch = make_batch()

    # Rows owned by this process's devices (contiguous for a 1-D mesh over jax.devices()).
    idx = sorted(sl[0].start or 0 for sl in sharding.addressable_devices_indices_map((B,)).values())
    per_device = B // jax.device_count()
    lo, hi = idx[0], idx[-1] + per_device
    assert hi - lo == per_device * jax.local_device_count(), "process rows not contiguous"
    arrays = [jax.make_array_from_process_local_data(sharding, x[lo:hi], (B,) + x.shape[1:])
              for x in batch]

    out = {}
    for name, mesh_arg in (("global", None), ("chunked", mesh)):
        def f(v, t, a, tm, sm, mesh_arg=mesh_arg):
            terms = loss_terms(v, t, a, tm, sm, mesh_arg)
            return total(terms), terms

        (val, terms), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
            *arrays)
        grads = multihost_utils.process_allgather(grads, tiled=True)
        out[name] = {"value": float(val), "terms": [float(x) for x in terms],
                     "grads": [np.asarray(g).tolist() for g in grads]}
    out["process_count"] = jax.process_count()
    out["device_count"] = jax.device_count()
    if jax.process_index() == 0:
        print("RESULT:" + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
