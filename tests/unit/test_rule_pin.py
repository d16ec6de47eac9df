"""Pins: an item at a position within a date range; it must still pass every hard filter."""

from __future__ import annotations

import datetime as dt

from tests.fixtures.rules import POPULAR, ids, registry, serve, steps
from tests.fixtures.service import NOW

TODAY = dt.datetime.fromtimestamp(NOW, dt.UTC)


def pin(item: str, position: int, extra: str = "", name: str = "Hero") -> str:
    return (f'[[slots.t.rules]]\nname = "{name}"\ntype = "pin"\nitem = "{item}"\nposition = {position}\n'
            f"{extra}\n")


def test_a_pinned_item_is_at_its_position_with_its_reason() -> None:
    result = serve(registry(POPULAR + pin("i030", 2)), count=6)
    assert ids(result)[:3] == ["i002", "i030", "i003"]
    reason = next(r for i in result.items if i.item_id == "i030" for r in i.reasons)
    assert (reason.step, reason.kind, reason.detail) == ("Hero", "rule", "pinned at position 2")
    assert result.items[1].source == "pin"
    scores = [i.score for i in result.items]
    assert scores == sorted(scores, reverse=True)  # scores belong to positions


def test_pinning_an_item_already_in_the_list_moves_it() -> None:
    result = serve(registry(POPULAR + pin("i006", 1)), count=6)
    assert ids(result)[:2] == ["i006", "i002"] and ids(result).count("i006") == 1
    assert result.items[0].source == "popular"


def test_a_pin_applies_only_within_its_date_range() -> None:
    def at(days: float) -> str:
        return (TODAY + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    ranges = {"later": f"start = {at(1)}", "over": f"start = {at(-3)}\nend = {at(-1)}",
              "now": f"start = {at(-1)}\nend = {at(1)}"}
    served = {k: serve(registry(POPULAR + pin("i030", 1, v)), count=4) for k, v in ranges.items()}
    assert ids(served["now"])[0] == "i030"
    for k in ("later", "over"):
        assert "i030" not in ids(served[k])
        assert "not active" in next(s.note for s in served[k].trace.steps if s.step == "Hero")


def test_date_range_with_the_files_timezone() -> None:
    # naive date-times are in the file's time zone: Shanghai is UTC+8
    local = (TODAY + dt.timedelta(hours=8)).replace(tzinfo=None)
    hour = dt.timedelta(hours=1)
    window = f"start = {(local - hour).isoformat()}\nend = {(local + hour).isoformat()}"
    shanghai = 'timezone = "Asia/Shanghai"\n' + POPULAR + pin("i030", 1, window)
    utc = POPULAR + pin("i030", 1, window)
    assert ids(serve(registry(shanghai), count=4))[0] == "i030"
    assert "i030" not in ids(serve(registry(utc), count=4))  # the same clock times 8 hours later in UTC
    reason = steps(serve(registry(shanghai), count=4), "i030")
    assert reason == ["Hero"]


def test_a_pin_on_an_item_the_member_may_not_see_gives_way_to_the_filter() -> None:
    reg = registry(POPULAR + pin("i000", 1, name="Out of stock hero") + pin("i099", 2, name="Unknown")
                   + '[[slots.t.rules]]\nname = "No snacks"\ntype = "exclude"\ncategory = "snacks"\n'
                   + pin("i006", 3, name="Snack hero"))
    result = serve(reg, count=6)
    assert not {"i000", "i099", "i006"} & set(ids(result))
    assert result.trace.gave_way() == [
        "'Out of stock hero' gave way to in_stock: item i000 may not be shown here now",
        "'Unknown' gave way: item i099 is not in model tiny",
        "'Snack hero' gave way to No snacks: item i006 may not be shown here now"]


def test_several_pins_hold_their_positions_whatever_their_order() -> None:
    reg = registry(POPULAR + pin("i040", 3, name="C") + pin("i002", 5, name="B") + pin("i041", 1, name="A"))
    assert ids(serve(reg, count=6)) == ["i041", "i003", "i040", "i004", "i002", "i005"]


def test_a_position_beyond_the_request_is_noted() -> None:
    result = serve(registry(POPULAR + pin("i030", 8)), count=4)
    assert "i030" not in ids(result)
    assert "beyond the 4 items asked for" in next(s.note for s in result.trace.steps if s.step == "Hero")
