"""Tests for vatt/losses.py: NCE / MIL-NCE against loop references, masks, invariances, devices."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from subprocess_utils import run_python
from vatt import losses

TAU = 0.07


def _lse(xs):
    xs = np.asarray(xs, np.float64)
    m = xs.max()
    return m + math.log(np.exp(xs - m).sum())


def ref_mil_nce(video, text, tau=TAU, text_mask=None, sample_mask=None, variant="asymmetric"):
    """Straight-from-the-formula loop reference in float64 (DESIGN.md section 3)."""
    video = np.asarray(video, np.float64)
    text = np.asarray(text, np.float64)
    b_size, k_size, _ = text.shape
    tm = np.ones((b_size, k_size)) if text_mask is None else np.asarray(text_mask, np.float64)
    sm = np.ones(b_size) if sample_mask is None else np.asarray(sample_mask, np.float64)
    v = video / np.linalg.norm(video, axis=-1, keepdims=True)
    t = text / np.linalg.norm(text, axis=-1, keepdims=True)

    def cand_ok(j, k):
        return sm[j] > 0 and tm[j, k] > 0

    losses_ = []
    for b in range(b_size):
        pos = [v[b] @ t[b, k] / tau for k in range(k_size) if cand_ok(b, k)]
        if not pos:
            continue
        v2t = [v[b] @ t[j, k] / tau for j in range(b_size) for k in range(k_size) if cand_ok(j, k)]
        t2v = [v[j] @ t[b, k] / tau for j in range(b_size) for k in range(k_size)
               if sm[j] > 0 and cand_ok(b, k)]
        if variant == "asymmetric":
            losses_.append(_lse(v2t + t2v) - _lse(pos))
        else:
            losses_.append((_lse(v2t) - _lse(pos)) + (_lse(t2v) - _lse(pos)))
    return float(np.mean(losses_)) if losses_ else 0.0


def _data(b=6, k=3, d=8, seed=0):
    r = np.random.RandomState(seed)
    return r.randn(b, d).astype(np.float32), r.randn(b, k, d).astype(np.float32)


def test_single_clip_is_log2():
    v, t = _data(1, 1)
    np.testing.assert_allclose(losses.mil_nce(v, t), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(losses.nce(v, t[:, 0]), math.log(2), rtol=1e-6)
    # Symmetric: each direction holds the positive once, so a lone clip costs nothing.
    np.testing.assert_allclose(losses.mil_nce(v, t, variant="symmetric"), 0.0, atol=1e-6)


@pytest.mark.parametrize("variant", ["asymmetric", "symmetric"])
@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_matches_loop_reference(variant, tau):
    v, t = _data()
    got = losses.mil_nce(v, t, temperature=tau, variant=variant)
    np.testing.assert_allclose(got, ref_mil_nce(v, t, tau, variant=variant), rtol=1e-5)


@pytest.mark.parametrize("variant", ["asymmetric", "symmetric"])
def test_masked_matches_loop_reference(variant):
    v, t = _data(b=7, k=4, seed=1)
    tm = np.random.RandomState(2).rand(7, 4) > 0.4
    tm[3] = False  # a clip without text
    sm = np.array([1, 1, 0, 1, 1, 0, 1], np.float32)
    got = losses.mil_nce(v, t, text_mask=tm, sample_mask=sm, variant=variant)
    np.testing.assert_allclose(got, ref_mil_nce(v, t, TAU, tm, sm, variant), rtol=1e-5)


def test_scale_invariance_and_dtype():
    v, t = _data()
    base = losses.mil_nce(v, t)
    np.testing.assert_allclose(losses.mil_nce(3.0 * v, 0.1 * t), base, rtol=1e-5)
    bf = losses.mil_nce(jnp.asarray(v, jnp.bfloat16), jnp.asarray(t, jnp.bfloat16))
    assert bf.dtype == jnp.float32
    np.testing.assert_allclose(bf, base, rtol=3e-2)


def test_permutation_invariance():
    v, t = _data(b=6, k=4, seed=3)
    tm = np.random.RandomState(4).rand(6, 4) > 0.3
    tm[:, 0] = True
    base = losses.mil_nce(v, t, text_mask=tm)
    perm = np.random.RandomState(5).permutation(6)
    np.testing.assert_allclose(losses.mil_nce(v[perm], t[perm], text_mask=tm[perm]), base, rtol=1e-5)
    kperm = np.random.RandomState(6).permutation(4)
    np.testing.assert_allclose(losses.mil_nce(v, t[:, kperm], text_mask=tm[:, kperm]), base,
                               rtol=1e-5)


@pytest.mark.parametrize("variant", ["asymmetric", "symmetric"])
def test_masked_clips_equal_removed_clips(variant):
    v, t = _data(b=8, k=3, seed=7)
    sm = np.array([1, 0, 1, 1, 0, 1, 1, 0], np.float32)
    keep = sm > 0
    # Garbage in the masked rows must not matter.
    v2, t2 = v.copy(), t.copy()
    v2[~keep] = 1e3
    t2[~keep] = -1e3
    got = losses.mil_nce(v2, t2, sample_mask=sm, variant=variant)
    want = losses.mil_nce(v[keep], t[keep], variant=variant)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(losses.nce(v2[:, :], t2[:, 0], mask=sm, variant=variant),
                               losses.nce(v[keep], t[keep, 0], variant=variant), rtol=1e-5)


def test_masked_candidates_equal_removed_candidates():
    v, t = _data(b=5, k=4, seed=8)
    tm = np.ones((5, 4), bool)
    tm[:, 2] = False  # drop candidate 2 everywhere -> same as K=3 batch
    t2 = t.copy()
    t2[:, 2] = 7.0
    got = losses.mil_nce(v, t2, text_mask=tm)
    want = losses.mil_nce(v, np.delete(t, 2, axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_nce_is_mil_nce_k1():
    v, t = _data(b=6, k=1, seed=9)
    m = np.array([1, 1, 0, 1, 1, 1], np.float32)
    for variant in ("asymmetric", "symmetric"):
        np.testing.assert_allclose(losses.nce(v, t[:, 0], mask=m, variant=variant),
                                   losses.mil_nce(v, t, sample_mask=m, variant=variant), rtol=1e-6)
        np.testing.assert_allclose(losses.nce(v, t[:, 0], mask=m, variant=variant),
                                   ref_mil_nce(v, t, TAU, None, m, variant), rtol=1e-5)


def test_all_masked_is_zero_with_finite_grads():
    v, t = _data(b=4, k=2, seed=10)
    zero_tm = np.zeros((4, 2), np.float32)
    zero_sm = np.zeros((4,), np.float32)

    def f(v, t):
        return (losses.mil_nce(v, t, text_mask=zero_tm)
                + losses.mil_nce(v, t, sample_mask=zero_sm, variant="symmetric")
                + losses.nce(v, t[:, 0], mask=zero_sm))

    val, (gv, gt) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(v, t)
    assert float(val) == 0.0
    assert np.all(np.isfinite(gv)) and np.all(np.isfinite(gt))
    np.testing.assert_array_equal(gv, 0.0)
    # Zero embeddings are also safe (normalisation is epsilon-guarded).
    g0 = jax.grad(lambda v: losses.mil_nce(v, t))(jnp.zeros_like(v))
    assert np.all(np.isfinite(g0))


def test_gradient_matches_finite_differences():
    v, t = _data(b=3, k=2, d=4, seed=11)
    v64 = v.astype(np.float64)
    tm = np.array([[1, 1], [1, 0], [0, 0]], np.float32)
    g = np.asarray(jax.grad(lambda v: losses.mil_nce(v, t, text_mask=tm, temperature=0.5))(v))
    eps = 1e-4
    for idx in [(0, 0), (1, 2), (2, 3)]:
        vp, vm = v64.copy(), v64.copy()
        vp[idx] += eps
        vm[idx] -= eps
        fd = (ref_mil_nce(vp, t, 0.5, tm) - ref_mil_nce(vm, t, 0.5, tm)) / (2 * eps)
        np.testing.assert_allclose(g[idx], fd, rtol=1e-2, atol=1e-4)


def test_bad_shapes():
    v, t = _data()
    with pytest.raises(ValueError):
        losses.mil_nce(v, t[:, :, :4])
    with pytest.raises(ValueError):
        losses.mil_nce(v, t, text_mask=np.ones((6, 2)))
    with pytest.raises(ValueError):
        losses.mil_nce(v, t, variant="nope")


_MULTI_DEVICE_CODE = r"""
import json
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from vatt import losses

