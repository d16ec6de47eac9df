"""Use cases with a fake state store: validation, pages without repeats, degraded answers."""

from __future__ import annotations

import asyncio

import pytest

from service.domain import Context, Event, InvalidArgument, ModelUnavailable, NotFound, PageRequest, SlotAsk
from service.recommender import Recommender
from service.reload import Holder
from service.slots import default_registry
from service.state.memory import InMemoryStateStore
from tests.fixtures.service import NOW, tiny_model

PAGE = (SlotAsk("search_box", 8), SlotAsk("check_in", 8), SlotAsk("delivery", 8))


def make(store: InMemoryStateStore | None = None, model=tiny_model()) -> Recommender:  # type: ignore[no-untyped-def]
    return Recommender(Holder(model), Holder(default_registry()), store or InMemoryStateStore(),
                       max_count=50, clock=lambda: NOW)


def ask(rec: Recommender, member: str = "m001", slots=PAGE, **kw) -> object:  # type: ignore[no-untyped-def]
    return asyncio.run(rec.recommend(PageRequest(member, slots, Context(**kw)), single=len(slots) == 1))


def test_a_page_has_no_item_twice_and_every_slot_is_full() -> None:
    page = ask(make(), order_item_ids=("i012",), query="acme")
    served = [i.item_id for s in page.slots for i in s.items]
    assert len(served) == len(set(served)) == 24
    assert [s.slot for s in page.slots] == ["search_box", "check_in", "delivery"]
    assert page.model_version == "tiny" and page.rules_version == "builtin" and not page.degraded
    assert page.request_id


@pytest.mark.parametrize(("member", "slots", "field"), [
    ("", (SlotAsk("check_in", 5),), "member_id"),
    ("m1", (SlotAsk("nope", 5),), "slot"),
    ("m1", (SlotAsk("check_in", 0),), "count"),
    ("m1", (SlotAsk("check_in", 51),), "count"),
    ("m1", (SlotAsk("check_in", 5), SlotAsk("nope", 5)), "slots[1].slot"),
    ("m1", (SlotAsk("check_in", 5), SlotAsk("check_in", 5)), "slots[1].slot"),
    ("m1", (), "slots"),
])
def test_bad_requests_name_the_field(member: str, slots: tuple, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        ask(make(), member, slots)
    assert err.value.field == field


def test_no_model_is_unavailable_and_an_unknown_member_is_a_cold_start() -> None:
    with pytest.raises(ModelUnavailable):
        ask(make(model=None))
    assert len(ask(make(), "never-seen", (SlotAsk("check_in", 6),)).slots[0].items) == 6


def test_served_items_are_counted_as_impressions() -> None:
    store = InMemoryStateStore()

    async def go() -> dict[str, int]:
        rec = make(store)
        page = await rec.recommend(PageRequest("m001", (SlotAsk("check_in", 3),)))
        await rec.drain()
        return {i.item_id: 1 for i in page.slots[0].items}

    served = asyncio.run(go())
    assert asyncio.run(store.read("m001", NOW)).impressions == served


def test_a_store_that_cannot_be_read_gives_a_degraded_answer() -> None:
    store = InMemoryStateStore()
    store.fail = True
    page = ask(make(store), "m001", (SlotAsk("check_in", 5),))
    assert page.degraded and len(page.slots[0].items) == 5


def test_a_slow_store_is_skipped_when_the_deadline_is_near() -> None:
    class Slow(InMemoryStateStore):
        async def read(self, member_id: str, now: float):  # type: ignore[no-untyped-def]
            await asyncio.sleep(1)
            return await super().read(member_id, now)

    page = asyncio.run(make(Slow()).recommend(PageRequest("m001", (SlotAsk("check_in", 5),)), time_left=0.05))
    assert page.degraded and len(page.slots[0].items) == 5


def test_tracked_purchase_changes_the_next_answer() -> None:
    store = InMemoryStateStore()
    rec = make(store)
    before = ask(rec, "m003", (SlotAsk("check_in", 10),)).slots[0].items
    target = before[0].item_id
    assert asyncio.run(rec.track([Event("m003", target, "purchase", 0)])).new == 1
    assert store.events["m003"][0].ts == NOW  # ts 0 means now
    after = [i.item_id for i in ask(rec, "m003", (SlotAsk("check_in", 10),)).slots[0].items]
    assert target not in after and after != [i.item_id for i in before]


@pytest.mark.parametrize(("event", "field"), [
    (Event("", "i1", "view", 0), "events[0].member_id"),
    (Event("m", "", "view", 0), "events[0].item_id"),
    (Event("m", "i1", "like", 0), "events[0].event"),
    (Event("m", "i1", "view", -5), "events[0].ts"),
])
def test_bad_events_name_the_field_and_nothing_is_stored(event: Event, field: str) -> None:
    store = InMemoryStateStore()
    with pytest.raises(InvalidArgument) as err:
        asyncio.run(make(store).track([Event("m", "i2", "impression", 0), event]))
    assert err.value.field == field.replace("[0]", "[1]")
    assert not store.events and not store.impressions


def test_similar_items_are_buyable_neighbours() -> None:
    rec = make()
    items, version = asyncio.run(rec.similar_items("i003", 5))
    assert version == "tiny" and len(items) == 5
    assert all(i.item_id not in ("i000", "i001", "i003") for i in items)
    with pytest.raises(NotFound):
        asyncio.run(rec.similar_items("nope", 5))
    with pytest.raises(InvalidArgument):
        asyncio.run(rec.similar_items("", 5))


def test_a_frequency_cap_over_days_reads_that_many_days_of_impressions() -> None:
    from dataclasses import replace

    store = InMemoryStateStore()
    asked: list[int] = []

    class Counting(InMemoryStateStore):
        async def read(self, member_id: str, now: float, days: int = 1):  # type: ignore[no-untyped-def]
            asked.append(days)
            return await store.read(member_id, now, days)

    week = replace(default_registry(), impression_days=7)
    rec = Recommender(Holder(tiny_model()), Holder(week), Counting(), clock=lambda: NOW)
    asyncio.run(rec.recommend(PageRequest("m001", (SlotAsk("check_in", 3),))))
    assert asked == [7]
