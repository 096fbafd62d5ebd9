"""Contrastive losses for VATT pretraining: NCE (video-audio) and MIL-NCE (video-text).

Notation (DESIGN.md section 3): v_b is the L2-normalised video embedding of clip b, t_{b,k} the
k-th of K candidate captions of clip b, tau the temperature, S[b, j, k] = v_b . t_{j,k} / tau.

Asymmetric MIL-NCE (MIL-NCE paper and VATT's default, ``variant="asymmetric"``):
    P_b      = {S[b, b, k] : k}                                      (positives)
    N_b      = {S[b, j, k] : j, k}  U  {S[j, b, k] : j, k}           (2*B*K logits)
    loss_b   = LSE(N_b) - LSE(P_b)
The positives appear twice in the denominator, so a one-clip batch with K = 1 gives log 2.

Symmetric MIL-NCE (``variant="symmetric"``), what the official google-research/vatt code calls
``SymmetricNCE`` (vatt/utils/train/objectives.py, ``_calculate_nce``): the two directions get
*separate* denominators and the two losses are added:
    loss_b = [LSE_{j,k} S[b, j, k] - LSE(P_b)] + [LSE_{j,k} S[j, b, k] - LSE(P_b)]
Each direction contains the positives once, so a one-clip batch with K = 1 gives 0, and the value
is roughly twice the asymmetric one (the official code sums the two directions; no 1/2).

B is always the GLOBAL batch. Under ``jax.jit`` with the batch sharded over devices and hosts
(NamedSharding on the ``data`` mesh axis) the plain functions see the global arrays, and XLA
inserts the collectives, so nothing else is needed. The ``*_chunked`` forms do the same with an
explicit ``jax.shard_map``: each device scores only its local rows against all-gathered columns,
so no device materialises the full [B, B, K] similarity tensor; value and gradients are equal.

Masks: ``text_mask`` [B, K] marks valid candidate captions, ``sample_mask`` [B] valid clips.
  * an invalid candidate is neither a positive nor a negative;
  * an invalid clip contributes no loss term, its video is no one's negative and its captions
    are no one's negatives (the result equals the loss on the batch with that clip removed);
  * a clip whose candidates are all invalid (e.g. AudioSet clips without text) has no positive
    and contributes no loss term, but its video is still a negative for other clips' captions
    (as in the official code). Pass ``sample_mask`` too if it should be removed entirely.
The loss is the mean over clips that are valid and have at least one valid candidate; if there
are none it is exactly 0 with finite (zero) gradients.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

# Masked logits are set to this instead of -inf so log-sum-exp and its gradient never see
# inf - inf (NaN). |logits| <= 1/tau (~14 for tau=0.07) so this is "minus infinity" in practice.
_NEG = -1e9
MIL_NCE_VARIANTS = ("asymmetric", "symmetric")


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||, sqrt(eps)) along `axis` (like tf.math.l2_normalize; finite grad at x=0)."""
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps))


def _masked_lse(logits: jax.Array, mask: jax.Array, axis) -> jax.Array:
    """log-sum-exp over `axis` of the entries where mask is True (a large negative if none)."""
    return jax.nn.logsumexp(jnp.where(mask, logits, _NEG), axis=axis)


def _prepare(video: jax.Array, text: jax.Array, text_mask: jax.Array | None,
             sample_mask: jax.Array | None, variant: str):
    """Checks shapes, fills in default masks, casts to float32, normalises the embeddings.

    Returns (v [B,D] f32, t [B,K,D] f32, cand [B,K] bool, svalid [B] bool).
    """
    if variant not in MIL_NCE_VARIANTS:
        raise ValueError(f"variant must be one of {MIL_NCE_VARIANTS}, got {variant!r}")
    if video.ndim != 2 or text.ndim != 3:
        raise ValueError(f"expected video [B, D] and text [B, K, D], got {video.shape}, {text.shape}")
    b, k, d = text.shape
    if video.shape != (b, d):
        raise ValueError(f"video {video.shape} does not match text {text.shape}")
    if text_mask is None:
        text_mask = jnp.ones((b, k), jnp.bool_)
    if sample_mask is None:
        sample_mask = jnp.ones((b,), jnp.bool_)
    if text_mask.shape != (b, k) or sample_mask.shape != (b,):
        raise ValueError(f"text_mask {text_mask.shape} / sample_mask {sample_mask.shape} do not "
                         f"match [B, K] = {(b, k)}")
    svalid = sample_mask > 0
    # An invalid clip's captions are nobody's negatives and it has no positives.
    cand = (text_mask > 0) & svalid[:, None]
    # Losses are computed in float32 even for bfloat16 embeddings (LSE over thousands of logits).
    v = l2_normalize(video.astype(jnp.float32))
    t = l2_normalize(text.astype(jnp.float32))
    return v, t, cand, svalid


