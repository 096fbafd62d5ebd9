"""Retrieval metrics from a query-by-item similarity matrix."""

from __future__ import annotations

import numpy as np


def ground_truth_ranks(similarity: np.ndarray) -> np.ndarray:
    """1-based rank of the ground-truth item of every query.

    Args:
      similarity: [num_queries, num_items] scores, ground truth on the diagonal
        (query i matches item i), num_items >= num_queries.

    Returns:
      ranks: int64 [num_queries]. An item that scores the same as the ground truth
      counts against the query (pessimistic tie-breaking), so a collapsed model that
      scores everything equal gets the worst rank, never the best. NaN scores are
      treated as -inf.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] == 0 or sim.shape[1] < sim.shape[0]:
        raise ValueError(
            f"similarity must be [num_queries, num_items] with num_items >= num_queries >= 1 and the "
            f"ground truth on the diagonal; got shape {sim.shape}")
    sim = np.where(np.isnan(sim), -np.inf, sim)
    num_queries = sim.shape[0]
    diag = sim[np.arange(num_queries), np.arange(num_queries)]
    at_least_as_good = sim >= diag[:, None]
    # The ground truth itself is always `>=` itself; count everyone else.
    return at_least_as_good.sum(axis=1).astype(np.int64)


def retrieval_metrics(similarity: np.ndarray) -> dict[str, float]:
    """Recall at 1/5/10 (percent), median and mean rank (1-based) of a retrieval task.

    Args:
      similarity: [num_queries, num_items]; similarity[i, i] is query i's ground truth.

    Returns:
      {"R@1", "R@5", "R@10", "MedR", "MeanR"} as Python floats.
    """
    ranks = ground_truth_ranks(similarity)
    metrics = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in (1, 5, 10)}
    metrics["MedR"] = float(np.median(ranks))
    metrics["MeanR"] = float(np.mean(ranks))
    return metrics
