"""vatt.evaluation.retrieval_metrics on hand-computed cases."""

import numpy as np
import pytest

from vatt.evaluation import retrieval_metrics
from vatt.evaluation.retrieval import ground_truth_ranks


def test_identity_is_perfect():
    m = retrieval_metrics(np.eye(20))
    assert m == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "MedR": 1.0, "MeanR": 1.0}


def test_reversed_order_ranks_ground_truth_last():
    # Query i scores item j by -|i - j| reversed: ground truth is the lowest score.
    n = 12
    sim = -np.eye(n)
    ranks = ground_truth_ranks(sim)
    np.testing.assert_array_equal(ranks, np.full(n, n))
    m = retrieval_metrics(sim)
    assert m["R@1"] == 0.0 and m["R@5"] == 0.0 and m["R@10"] == 0.0
    assert m["MedR"] == n and m["MeanR"] == n


def test_all_ties_count_against_the_query():
    n = 7
    m = retrieval_metrics(np.ones((n, n)))
    assert m["R@1"] == 0.0 and m["R@5"] == 0.0 and m["R@10"] == 100.0  # rank n = 7 <= 10
    assert m["MedR"] == n and m["MeanR"] == n


def test_hand_computed_mixed_case():
    sim = np.array([
        [0.9, 0.1, 0.2, 0.3],   # rank 1
        [0.5, 0.4, 0.6, 0.0],   # 0.5 and 0.6 beat 0.4: rank 3
        [0.2, 0.7, 0.7, 0.1],   # tie with 0.7 counts against: rank 2
        [0.4, 0.3, 0.2, 0.1],   # lowest: rank 4
    ])
    np.testing.assert_array_equal(ground_truth_ranks(sim), [1, 3, 2, 4])
    m = retrieval_metrics(sim)
    assert m["R@1"] == 25.0 and m["R@5"] == 100.0
    assert m["MedR"] == 2.5 and m["MeanR"] == 2.5


def test_nan_scores_are_worst():
    sim = np.array([[np.nan, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(ground_truth_ranks(sim), [2, 1])


def test_more_items_than_queries():
    sim = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.5]])
    np.testing.assert_array_equal(ground_truth_ranks(sim), [2, 1])


@pytest.mark.parametrize("shape", [(3,), (3, 2), (0, 0)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match="similarity must be"):
        retrieval_metrics(np.zeros(shape))