def _mil_nce_sums(v_rows: jax.Array, t_rows: jax.Array, cand_rows: jax.Array,
                  v_all: jax.Array, t_all: jax.Array, cand_all: jax.Array,
                  svalid_all: jax.Array, temperature: float, variant: str):
    """Summed loss and number of valid clips for the clips `rows` against the whole batch.

    Args:
      v_rows [R, D], t_rows [R, K, D], cand_rows [R, K]: the clips whose loss terms we compute
        (all of them in the global form, the local shard in the chunked form).
      v_all [B, D], t_all [B, K, D], cand_all [B, K], svalid_all [B]: the global batch (negatives).
    Returns:
      (sum over valid rows of loss_b, number of valid rows), both f32 scalars.
    """
    inv_t = 1.0 / temperature
    # video_b vs every caption: S[b, j, k], [R, B, K]
    s_v2t = jnp.einsum("rd,jkd->rjk", v_rows, t_all) * inv_t
    lse_v2t = _masked_lse(s_v2t, cand_all[None], axis=(1, 2))
    # every video vs caption_{b,k}: S[j, b, k] laid out as [R, B, K]
    s_t2v = jnp.einsum("jd,rkd->rjk", v_all, t_rows) * inv_t
    lse_t2v = _masked_lse(s_t2v, svalid_all[None, :, None] & cand_rows[:, None, :], axis=(1, 2))
    # positives S[b, b, k], [R, K]
    s_pos = jnp.einsum("rd,rkd->rk", v_rows, t_rows) * inv_t
    lse_pos = _masked_lse(s_pos, cand_rows, axis=1)

    if variant == "asymmetric":
        per_clip = jnp.logaddexp(lse_v2t, lse_t2v) - lse_pos
    else:  # symmetric: two separate softmaxes, summed (official SymmetricNCE)
        per_clip = (lse_v2t - lse_pos) + (lse_t2v - lse_pos)

    # A clip with no valid candidate has no positive: masked out (values there are finite junk,
    # and jnp.where sends them zero gradient).
    valid = jnp.any(cand_rows, axis=1)
    total = jnp.sum(jnp.where(valid, per_clip, 0.0))
    count = jnp.sum(valid.astype(jnp.float32))
    return total, count


def _safe_mean(total: jax.Array, count: jax.Array) -> jax.Array:
    return total / jnp.maximum(count, 1.0)


def mil_nce(video: jax.Array, text: jax.Array, *, temperature: float = 0.07,
            text_mask: jax.Array | None = None, sample_mask: jax.Array | None = None,
            variant: str = "asymmetric") -> jax.Array:
    """MIL-NCE between clips and their K candidate captions (see the module docstring).

    Args:
      video: [B, D] video embeddings (normalised here; any float dtype).
      text: [B, K, D] caption embeddings, K candidates per clip.
      temperature: tau.
      text_mask: [B, K] (bool or 0/1) valid candidate captions; None = all valid.
      sample_mask: [B] valid clips; None = all valid.
      variant: "asymmetric" (one denominator of 2*B*K logits, positives twice; VATT default) or
        "symmetric" (official SymmetricNCE: two one-directional losses added).
    Returns:
      f32 scalar, mean over valid clips (0 if none). Under jit with a sharded batch, B is the
      global batch automatically.
    """
    v, t, cand, svalid = _prepare(video, text, text_mask, sample_mask, variant)
    total, count = _mil_nce_sums(v, t, cand, v, t, cand, svalid, temperature, variant)
    return _safe_mean(total, count)


