"""Contrastive gradient accumulation, the GradCache way (Gao et al., 2021): the loss and the
gradients of the whole global batch with about 1/N of its activation memory
(config.accumulation_steps = N).

Why not plain accumulation: a contrastive loss is not a sum over examples. Each clip's NCE /
MIL-NCE term has every other clip of the global batch as negatives, and the heads' BatchNorm
normalises with global-batch statistics, so summing the gradients of N independent chunk losses
optimises a different objective (B/N - 1 negatives per clip, chunk statistics). GradCache splits
the model where the batch stops interacting instead:

  features = backbones(x)            row b depends on row b only (vatt.models.VATT.features)
  loss     = head_loss(features)     heads + BN + temperature + NCE/MIL-NCE + CKA, global batch

and the chain rule dL/dθ_backbone = Σ_chunks vjp(backbones_chunk)(dL/dfeatures_chunk):

  pass 1   lax.scan over N chunks: features of each chunk, no gradient, nothing saved
           (the cache is B x D floats per modality, not activations);
  head     value_and_grad of head_loss w.r.t. (parameters, features) once on the whole global
           batch: the loss, the head / temperature gradients, the BN statistics and their
           running-average update are exactly the big batch's;
  pass 2   lax.scan over the chunks again: re-run the chunk's backbone forward under jax.vjp
           and pull back its rows of dL/dfeatures, summing the parameter gradients.

Only one chunk's activations are live at a time, so peak activation memory falls about N-fold
for ~1/3 more compute (the second forward). The cut is at the pooled backbone outputs, before
the FAC heads, rather than at the common-space embeddings, so that the heads' BatchNorm, the
CKA terms (which read pooled outputs and embeddings) and the learned temperature all see the
global batch without any correction.

Same randomness: both passes build the step's nnx.Rngs afresh for every chunk (the same keys
in the same order as the big batch) and pass each row's global example index, from which every
dropout mask and DropToken subset of the row is drawn (vatt.models.row_random). DropToken's
"batch" mode shares one permutation by design and is chunk-independent as is.

Chunks take strided rows: [B, ...] is viewed as [B/N, N, ...] and chunk i is [:, i] (rows i,
N+i, 2N+i, ...). With the batch sharded over the mesh's `data` axis, the first axis stays
sharded, so every chunk is spread over all devices (B/(devices*N) rows each) and nothing is
resharded; B must be divisible by devices*N (vatt.config_validation checks it at start-up).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vatt.parallel.mesh import DATA_AXIS

Batch = dict[str, jax.Array]
Features = Any  # a pytree of [B, ...] float arrays (pretraining: {m: {"pooled": [B, D]}})


class CachedLoss(Protocol):
    """A loss that factors as head_loss(embed(rows)) with `embed` row-independent
    (vatt.tasks.pretrain.PretrainTask)."""

    def embed(self, model: nnx.Module, batch: Batch, rngs: nnx.Rngs, rows: jax.Array
              ) -> Features:
        """Features of `batch`'s b rows ([b, ...] leaves); rows: their global indices [b]."""

    def head_loss(self, model: nnx.Module, features: Features, batch: Batch
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(loss, metrics) from the features of the whole global batch."""


def supports(task: Any) -> bool:
    """Whether `task` provides the two halves GradCache needs."""
    return callable(getattr(task, "embed", None)) and callable(getattr(task, "head_loss", None))


def chunk(tree: Any, steps: int, i: jax.Array) -> Any:
    """Rows i, steps+i, 2*steps+i, ... of every [B, ...] leaf: [B/steps, ...]."""
    def take(x):
        view = x.reshape(x.shape[0] // steps, steps, *x.shape[1:])
        return jax.lax.dynamic_index_in_dim(view, i, axis=1, keepdims=False)
    return jax.tree.map(take, tree)


def unchunk(tree: Any) -> Any:
    """Stacked chunks [steps, B/steps, ...] back to the global row order [B, ...] (the inverse
    of `chunk` for every i): row j*steps + i is chunk i's row j."""
    def merge(x):
        return jnp.swapaxes(x, 0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])
    return jax.tree.map(merge, tree)


