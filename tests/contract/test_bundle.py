"""The bundle format: what the trainer publishes is what the service loads, atomically."""

import json

import numpy as np
import pytest

from service import model_bundle as mb
from tests.factories import make_dataset
from training.config import TrainConfig
from training.pipeline import train

CFG = TrainConfig.model_validate({"als": {"factors": 8, "iterations": 3}, "neighbours": {"k": 5}})


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    ds = make_dataset(members=40, n_items=30, seed=1)
    path = train(ds, CFG, models)
    return ds, models, path


def test_round_trip(published):
    ds, models, path = published
    b = mb.load(models)
    assert b.path == path and b.version == mb.current_version(models)
    assert b.item_factors.shape == (30, 8) and b.member_factors.shape == (ds.n_members, 8)
    assert b.items.item_id.tolist() == ds.items.item_id.tolist()
    assert b.items.stock.tolist() == ds.items.stock.tolist()
    assert b.members.tier.tolist() == ds.members.tier.tolist()
    assert b.item_index["i3"] == 3 and b.member_index[ds.members.member_id[2]] == 2
    assert b.faiss_index.ntotal == 30
    m = b.manifest
    assert m["schema_version"] == mb.SCHEMA_VERSION and m["data_stats"]["events"] == len(ds.events)
    assert m["hyperparameters"]["als"]["factors"] == 8
    assert m["index"]["recall_at_100"] == pytest.approx(1.0)
    assert set(m["files"]) >= {"item_factors.npy", "items.parquet", "items.faiss"}


def test_members_come_back_with_their_sort_order_and_tier_codes(published):
    from service.model import ServingModel
    from service.rerank.features import _tier_ranks

    ds, models, _ = published
    b = mb.load(models)
    assert b.member_order.tolist() == np.argsort(ds.members.member_id.astype(str), kind="stable").tolist()
    names, codes = b.members.tier_codes
    assert names.tolist() == sorted(set(ds.members.tier.tolist()))
    assert names[codes].tolist() == ds.members.tier.tolist()
    without = mb.MemberTable(b.members.member_id, b.members.tier, b.members.points)
    assert _tier_ranks(b.members) == _tier_ranks(without)
    model = ServingModel(b)
    assert model.member_index._order is b.member_order  # the service did not sort the ids again
    for i, member in enumerate(ds.members.member_id.tolist()):
        assert model.member(str(member)) == i


def test_history_slices_belong_to_the_member(published):
    ds, models, _ = published
    b = mb.load(models)
    seen = {(int(m), int(i)) for m, i in zip(ds.events.member, ds.events.item, strict=True)}
    for member in range(ds.n_members):
        for item in b.history_items[b.history(member)]:
            assert (member, int(item)) in seen


def test_corrupt_file_is_rejected(published, tmp_path):
    _, models, path = published
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(path, copy)
    arr = copy / "item_factors.npy"
    arr.write_bytes(arr.read_bytes()[:-16])
    with pytest.raises(mb.BundleError, match="item_factors.npy"):
        mb.load(copy)


def test_unknown_schema_is_rejected(published, tmp_path):
    import shutil

    _, _, path = published
    copy = tmp_path / "bundle"
    shutil.copytree(path, copy)
    manifest = json.loads((copy / mb.MANIFEST).read_text())
    manifest["schema_version"] = 999
    (copy / mb.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(mb.BundleError, match="schema_version"):
        mb.load(copy)


def test_nothing_published_is_a_clear_error(tmp_path):
    with pytest.raises(mb.BundleError, match="no model published"):
        mb.load(tmp_path)


def test_failed_publish_leaves_current_and_no_half_bundle(published, tmp_path):
    ds, _, _ = published
    models = tmp_path / "m"
    first = train(ds, CFG, models)
    bad = mb.load(models)
    bad.arrays = dict(bad.arrays, item_factors=np.zeros((3, 8), np.float32))  # wrong shape
    bad.manifest = dict(bad.manifest, version="broken")
    with pytest.raises(mb.BundleError):
        mb.publish(bad, models)
    assert mb.current_version(models) == first.name
    assert sorted(p.name for p in (models / mb.VERSIONS_DIR).iterdir()) == [first.name]


def test_publish_keeps_only_recent_versions(published, tmp_path):
    ds, _, _ = published
    models = tmp_path / "m"
    paths = [train(ds, CFG, models, keep=2) for _ in range(3)]
    left = sorted(p.name for p in (models / mb.VERSIONS_DIR).iterdir())
    assert left == sorted(p.name for p in paths[-2:])
    assert mb.current_version(models) == paths[-1].name


def test_members_file_with_blank_or_missing_tiers_reads_as_before(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for tiers in (["gold", "", "silver", "gold"], ["gold", None, "silver", "gold"]):
        path = tmp_path / "members.parquet"
        pq.write_table(pa.table({"member_id": ["m1", "m2", "m3", "m4"], "tier": tiers,
                                 "points": [1.0, 2.0, None, 4.0]}), path)
        members = mb._read_members(path)
        plain = pq.read_table(path).column("tier").to_numpy(zero_copy_only=False)
        assert members.tier.tolist() == [str(t) for t in plain]  # a missing tier reads 'None', as before
        assert members.member_id.tolist() == ["m1", "m2", "m3", "m4"]
        if members.tier_codes is not None:
            names, codes = members.tier_codes
            assert names[codes].tolist() == members.tier.tolist()
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"member_id": pa.array([], pa.string()), "tier": pa.array([], pa.string()),
                             "points": pa.array([], pa.float64())}), empty)
    assert len(mb._read_members(empty)) == 0
