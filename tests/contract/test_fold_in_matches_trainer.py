"""The service's fold-in solves the trainer's member problem: from a member's bundle history it gets
back the vector the trainer published, so a member folded in online is ranked as the trained model
would rank them. Exactly when the trainer re-solved members on the final item vectors
(``member_half_life``); within a few percent otherwise (implicit's last member step ran on the item
vectors of the previous sweep, with conjugate gradient)."""

from __future__ import annotations

import numpy as np
import pytest

from service.domain import OnlineState
from service.model import ServingModel
from service.profile import MemberProfile
from tests.factories import DAY, make_dataset
from training.config import TrainConfig
from training.pipeline import train


def one_event_per_pair(members: int = 30, n_items: int = 40, seed: int = 5) -> list:
    """Each member touches distinct items once (the bundle history then holds every event exactly)."""
    rng = np.random.default_rng(seed)
    kinds = ["view", "click", "fav", "cart", "purchase"]
    rows = []
    for m in range(members):
        for i in rng.choice(n_items, 8, replace=False):
            rows.append((f"m{m}", f"i{i}", kinds[int(rng.integers(5))], int(rng.integers(0, 20 * DAY))))
    return rows


@pytest.mark.parametrize("member_half_life", [None, 2 * DAY])
def test_fold_in_of_the_history_gives_the_published_vector(tmp_path, member_half_life):
    ds = make_dataset(one_event_per_pair(), n_items=40)
    cfg = TrainConfig.model_validate({
        "weighting": {"half_life": 10 * DAY, "member_half_life": member_half_life},
        "als": {"factors": 6, "iterations": 8, "regularization": 0.5}, "neighbours": {"k": 5},
        "reranker": {"enabled": False}})
    model = ServingModel.load(train(ds, cfg, tmp_path))
    assert model.member_half_life == member_half_life
    for m in (0, 11, 29):
        profile = MemberProfile(model, f"m{m}", OnlineState(), int(ds.events.ts.max()))
        items, conf, _ = profile._weighted(model.member_half_life)
        folded, published = model.fold_in(items, conf), model.bundle.member_factors[m]
        if member_half_life:
            np.testing.assert_allclose(folded, published, atol=2e-3)
        else:
            cos = folded @ published / (np.linalg.norm(folded) * np.linalg.norm(published))
            assert cos > 0.99 and np.linalg.norm(folded - published) < 0.1 * np.linalg.norm(published)