def _constrain(tree: Any, mesh: Mesh | None, spec: P) -> Any:
    """Pins the leaves' sharding (rows over `data`) so each chunk stays spread over the mesh."""
    if mesh is None or mesh.size == 1:
        return tree
    sharding = NamedSharding(mesh, spec)
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def loss_and_grads(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State, batch: Batch, *,
                   loss: CachedLoss, steps: int, make_rngs: Callable[[], nnx.Rngs],
                   trainable: Any = nnx.Param,
                   scale_loss: Callable[[jax.Array], jax.Array] = lambda x: x,
                   mesh: Mesh | None = None
                   ) -> tuple[jax.Array, dict[str, jax.Array], nnx.State, nnx.State]:
    """The global batch's (loss, metrics, updated `rest`, d loss / d params) in `steps` chunks.

    Equal (up to float summation order) to value_and_grad of
    loss.head_loss(model, loss.embed(model, batch, rngs, arange(B)), batch).

    graphdef, params, rest: the model as vatt.train.state.split_model splits it.
    batch: the global batch, leaves [B, ...] with B divisible by steps (and by devices*steps
      for an even spread).
    make_rngs: the step's random streams, called once per chunk and pass (fresh nnx.Rngs with
      the same keys each time, so every chunk draws what the big batch draws).
    scale_loss: applied to the loss before differentiation (the step's NaN fault injection).
    mesh: the mesh whose `data` axis shards the batch (None: no sharding constraints).
    """
    b = jax.tree.leaves(batch)[0].shape[0]
    if steps < 1 or b % steps:
        raise ValueError(f"accumulation_steps={steps} must be >= 1 and divide the batch {b}")
    rows = jnp.arange(b, dtype=jnp.int32)
    idx = jnp.arange(steps, dtype=jnp.int32)

    def embed(p: nnx.State, i: jax.Array) -> Features:
        # copy=True: fresh Variables owned by this trace level (see vatt.train.step).
        model = nnx.merge(graphdef, p, rest, copy=True)
        part = _constrain(chunk(batch, steps, i), mesh, P(DATA_AXIS))
        feats = loss.embed(model, part, make_rngs(), chunk(rows, steps, i))
        _check_stateless(rest, split_rest(model, trainable))
        return feats

    # Pass 1: features of every chunk; not differentiated, so no activation is kept.
    _, stacked = jax.lax.scan(lambda carry, i: (carry, embed(params, i)), None, idx)
    features = _constrain(unchunk(stacked), mesh, P(DATA_AXIS))

    def head(p: nnx.State, feats: Features):
        model = nnx.merge(graphdef, p, rest, copy=True)
        value, metrics = loss.head_loss(model, feats, batch)
        return scale_loss(value), (metrics, split_rest(model, trainable))

    (value, (metrics, new_rest)), (grads, feature_grads) = jax.value_and_grad(
        head, argnums=(0, 1), has_aux=True)(params, features)

    # Pass 2: each chunk's backbone forward again, pulled back from its rows of the cached
    # feature gradients; the head gradients start the sum (their backbone entries are zero).
    def backward(acc: nnx.State, i: jax.Array):
        _, pullback = jax.vjp(lambda p: embed(p, i), params)
        cotangent = _constrain(chunk(feature_grads, steps, i), mesh, P(DATA_AXIS))
        (g,) = pullback(cotangent)
        return jax.tree.map(jnp.add, acc, g), None

    grads, _ = jax.lax.scan(backward, grads, idx)
    return value, metrics, new_rest, grads


def split_rest(model: nnx.Module, trainable: Any) -> nnx.State:
    """The model's non-trainable variables (batch statistics, frozen tables)."""
    return nnx.split(model, trainable, ...)[2]


def _check_stateless(before: nnx.State, after: nnx.State) -> None:
    """The chunked half must not update state (e.g. a BatchNorm inside a backbone): chunk
    statistics would silently differ from the global batch's. Checked while tracing."""
    changed = [jax.tree_util.keystr(path) for (path, a), b in
               zip(jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(after))
               if a is not b]
    if changed:
        raise ValueError("contrastive gradient accumulation needs backbones without batch "
                         f"statistics, but the embedding pass updated {changed[:3]}: set "
                         "config.accumulation_steps=1")
