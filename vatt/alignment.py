"""Centred kernel alignment (CKA) between representations, as a metric and as a training loss.

CKA (Kornblith, Norouzi, Lee, Hinton 2019, "Similarity of Neural Network Representations
Revisited") of x [n, d1] and y [n, d2] with Gram matrices K = k(x, x), L = l(y, y) [n, n]:

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),   HSIC(K, L) ~ <HKH, HLH>_F,

H = I - 11^T/n. For the linear kernel this is ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on
column-centred X, Y. All kernels share the Gram/HSIC path:
  * kernel="rbf": K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)) with sigma = sigma_frac * median
    pairwise distance (the reference code takes the median of the squared distances over the full
    n x n matrix, diagonal included, and sigma^2 = sigma_frac^2 * that median; we do the same).
  * debiased=True: the unbiased HSIC estimator (Song et al. 2012; Szekely & Rizzo's U-centring):
    zero the diagonal, subtract row/column means with the 1/(n-2), 1/(2(n-1)) corrections, zero
    the diagonal again. Needs n > 3. The biased estimator is inflated for independent data when
    d is comparable to n; the debiased one is not.
CKA is invariant to orthogonal transforms, isotropic scaling and translation, not to general
invertible linear maps.

`MinibatchCKA` (Nguyen, Raghu, Kornblith 2021, "Do Wide and Deep Networks Learn the Same Things?")
accumulates unbiased HSIC over minibatches for all (x-layer, y-layer) pairs, so the estimate
converges to the full-data CKA without holding all activations.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

CKA_KERNELS = ("linear", "rbf")
# What the CKA alignment loss compares (config.loss.cka_space): pooled backbone outputs or
# the common-space (FAC) embeddings.
CKA_SPACES = ("pooled", "common")


def _check(x: jax.Array, y: jax.Array, kernel: str, debiased: bool) -> None:
    """Trace-time (static shape) validation."""
    if kernel not in CKA_KERNELS:
        raise ValueError(f"kernel must be one of {CKA_KERNELS}, got {kernel!r}")
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"cka expects x [n, d1] and y [n, d2], got {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same number of examples, got {x.shape[0]} and "
                         f"{y.shape[0]}")
    if debiased and x.shape[0] <= 3:
        raise ValueError(f"the debiased estimator needs n > 3 examples, got n={x.shape[0]}")


def _gram(x: jax.Array, kernel: str, sigma_frac: float) -> jax.Array:
    """Gram matrix [n, n] of the rows of x [n, d]."""
    g = x @ x.T
    if kernel == "linear":
        return g
    sq = jnp.diagonal(g)
    # Clamp: round-off can make the diagonal of the distance matrix slightly negative.
    sq_dist = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * g, 0.0)
    sq_median = jnp.median(sq_dist)
    # Guard against all-identical rows (median 0) so the kernel stays finite.
    sq_median = jnp.maximum(sq_median, jnp.finfo(sq_dist.dtype).tiny)
    return jnp.exp(-sq_dist / (2.0 * sigma_frac**2 * sq_median))


def _center_gram(k: jax.Array, debiased: bool) -> jax.Array:
    """Double-centred HKH (biased) or U-centred (debiased) Gram matrix, [n, n]."""
    n = k.shape[0]
    if not debiased:
        row = jnp.mean(k, axis=0)
        return k - row[:, None] - row[None, :] + jnp.mean(row)
    eye = jnp.eye(n, dtype=bool)
    k = jnp.where(eye, 0.0, k)
    means = jnp.sum(k, axis=0) / (n - 2)
    means = means - jnp.sum(means) / (2 * (n - 1))
    k = k - means[:, None] - means[None, :]
    return jnp.where(eye, 0.0, k)


def cka(x: jax.Array, y: jax.Array, *, kernel: str = "linear", sigma_frac: float = 0.5,
        debiased: bool = False) -> jax.Array:
    """CKA between representations x [n, d1] and y [n, d2] of the same n examples.

    Args:
      x, y: [n, d1], [n, d2] (any float dtype; computed in at least float32).
      kernel: "linear" or "rbf" (bandwidth sigma = sigma_frac * median pairwise distance).
      sigma_frac: RBF bandwidth as a fraction of the median distance.
      debiased: use the unbiased HSIC estimator (U-centred Gram matrices); needs n > 3.
    Returns:
      scalar in [0, 1] (the debiased value can be slightly negative). Jit-able and differentiable
      (gradients flow through the RBF median too), so `-lam * cka(f_video, f_text)` can be added
      to a training loss.
    Raises:
      ValueError at trace time for mismatched n, non-2D inputs, n <= 3 with debiased=True, or an
      unknown kernel.
    """
    _check(x, y, kernel, debiased)
    dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
    x = x.astype(dtype)
    y = y.astype(dtype)
    kx = _center_gram(_gram(x, kernel, sigma_frac), debiased)
    ky = _center_gram(_gram(y, kernel, sigma_frac), debiased)
    # The 1/(n-1)^2 or 1/(n(n-3)) HSIC scale cancels in the ratio.
    hsic_xy = jnp.sum(kx * ky)
    tiny = jnp.finfo(dtype).tiny
    # max(., tiny): a constant representation has zero HSIC; keep value and gradient finite.
    norm = jnp.sqrt(jnp.maximum(jnp.sum(kx * kx), tiny)) * jnp.sqrt(jnp.maximum(jnp.sum(ky * ky),
                                                                               tiny))
    return hsic_xy / norm


def _u_centered_linear_grams(feats: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Stacked U-centred linear Gram matrices, flattened: [len(feats), n*n] float64."""
    out = np.empty((len(feats), n * n), np.float64)
    for i, f in enumerate(feats):
        f = np.asarray(f, np.float64).reshape(n, -1)
        k = f @ f.T
        np.fill_diagonal(k, 0.0)
        means = k.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        k -= means[:, None]
        k -= means[None, :]
        np.fill_diagonal(k, 0.0)
        out[i] = k.ravel()
    return out


