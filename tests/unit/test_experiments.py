"""Experiments: stable arm assignment split by the weights, the arm in the response, the event log and
the trace, checks that refuse overlapping experiments and bad arms (at check and at hot reload), and
an arm serving another published model version."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import redis

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.eventlog.schema import decode
from service.experiments import SlotArm, SlotExperiment, bucket
from service.model_bundle import current_version
from service.rules.loader import RulesError, load_rules
from service.rules.preview import run_slot
from service.state.keys import log_stream_key
from service.state.memory import InMemoryStateStore
from tests.fixtures.redis_server import delete_prefix, shared_url, unique_prefix
from tests.fixtures.server import serving
from tests.fixtures.tiny_bundle import publish_tiny

EXPERIMENT = """
[experiments.checkin_popular]
slots = ["check_in"]
salt = "2026-12"
[[experiments.checkin_popular.arms]]
name = "control"
weight = 50
[[experiments.checkin_popular.arms]]
name = "popular"
weight = 50
slot = { sources = [{ use = "popular" }], rerank = false }
"""


def test_assignment_is_stable_and_split_by_the_weights() -> None:
    recipe = object()
    exp = SlotExperiment("e", "salt-1", (SlotArm("a", 70, recipe), SlotArm("b", 30, recipe)))  # type: ignore[arg-type]
    members = [f"member-{k}" for k in range(20_000)] + ["", "unknown-🙂"]
    arms = [exp.assign(m).name for m in members]
    assert arms == [exp.assign(m).name for m in members], "the same member, the same arm"
    share = arms.count("a") / len(arms)
    assert abs(share - 0.7) < 4 * (0.7 * 0.3 / len(arms)) ** 0.5  # within four standard errors
    other = SlotExperiment("e", "salt-2", exp.arms)
    moved = sum(exp.assign(m).name != other.assign(m).name for m in members[:2000])
    assert moved > 500, "a new salt reshuffles members"
    # the same in another process (no per-process hash seed): replicas and restarts agree
    code = "from service.experiments import bucket; print(repr(bucket('salt-1', 'member-7')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(out) == bucket("salt-1", "member-7")


def test_a_zero_weight_arm_gets_nobody() -> None:
    recipe = object()
    exp = SlotExperiment("e", "s", (SlotArm("a", 0, recipe), SlotArm("b", 1, recipe)))  # type: ignore[arg-type]
    assert {exp.assign(f"m{k}").name for k in range(2000)} == {"b"}


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    (EXPERIMENT + EXPERIMENT.replace("checkin_popular", "second"), "both run on check_in at the same time"),
    (EXPERIMENT.replace('slots = ["check_in"]', 'slots = ["nope"]'), "no slot 'nope'"),
    (EXPERIMENT.replace("weight = 50", "weight = 0"), "weights must add up to more than 0"),
    (EXPERIMENT.replace('name = "popular"', 'name = "control"'), "another arm is already called 'control'"),
    (EXPERIMENT.replace("rerank = false", "colour = 1"), "unknown field"),
    (EXPERIMENT.replace('use = "popular"', 'use = "nosuch"'), "unknown source 'nosuch'"),
    (EXPERIMENT.replace("weight = 50\nslot", 'weight = 50\nmodel = "v404"\nslot'), "not published"),
    (EXPERIMENT.replace('salt = "2026-12"', 'salt = "2026-12"\nstart = 2026-12-19\nend = 2026-12-05'),
     "must be after start"),
])
def test_bad_experiments_are_errors(tmp_path: Path, text: str, message: str) -> None:
    publish_tiny(tmp_path / "models")
    with pytest.raises(RulesError) as err:
        load_rules(write(tmp_path, text), models_dir=tmp_path / "models")
    assert any(message in p.message for p in err.value.problems), err.value


def test_experiments_in_separate_windows_may_share_a_slot(tmp_path: Path) -> None:
    first = EXPERIMENT.replace('salt = "2026-12"', 'salt = "a"\nend = 2026-12-05')
    second = EXPERIMENT.replace("checkin_popular", "later").replace('salt = "2026-12"',
                                                                     'salt = "b"\nstart = 2026-12-05')
    registry = load_rules(write(tmp_path, first + second)).registry
    assert [e.name for e in registry.experiments["check_in"]] == ["checkin_popular", "later"]
    before = time.mktime((2026, 12, 1, 0, 0, 0, 0, 0, 0))
    after = time.mktime((2026, 12, 10, 0, 0, 0, 0, 0, 0))
    assert registry.arm_for("check_in", "m1", before)[0].name == "checkin_popular"  # type: ignore[index]
    assert registry.arm_for("check_in", "m1", after)[0].name == "later"  # type: ignore[index]


def test_the_preview_trace_names_the_experiment_and_arm(tmp_path: Path) -> None:
    from service.model import ServingModel

    publish_tiny(tmp_path / "models")
    model = ServingModel.load(tmp_path / "models")
    registry = load_rules(write(tmp_path, EXPERIMENT)).registry
    seen = {}
    for member in (f"m{k:03d}" for k in range(20)):
        result = run_slot(model, registry, member, "check_in", 5, time.time())
        assert result.trace.steps[0].kind == "experiment" and "checkin_popular" in result.trace.steps[0].note
        seen[result.arm] = {i.source for i in result.items}
    assert seen["popular"] == {"popular"} and seen["control"] != {"popular"}


def test_the_arm_is_in_the_response_and_the_event_log(tmp_path: Path) -> None:
    publish_tiny(tmp_path / "models")
    rules = write(tmp_path, EXPERIMENT)
    url, prefix = shared_url(), unique_prefix()
    registry = load_rules(rules).registry

    async def go() -> dict[str, str]:
        async with serving(tmp_path / "models", rules_path=rules, redis_url=url,
                           redis_prefix=prefix) as app, grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            arms = {}
            for k in range(30):
                member = f"m{k:03d}"
                resp = await stub.Recommend(pb.RecommendRequest(member_id=member, slot="check_in", count=4))
                assert resp.experiment == "checkin_popular"
                arms[member] = resp.arm
                if resp.arm == "popular":
                    assert {i.source for i in resp.items} == {"popular"}
                page = await stub.RecommendPage(pb.RecommendPageRequest(member_id=member, slots=[
                    pb.SlotRequest(slot="check_in", count=3), pb.SlotRequest(slot="delivery", count=3)]))
                assert (page.slots[0].arm, page.slots[1].experiment) == (resp.arm, "")
            await app.recommender.drain()
            return arms

    try:
        arms = asyncio.run(go())
        assert set(arms.values()) == {"control", "popular"}
        assert all(registry.arm_for("check_in", m, time.time())[1].name == a  # type: ignore[index]
                   for m, a in arms.items())
        client = redis.Redis.from_url(url, decode_responses=True)
        served = [decode(f["r"]) for _, f in client.xrange(log_stream_key(prefix))]
        client.close()
        check_in = [r for r in served if r.slot == "check_in"]
        assert check_in
        assert all((r.experiment, r.arm) == ("checkin_popular", arms[r.member_id]) for r in check_in)
        assert all((r.experiment, r.arm) == ("", "") for r in served if r.slot == "delivery")
    finally:
        delete_prefix(url, prefix)


def test_a_bad_experiment_is_refused_at_hot_reload(tmp_path: Path) -> None:
    publish_tiny(tmp_path / "models")
    rules = write(tmp_path, EXPERIMENT)

    async def go() -> None:
        async with serving(tmp_path / "models", rules_path=rules, state=InMemoryStateStore(),
                           reload_interval=0.05) as app:
            live = app.slots.current
            rules.write_text(EXPERIMENT + EXPERIMENT.replace("checkin_popular", "overlapping"))
            sample = app.metrics.registry.get_sample_value
            async with asyncio.timeout(10):
                while sample("mallrec_rules_reload_failures_total") != 1:
                    await asyncio.sleep(0.05)
            assert app.slots.current is live, "the serving rules stay"
    asyncio.run(go())


def test_an_arm_serves_another_published_model_version(tmp_path: Path) -> None:
    models = tmp_path / "models"
    publish_tiny(models, seed=1, version="older")
    publish_tiny(models, seed=2, version="newer")
    assert current_version(models) == "newer"
    text = EXPERIMENT.replace("slot = { sources", 'model = "older"\nslot = { sources')
    rules = write(tmp_path, text)

    async def go() -> None:
        async with serving(models, rules_path=rules, state=InMemoryStateStore()) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            versions = set()
            for k in range(30):
                req = pb.RecommendRequest(member_id=f"m{k:03d}", slot="check_in", count=3)
                resp = await stub.Recommend(req)
                versions.add((resp.arm, resp.model_version))
                assert not resp.degraded
            assert versions == {("control", "newer"), ("popular", "older")}
    asyncio.run(go())


def test_two_experiments_with_one_salt_are_warned_about(tmp_path: Path) -> None:
    first = EXPERIMENT.replace('salt = "2026-12"', 'salt = "same"\nend = 2026-12-05')
    second = EXPERIMENT.replace("checkin_popular", "later").replace('salt = "2026-12"',
                                                                     'salt = "same"\nstart = 2026-12-05')
    loaded = load_rules(write(tmp_path, first + second))
    assert any("has the salt of 'checkin_popular'" in p.message for p in loaded.problems)


def test_an_arm_whose_model_is_not_loaded_is_served_untagged_and_degraded(tmp_path: Path) -> None:
    models = tmp_path / "models"
    publish_tiny(models, seed=1, version="older")
    publish_tiny(models, seed=2, version="newer")
    rules = write(tmp_path, EXPERIMENT.replace("slot = { sources", 'model = "older"\nslot = { sources'))

    async def go() -> None:
        async with serving(models, rules_path=rules, state=InMemoryStateStore()) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            assert app.arm_models is not None
            app.arm_models.loaded.clear()  # as if the version failed to load
            stub = pb_grpc.RecommenderStub(ch)
            seen = set()
            for k in range(30):
                req = pb.RecommendRequest(member_id=f"m{k:03d}", slot="check_in", count=3)
                resp = await stub.Recommend(req)
                seen.add((resp.arm, resp.model_version, resp.degraded))
            assert seen == {("control", "newer", False), ("", "newer", True)}
    asyncio.run(go())
