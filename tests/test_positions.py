"""vatt.data.positions: the training stream as a pure function of (seed, epoch, position)."""

import numpy as np
import pytest


def test_mixture_plan_is_exact_and_evenly_spread():
    from vatt.data import positions

    pattern, rank, count = positions.mixture_plan([0.3, 0.7])
    assert pattern.shape == (10,) and count.tolist() == [3, 7]
    assert np.bincount(pattern).tolist() == [3, 7]
    # Evenly spread: no run of source 0 and no more than 3 in a row of source 1.
    runs = "".join(map(str, pattern.tolist() * 2))
    assert "00" not in runs and "1111" not in runs
    for s in (0, 1):  # rank counts the earlier positions of the same source
        assert rank[pattern == s].tolist() == list(range(count[s]))
    assert positions.mixture_plan([2, 2, 4])[2].tolist() == [1, 1, 2]
    for bad in ([], [1, 0], [-1, 2]):
        with pytest.raises(ValueError, match="positive"):
            positions.mixture_plan(bad)


def test_positions_are_pure_and_each_epoch_is_a_permutation():
    import tensorflow as tf

    from vatt.data import positions

    plan = positions.mixture_plan([1, 2])
    whole = positions.training_positions(tf.constant(0, tf.int64), 60, 3, plan, [5, 7])
    part = positions.training_positions(tf.constant(17, tf.int64), 20, 3, plan, [5, 7])
    for k in whole:  # any window equals the same slice of the whole stream
        assert part[k].numpy().tolist() == whole[k].numpy()[17:37].tolist()
    src, epoch, ex = (whole[k].numpy() for k in ("source", "epoch", "example"))
    assert np.bincount(src).tolist() == [20, 40]
    for s, n in ((0, 5), (1, 7)):
        for e in range(3):  # every full epoch of a source visits each of its examples once
            sel = (src == s) & (epoch == e)
            assert sorted(ex[sel].tolist()) == list(range(n))
    orders = [ex[(src == 1) & (epoch == e)].tolist() for e in range(3)]
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled every epoch
    other = positions.training_positions(tf.constant(0, tf.int64), 60, 4, plan, [5, 7])
    assert other["example"].numpy().tolist() != ex.tolist()  # the seed matters


def test_host_slices_and_eval_shares():
    import tensorflow as tf

    from vatt.data import positions

    firsts = [int(positions.host_slice(tf.constant(3), 8, 12, 4, p)) for p in range(3)]
    assert firsts == [44, 48, 52]  # batch 3 of 12 after position 8: hosts take 4 rows each
    assert [positions.eval_share(7, p, 2) for p in range(2)] == [(0, 4), (4, 7)]
    assert [positions.eval_share(2, p, 4) for p in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]
