"""Train a small bundle, serve check_in through the wired app over gRPC: some items come "because you
liked" one of the member's own items; a bundle trained without the item model still serves."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import grpc
import pytest

from service import model_bundle as mb
from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.state.memory import InMemoryStateStore
from tests.factories import make_dataset
from tests.fixtures.server import serving
from training.config import TrainConfig
from training.dataset import Dataset
from training.pipeline import train
from training.progress import Steps

DAY = 86400


def _config(item_model: bool) -> TrainConfig:
    return TrainConfig.model_validate({"als": {"factors": 8, "iterations": 3}, "neighbours": {"k": 5},
                                       "reranker": {"enabled": False},
                                       "item_model": {"enabled": item_model, "k": 10}})


def _check_in(models: Path, ds: Dataset, members: list[str]) -> dict[str, list[pb.Item]]:
    now = float(ds.events.ts.max()) + DAY

    async def go() -> dict[str, list[pb.Item]]:
        async with serving(models, state=InMemoryStateStore(), clock=lambda: now) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            return {m: list((await stub.Recommend(pb.RecommendRequest(member_id=m, slot="check_in",
                                                                      count=12))).items)
                    for m in members}

    return asyncio.run(go())


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return make_dataset(members=40, n_items=40, seed=3)


def test_check_in_serves_items_because_the_member_liked_one_of_theirs(ds: Dataset,
                                                                       tmp_path: Path) -> None:
    path = train(ds, _config(True), tmp_path)
    manifest = mb.load(path).manifest
    assert manifest["item_model"]["fitted"] and manifest["item_model"]["nnz"] > 0
    members = [str(m) for m in ds.members.member_id[:8]]
    liked = 0
    for member, items in _check_in(tmp_path, ds, members).items():
        m = int(ds.members.member_id.tolist().index(member))
        own = set(ds.items.item_id[ds.events.item[ds.events.member == m]].tolist())
        for item in items:
            reason = next((r for r in item.reasons if r.step == "liked" and r.kind == "source"), None)
            if reason is None:
                continue
            found = re.fullmatch(r"because you liked (\S+)", reason.detail)
            assert found and found.group(1) in own, (member, reason.detail)
            assert item.item_id not in own
            liked += 1
    assert liked >= len(members), "check_in serves some items from 'liked'"


def test_a_bundle_without_the_item_model_says_why_and_still_serves(ds: Dataset, tmp_path: Path) -> None:
    said: list[str] = []

    class Said(Steps):
        def info(self, message: str) -> None:
            said.append(message)

    path = train(ds, _config(False), tmp_path, Said(quiet=True))
    b = mb.load(path)
    assert not b.has_liked
    assert b.manifest["item_model"]["skipped"] == "item_model.enabled is false"
    assert "item_model.enabled is false" in said  # train's output says it too
    items = _check_in(tmp_path, ds, [str(ds.members.member_id[0])])
    served = next(iter(items.values()))
    assert len(served) == 12 and all(r.step != "liked" for i in served for r in i.reasons)