def nce(x: jax.Array, y: jax.Array, *, temperature: float = 0.07, mask: jax.Array | None = None,
        variant: str = "asymmetric") -> jax.Array:
    """NCE between paired embeddings x [B, D] and y [B, D]: MIL-NCE with K = 1.

    Asymmetric: loss_b = LSE({x_b.y_j} U {x_j.y_b}) - x_b.y_b (temperature-scaled), mean over
    valid b; `mask` [B] marks valid pairs (an invalid pair is nobody's negative). Returns f32 [].
    """
    if y.ndim != 2:
        raise ValueError(f"expected y [B, D], got {y.shape}")
    return mil_nce(x, y[:, None, :], temperature=temperature, sample_mask=mask, variant=variant)


def _chunked(v: jax.Array, t: jax.Array, cand: jax.Array, svalid: jax.Array, mesh: Mesh | None,
             axis_name: str, temperature: float, variant: str) -> jax.Array:
    """shard_map form: local rows vs all-gathered columns, psum of (loss sum, count)."""

    def local(v_l, t_l, cand_l, svalid_l):
        # all_gather's transpose is psum_scatter, so each device's gradient w.r.t. its own rows
        # also receives the contributions of every other device's loss terms (checked in tests).
        v_all = jax.lax.all_gather(v_l, axis_name, axis=0, tiled=True)
        t_all = jax.lax.all_gather(t_l, axis_name, axis=0, tiled=True)
        cand_all = jax.lax.all_gather(cand_l, axis_name, axis=0, tiled=True)
        svalid_all = jax.lax.all_gather(svalid_l, axis_name, axis=0, tiled=True)
        total, count = _mil_nce_sums(v_l, t_l, cand_l, v_all, t_all, cand_all, svalid_all,
                                     temperature, variant)
        # With check_vma=True (the default) psum of a device-varying value is typed invariant and
        # its transpose is a plain broadcast; with check_vma=False the transpose would be another
        # psum and the gradient would come out multiplied by the number of devices.
        total = jax.lax.psum(total, axis_name)
        count = jax.lax.psum(count, axis_name)
        return _safe_mean(total, count)

    spec = P(axis_name)
    fn = jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec, spec), out_specs=P())
    return fn(v, t, cand, svalid)


def mil_nce_chunked(video: jax.Array, text: jax.Array, mesh: Mesh | None = None, *,
                    axis_name: str = "data", temperature: float = 0.07,
                    text_mask: jax.Array | None = None, sample_mask: jax.Array | None = None,
                    variant: str = "asymmetric") -> jax.Array:
    """`mil_nce` computed with jax.shard_map over mesh axis `axis_name`; same value and grads.

    Each device holds B/n rows (B divisible by the size of `axis_name`), scores them against the
    all-gathered [B, K, D] captions / [B, D] videos ([B/n, B, K] logits per device instead of
    [B, B, K]), and the summed loss and valid-clip count are psum'd. `mesh` None = the context
    mesh (jax.set_mesh). Works inside or outside jit; other mesh axes replicate.
    """
    v, t, cand, svalid = _prepare(video, text, text_mask, sample_mask, variant)
    return _chunked(v, t, cand, svalid, mesh, axis_name, temperature, variant)


def nce_chunked(x: jax.Array, y: jax.Array, mesh: Mesh | None = None, *, axis_name: str = "data",
                temperature: float = 0.07, mask: jax.Array | None = None,
                variant: str = "asymmetric") -> jax.Array:
    """`nce` via jax.shard_map over `axis_name` (x, y [B, D], mask [B]); same value and grads."""
    if y.ndim != 2:
        raise ValueError(f"expected y [B, D], got {y.shape}")
    return mil_nce_chunked(x, y[:, None, :], mesh, axis_name=axis_name, temperature=temperature,
                           sample_mask=mask, variant=variant)
