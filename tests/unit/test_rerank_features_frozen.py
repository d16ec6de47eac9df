"""The trimmed features.compute gives exactly the rows of the frozen pre-trim copy (float32 bits,
NaNs in the same places) on random members, histories, fresh events and candidate batches."""

import numpy as np
import pytest

from service.model_bundle import EVENT_TYPES, MemberTable
from service.rerank.features import SOURCES, Candidates, FeatureContext, MemberInputs, compute
from tests.factories import items_table
from tests.fixtures import features_frozen
from training.dataset import Dataset, Interactions
from training.history import member_history

N_ITEMS, N_MEMBERS, DIM, HOUR = 300, 40, 8, 3600


@pytest.fixture(scope="module")
def ctx() -> FeatureContext:
    rng = np.random.default_rng(11)
    items = items_table(N_ITEMS, categories=9, seed=2)
    items.category[rng.random(N_ITEMS) < 0.05] = ""  # unknown categories and brands too
    items.brand[rng.random(N_ITEMS) < 0.05] = ""
    items.launched_at[:40] = rng.integers(0, 50 * HOUR, 40)
    members = MemberTable(np.array([f"m{k}" for k in range(N_MEMBERS)]),
                          rng.choice(["gold", "silver", "bronze", ""], N_MEMBERS),
                          np.where(rng.random(N_MEMBERS) < 0.2, np.nan, rng.uniform(0, 5000, N_MEMBERS)))
    n = 600
    ev = Interactions(member=rng.integers(0, N_MEMBERS - 5, n).astype(np.int32),  # 5 without history
                      item=rng.integers(0, N_ITEMS, n).astype(np.int32),
                      event=rng.integers(0, len(EVENT_TYPES), n).astype(np.uint8),
                      ts=rng.integers(0, 100 * HOUR, n).astype(np.int64),
                      member_ids=members.member_id, item_ids=items.item_id)
    nbr = rng.integers(0, N_ITEMS, (N_ITEMS, 6)).astype(np.int32)
    nbr[rng.random(nbr.shape) < 0.1] = -1  # short neighbour lists
    arrays = {
        "item_factors": rng.normal(size=(N_ITEMS, DIM)).astype(np.float32),
        "member_factors": rng.normal(size=(N_MEMBERS, DIM)).astype(np.float32),
        "popularity_global": rng.integers(0, 50, N_ITEMS).astype(np.float32),
        "popularity_trending": rng.random(N_ITEMS).astype(np.float32),
        "neighbour_items": nbr,
        "neighbour_scores": rng.random((N_ITEMS, 6)).astype(np.float32),
        **member_history(Dataset(ev, items, members)),
    }
    return FeatureContext(items, members, arrays)


def _twin(m: MemberInputs) -> MemberInputs:
    """The same member inputs without the summaries the other implementation kept on them."""
    return MemberInputs(m.items, m.last_ts, m.events, m.purchases, m.now, m.vector, m.tier_rank, m.points)


def test_compute_matches_the_frozen_copy_bit_for_bit(ctx: FeatureContext) -> None:
    rng = np.random.default_rng(5)
    for trial in range(300):
        member = int(rng.integers(-1, N_MEMBERS))
        fresh = [(int(rng.integers(N_ITEMS)), int(rng.integers(len(EVENT_TYPES))),
                  int(rng.integers(0, 120 * HOUR))) for _ in range(int(rng.integers(0, 4)))]
        vector = rng.normal(size=DIM) if trial % 3 else None
        m = ctx.member_inputs(None if member < 0 else member, 120 * HOUR + trial, recent=fresh, vector=vector)
        n = int(rng.integers(0, 120))
        batch = Candidates.from_names(rng.choice(N_ITEMS, n, replace=False), rng.choice([*SOURCES, "x"], n),
                                      rng.random(n) if trial % 2 else None)
        old = features_frozen.compute(ctx, _twin(m), batch)
        for _ in range(2):  # a second slot of the page reuses the member summaries
            new = compute(ctx, m, batch)
            assert new.dtype == old.dtype == np.float32 and new.shape == old.shape
            assert new.tobytes() == old.tobytes(), f"trial {trial}"
