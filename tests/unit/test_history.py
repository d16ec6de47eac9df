import numpy as np

from tests.factories import make_dataset
from training.history import NEVER, member_history


def test_history_aggregates_pairs_and_keeps_purchases():
    ds = make_dataset([("m1", "i0", "view", 1), ("m1", "i0", "purchase", 5), ("m1", "i0", "purchase", 9),
                       ("m1", "i1", "cart", 3), ("m2", "i2", "view", 4)])
    h = member_history(ds)
    assert h["history_indptr"].tolist() == [0, 2, 3]
    m1 = slice(0, 2)
    assert h["history_items"][m1].tolist() == [0, 1]  # most recent first
    assert h["history_last_ts"][m1].tolist() == [9, 3]
    assert h["history_purchases"][m1].tolist() == [2, 0]
    assert h["history_first_purchase_ts"][m1].tolist() == [5, NEVER]
    assert h["history_events"][0] == 0b10001  # view | purchase


def test_history_caps_non_purchases_but_never_drops_a_purchase():
    rows = [("m1", f"i{k}", "view", k) for k in range(7)] + [("m1", "i7", "purchase", -1)]
    ds = make_dataset(rows, n_items=8)
    h = member_history(ds, keep_recent=3)
    assert sorted(h["history_items"].tolist()) == [4, 5, 6, 7]
    assert np.all(np.diff(h["history_indptr"]) >= 0)


def test_stable_argsort_matches_numpy_with_ties_and_falls_back_on_wide_keys():
    from training.history import stable_argsort

    rng = np.random.default_rng(3)
    for key in (rng.integers(0, 50, 1000), rng.integers(0, 2**40, 1000), np.zeros(0, np.int64),
                np.array([2**62, 5, 2**62, 1]), np.array([-3, 4, -3, 0])):
        order, skey = stable_argsort(key)
        want = np.argsort(key, kind="stable")
        assert np.array_equal(order, want) and np.array_equal(skey, key[want])