class MinibatchCKA:
    """Minibatch linear CKA for every (x-layer, y-layer) pair (Nguyen et al. 2021).

    For each minibatch of n examples, computes the unbiased estimator
        HSIC_1(K, L) = <K~, L~>_F / (n (n - 3))       (K~, L~ U-centred linear Grams)
    for all pairs and accumulates the sums of HSIC_1(K_i, L_j), HSIC_1(K_i, K_i), HSIC_1(L_j, L_j).
    ``result()[i, j] = sum HSIC_1(K_i, L_j) / sqrt(sum HSIC_1(K_i, K_i) * sum HSIC_1(L_j, L_j))``.
    With a single minibatch this equals ``cka(x_i, y_j, debiased=True)``; over many minibatches it
    approaches the full-data CKA. Host-side numpy (float64): meant for reports, not inside a step.

    Usage:
        acc = MinibatchCKA(num_x=len(video_layers), num_y=len(text_layers))
        for batch in batches: acc.update(video_layers, text_layers)   # lists of [n, d] arrays
        matrix = acc.result()                                          # [num_x, num_y]
    Features with more than two dims are flattened to [n, -1] (e.g. [n, K, d] text layers).
    """

    def __init__(self, num_x: int | None = None, num_y: int | None = None) -> None:
        self.num_x = num_x
        self.num_y = num_y
        self.reset()

    def reset(self) -> None:
        self._xy: np.ndarray | None = None
        self._xx: np.ndarray | None = None
        self._yy: np.ndarray | None = None
        self.num_batches = 0

    def update(self, xs: Sequence[np.ndarray | jax.Array],
               ys: Sequence[np.ndarray | jax.Array]) -> None:
        """Adds one minibatch: xs, ys lists of [n, d_i] / [n, e_j] arrays for the same n examples."""
        xs, ys = list(xs), list(ys)
        if not xs or not ys:
            raise ValueError("update needs at least one x and one y representation")
        if self.num_x is not None and len(xs) != self.num_x:
            raise ValueError(f"expected {self.num_x} x representations, got {len(xs)}")
        if self.num_y is not None and len(ys) != self.num_y:
            raise ValueError(f"expected {self.num_y} y representations, got {len(ys)}")
        ns = {np.shape(a)[0] for a in xs + ys}
        if len(ns) != 1:
            raise ValueError(f"all representations need the same number of examples, got {ns}")
        n = ns.pop()
        if n <= 3:
            raise ValueError(f"unbiased HSIC needs n > 3 examples per minibatch, got n={n}")
        if self._xy is not None and self._xy.shape != (len(xs), len(ys)):
            raise ValueError(f"layer counts changed: {self._xy.shape} vs {(len(xs), len(ys))}")
        self.num_x, self.num_y = len(xs), len(ys)
        kx = _u_centered_linear_grams(xs, n)
        ky = _u_centered_linear_grams(ys, n)
        scale = 1.0 / (n * (n - 3))
        xy = (kx @ ky.T) * scale
        xx = np.einsum("ij,ij->i", kx, kx) * scale
        yy = np.einsum("ij,ij->i", ky, ky) * scale
        if self._xy is None:
            self._xy, self._xx, self._yy = xy, xx, yy
        else:
            self._xy += xy
            self._xx += xx
            self._yy += yy
        self.num_batches += 1

    def result(self) -> np.ndarray:
        """[num_x, num_y] CKA matrix (float64) from everything accumulated so far."""
        if self._xy is None:
            raise ValueError("MinibatchCKA.result() called before any update()")
        denom = np.sqrt(np.maximum(self._xx[:, None] * self._yy[None, :], np.finfo(np.float64).tiny))
        return self._xy / denom
