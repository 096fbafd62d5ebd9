"""Tests for vatt/alignment.py against independent numpy references and published values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vatt.alignment import MinibatchCKA, cka


# ---- independent numpy references, straight from the formulas --------------------------------

def ref_linear_cka_features(x, y):
    """||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred X, Y."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return (np.linalg.norm(y.T @ x) ** 2
            / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def ref_rbf_gram(x, sigma_frac):
    sq_dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    sigma2 = sigma_frac ** 2 * np.median(sq_dist)
    return np.exp(-sq_dist / (2 * sigma2))


def ref_biased_cka(k, l):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    hsic = lambda a, b: np.trace(a @ h @ b @ h)
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def ref_unbiased_hsic(k, l):
    """Song et al. (2012) unbiased HSIC estimator."""
    n = k.shape[0]
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def ref_debiased_cka(k, l):
    return ref_unbiased_hsic(k, l) / np.sqrt(ref_unbiased_hsic(k, k) * ref_unbiased_hsic(l, l))


@pytest.fixture(scope="module")
def xy():
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x, y


# ---- tests ------------------------------------------------------------------------------------

def test_known_values(xy):
    x, y = xy
    np.testing.assert_allclose(cka(x, y), 0.55761, atol=1e-5)
    np.testing.assert_allclose(cka(x, y, kernel="rbf", sigma_frac=0.5), 0.65483, atol=1e-4)
    np.testing.assert_allclose(cka(x, y, debiased=True), 0.51346, atol=1e-5)
    # The references agree with the published numbers too (so they are worth testing against).
    np.testing.assert_allclose(ref_linear_cka_features(x, y), 0.55761, atol=1e-5)
    np.testing.assert_allclose(ref_biased_cka(ref_rbf_gram(x, .5), ref_rbf_gram(y, .5)), 0.65483,
                               atol=1e-5)
    np.testing.assert_allclose(ref_debiased_cka(x @ x.T, y @ y.T), 0.51346, atol=1e-5)


@pytest.mark.parametrize("kernel,debiased", [("linear", False), ("linear", True), ("rbf", False),
                                             ("rbf", True)])
@pytest.mark.parametrize("sigma_frac", [0.5, 1.0])
def test_against_reference_different_widths(kernel, debiased, sigma_frac):
    r = np.random.RandomState(0)
    x = r.randn(40, 7)
    y = np.tanh(x @ r.randn(7, 13)) + 0.5 * r.randn(40, 13)
    if kernel == "linear":
        k, l = x @ x.T, y @ y.T
    else:
        k, l = ref_rbf_gram(x, sigma_frac), ref_rbf_gram(y, sigma_frac)
    want = ref_debiased_cka(k, l) if debiased else ref_biased_cka(k, l)
    got = cka(x, y, kernel=kernel, sigma_frac=sigma_frac, debiased=debiased)
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("kernel,debiased", [("linear", False), ("linear", True), ("rbf", False)])
def test_invariances(xy, kernel, debiased):
    x, y = xy
    base = float(cka(x, y, kernel=kernel, debiased=debiased))
    q, _ = np.linalg.qr(np.random.RandomState(1).randn(10, 10))
    for xt in (x @ q, 3.7 * x, x + np.random.RandomState(2).randn(1, 10) * 5):
        np.testing.assert_allclose(cka(xt, y, kernel=kernel, debiased=debiased), base, atol=2e-5)
    # A generic (non-orthogonal, anisotropic) linear map changes it.
    a = np.diag(np.linspace(0.1, 10.0, 10)) @ q
    assert abs(float(cka(x @ a, y, kernel=kernel, debiased=debiased)) - base) > 1e-2
    # Symmetric, and 1 for identical representations.
    np.testing.assert_allclose(cka(y, x, kernel=kernel, debiased=debiased), base, atol=1e-5)
    np.testing.assert_allclose(cka(x, x, kernel=kernel, debiased=debiased), 1.0, atol=1e-5)


def test_debiasing_removes_high_dim_inflation():
    r = np.random.RandomState(3)
    x, y = r.randn(20, 200), r.randn(20, 200)  # independent, d >> n
    assert float(cka(x, y)) > 0.5
    assert abs(float(cka(x, y, debiased=True))) < 0.1


def test_jit_grad_and_dtypes(xy):
    x, y = (jnp.asarray(a, jnp.float32) for a in xy)
    for kernel in ("linear", "rbf"):
        for debiased in (False, True):
            f = jax.jit(lambda a, b: cka(a, b, kernel=kernel, debiased=debiased))
            val, g = jax.value_and_grad(f)(x, y)
            assert val.dtype == jnp.float32
            assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    # Constant representation: CKA 0, finite gradient (safe as a loss).
    g = jax.grad(lambda a: cka(a, y))(jnp.ones_like(x))
    assert np.all(np.isfinite(g))
    assert float(cka(jnp.asarray(xy[0], jnp.bfloat16), y)) == pytest.approx(0.55761, abs=1e-2)


def test_errors():
    with pytest.raises(ValueError, match="same number"):
        cka(np.ones((5, 3)), np.ones((6, 3)))
    with pytest.raises(ValueError, match="n > 3"):
        cka(np.random.randn(3, 2), np.random.randn(3, 2), debiased=True)
    with pytest.raises(ValueError):
        cka(np.ones((5, 3, 1)), np.ones((5, 3)))
    with pytest.raises(ValueError):
        cka(np.ones((5, 3)), np.ones((5, 3)), kernel="poly")
    acc = MinibatchCKA()
    with pytest.raises(ValueError):
        acc.result()
    with pytest.raises(ValueError):
        acc.update([np.ones((8, 2))], [np.ones((9, 2))])
    with pytest.raises(ValueError):
        acc.update([np.ones((3, 2))], [np.ones((3, 2))])


def test_minibatch_one_batch_equals_debiased(xy):
    x, y = xy
    xs = [x, x ** 2, np.tanh(x)]
    ys = [y, x]
    acc = MinibatchCKA(num_x=3, num_y=2)
    acc.update(xs, [jnp.asarray(a) for a in ys])
    got = acc.result()
    assert got.shape == (3, 2)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            np.testing.assert_allclose(got[i, j], ref_debiased_cka(a @ a.T, b @ b.T), atol=1e-8)


def test_minibatch_many_batches_approaches_full_data():
    r = np.random.RandomState(4)
    n, bs = 2000, 200
    x = r.randn(n, 16)
    ys = [x @ r.randn(16, 8) + 2.0 * r.randn(n, 8), np.maximum(x, 0) + r.randn(n, 16), r.randn(n, 4)]
    acc = MinibatchCKA()
    for s in range(0, n, bs):
        acc.update([x[s:s + bs]], [y[s:s + bs] for y in ys])
    assert acc.num_batches == n // bs
    got = acc.result()[0]
    want = np.array([ref_linear_cka_features(x, y) for y in ys])
    np.testing.assert_allclose(got, want, atol=0.02)
    # Independent data stays near 0 (biased per-batch estimates would be inflated).
    assert abs(got[2]) < 0.02
