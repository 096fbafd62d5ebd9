"""Where each training example comes from: a pure function of (seed, epoch, global position).

The training stream is an infinite sequence of global positions g = 0, 1, 2, ...; global batch t
holds positions [t*B, (t+1)*B) and host p of P reads only its slice [t*B + p*b, t*B + (p+1)*b)
with b = B/P. Each position maps, with no state and no reading, to

  source s      deterministic weighted interleave of the mixture (exact proportions in every
                window of `period` positions, like grain's mix), s = pattern[g % period]
  i             the position's rank among the positions of source s:
                (g // period) * count[s] + rank_in_period[g % period]
  epoch, pos    i // N_s, i % N_s
  example       index_shuffle(pos; seed, s, epoch): a bijection of [0, N_s) per epoch, i.e. a
                global shuffle without a buffer, reshuffled every epoch

and its augmentation seed is folded from (seed, s, epoch, pos). Resuming therefore needs only the
number of positions consumed (step * B); the restart reads exactly what it trains on, on any
number of hosts.
"""

from __future__ import annotations

import fractions
import math

import numpy as np
import tensorflow as tf

MAX_PERIOD = 10_000


def mixture_plan(weights: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The interleave of sources with `weights` (any positive numbers).

    Returns pattern int64 [period] (source of each position of a period), rank int64 [period]
    (how many earlier positions of the period have the same source) and count int64 [S]
    (positions of each source per period). Weights are rounded to ratios with denominators up
    to MAX_PERIOD; the pattern spreads each source evenly (largest accumulated deficit first).
    """
    if not weights or min(weights) <= 0:
        raise ValueError(f"mixture weights must be positive, got {weights}")
    total = float(sum(weights))
    fracs = [fractions.Fraction(w / total).limit_denominator(MAX_PERIOD) for w in weights]
    period = math.lcm(*[f.denominator for f in fracs])
    count = np.array([int(f * period) for f in fracs], np.int64)
    count[int(np.argmax(count))] += period - int(count.sum())  # rounding may leave a remainder
    if period > MAX_PERIOD * 10 or (count <= 0).any():
        raise ValueError(f"mixture weights {weights} need a period of {period} positions; use "
                         "simpler ratios (e.g. 1:1, 2:1, 0.3:0.7)")
    pattern = np.empty(period, np.int64)
    rank = np.empty(period, np.int64)
    taken = np.zeros(len(weights), np.int64)
    for j in range(period):
        s = int(np.argmax((j + 1) * count / period - taken))
        pattern[j], rank[j] = s, taken[s]
        taken[s] += 1
    return pattern, rank, count


def training_positions(first: tf.Tensor, num: int, seed: int, plan, sizes: list[int]) -> dict:
    """Sources, epochs, in-epoch positions and example indices of global positions
    first, first+1, ..., first+num-1 (first: int64 scalar).

    Returns int64 tensors [num]: "source", "epoch", "position", "example".
    """
    pattern, rank, count = (tf.constant(a, tf.int64) for a in plan)
    period = int(plan[0].shape[0])
    g = first + tf.range(num, dtype=tf.int64)
    src = tf.gather(pattern, g % period)
    i = (g // period) * tf.gather(count, src) + tf.gather(rank, g % period)
    size = tf.gather(tf.constant(sizes, tf.int64), src)
    epoch, pos = i // size, i % size
    # One permutation per (seed, source, epoch). The raw op takes [n, 3] seeds (the public
    # wrapper mis-pads [n, 2] ones in TF 2.21); rounds=4 is the wrapper's default.
    shuffle_seed = tf.stack([tf.fill([num], tf.constant(seed, tf.int64)), src, epoch], axis=1)
    example = tf.raw_ops.RandomIndexShuffle(index=pos, seed=shuffle_seed, max_index=size - 1, rounds=4)
    return {"source": src, "epoch": epoch, "position": pos, "example": example}


def host_slice(batch_number: tf.Tensor, start: int, global_batch: int, local_batch: int,
               process_index: int) -> tf.Tensor:
    """First global position of this host's share of local batch `batch_number` (int64)."""
    return start + tf.cast(batch_number, tf.int64) * global_batch + process_index * local_batch


def eval_share(num_examples: int, process_index: int, process_count: int) -> tuple[int, int]:
    """[begin, end) of the examples host `process_index` evaluates: contiguous, ceil(N/P) each."""
    per_host = math.ceil(num_examples / process_count)
    begin = min(process_index * per_host, num_examples)
    return begin, min(begin + per_host, num_examples)
