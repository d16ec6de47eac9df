"""The re-ranker's training pools are what the service serves: the same members, the same slot, the
same items in the same order from the same sources, through the service's own request path."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.domain import PageRequest, SlotAsk
from service.recommender import Recommender
from service.reload import Holder
from service.rerank.features import OTHER_SOURCE, SOURCE_INDEX
from service.slots import build_registry
from service.state.memory import InMemoryStateStore
from tests.factories import make_dataset
from training.config import TrainConfig
from training.rerank_candidates import SLOT, PoolMaker, for_you, serving_model
from training.reranker import fit_first_stage, label_split

N = 30


def _config(exclude_seen: bool) -> TrainConfig:
    return TrainConfig.model_validate({
        "als": {"factors": 8, "iterations": 3}, "neighbours": {"k": 10},
        "reranker": {"candidates": N, "min_groups": 20, "exclude_seen": exclude_seen,
                     "sources": {"als": 0.4, "liked": 0.1, "similar_recent": 0.2, "category_popular": 0.15,
                                 "trending": 0.1, "popular": 0.05}}})


@pytest.fixture(scope="module")
def first_stage():  # type: ignore[no-untyped-def]
    ds = make_dataset(members=160, n_items=80, seed=4)
    labels = label_split(ds, _config(False).reranker)
    return labels.features, fit_first_stage(labels.features, _config(False))


def test_pools_equal_what_the_service_serves_for_the_same_members(first_stage) -> None:  # type: ignore[no-untyped-def]
    ds, fs = first_stage
    config = _config(exclude_seen=False)
    model = serving_model(fs, config, ds.members)  # the first stage as the service loads a bundle
    spec = {"sources": [{"use": k, "weight": v} for k, v in config.reranker.sources.items()],
            "backfill": None, "pool": 1}
    service = Recommender(Holder(model), Holder(build_registry({SLOT: spec})), InMemoryStateStore(),
                          max_count=N, record_served=False, clock=lambda: float(fs.now))
    members = np.arange(0, 160, 7)
    pools = dict(PoolMaker(fs, config).pools(members, N))
    compared, liked = 0, 0
    for m in members.tolist():
        member_id = str(ds.members.member_id[m])
        page = asyncio.run(service.recommend(PageRequest(member_id, (SlotAsk(SLOT, N),))))
        served = page.slots[0].items
        pool = pools[m]
        assert [i.item_id for i in served] == model.item_ids[pool.items].tolist(), member_id
        # the features' source codes: "liked" has no column of its own (service/rerank/features.py)
        assert [SOURCE_INDEX.get(i.source, OTHER_SOURCE) for i in served] == pool.source.tolist(), member_id
        assert [i.score for i in served] == [round(s, 6) for s in pool.score.tolist()]  # the blend's
        assert pool.rank.tolist() == list(range(len(pool)))
        compared += len(pool)
        liked += sum(i.source == "liked" for i in served)
    assert compared > 10 * len(members)
    assert liked > len(members), "the pools hold the 'liked' source the personal slots serve"
    assert [s.source.name for s in for_you(config).sources] == list(config.reranker.sources)


def test_pools_leave_out_the_members_own_items_as_a_page_leaves_out_placed_ones(first_stage) -> None:  # type: ignore[no-untyped-def]
    ds, fs = first_stage
    for m, pool in PoolMaker(fs, _config(exclude_seen=True)).pools(np.arange(40), N):
        assert 0 < len(pool) <= N and len(set(pool.items.tolist())) == len(pool)
        assert not np.isin(pool.items, fs.seen[m].indices).any()
        assert (ds.items.stock[pool.items] != 0).all() and ds.items.on_shelf[pool.items].all()