assert jax.device_count() == 8
r = np.random.RandomState(0)
B, K, D = 16, 3, 8
v = r.randn(B, D).astype(np.float32)
t = r.randn(B, K, D).astype(np.float32)
a = r.randn(B, D).astype(np.float32)
tm = (r.rand(B, K) > 0.3).astype(np.float32); tm[5] = 0
sm = np.ones(B, np.float32); sm[[2, 11]] = 0

def loss_plain(v, t, a, tm, sm):
    return (losses.mil_nce(v, t, text_mask=tm, sample_mask=sm)
            + 0.5 * losses.mil_nce(v, t, text_mask=tm, variant="symmetric")
            + losses.nce(v, a, mask=sm))

mesh = Mesh(np.array(jax.devices()), ("data",))

def loss_chunked(v, t, a, tm, sm):
    return (losses.mil_nce_chunked(v, t, mesh, text_mask=tm, sample_mask=sm)
            + 0.5 * losses.mil_nce_chunked(v, t, mesh, text_mask=tm, variant="symmetric")
            + losses.nce_chunked(v, a, mesh, mask=sm))

vg = jax.value_and_grad(loss_plain, argnums=(0, 1, 2))
vgc = jax.value_and_grad(loss_chunked, argnums=(0, 1, 2))
args = (v, t, a, tm, sm)
d0 = jax.devices()[0]
ref = jax.jit(vg)(*[jax.device_put(x, d0) for x in args])  # one device
shard = NamedSharding(mesh, P("data"))
sharded = [jax.device_put(x, shard) for x in args]
# One compilation for both sharded forms (compile time dominates on 2 shared cores).
glob, chunk = jax.jit(lambda *xs: (vg(*xs), vgc(*xs)))(*sharded)

def flat(res):
    val, grads = res
    return [float(val)] + [np.asarray(g).ravel().tolist() for g in grads]

out = {"ref": flat(ref), "glob": flat(glob), "chunk": flat(chunk)}
print("RESULT:" + json.dumps(out))
"""


def test_multi_device_global_and_chunked_equal_single_device():
    res = run_python(_MULTI_DEVICE_CODE, num_devices=8, timeout=300)
    ref = res["ref"]
    for name in ("glob", "chunk"):
        got = res[name]
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, err_msg=name)
        for g_got, g_ref in zip(got[1:], ref[1:]):
            np.testing.assert_allclose(g_got, g_ref, rtol=1e-4, atol=1e-6, err_msg=name)
