"""When rules cannot all hold: hard filters > pins > quotas > diversity > boosts, and the trace
says which rule gave way to which."""

from __future__ import annotations

from collections import Counter

from tests.fixtures.rules import POPULAR, ids, registry, serve
from tests.fixtures.service import tiny_model

MIX = '[[slots.t.rules]]\nname = "Mix"\ntype = "diversity"\nby = "category"\nmax = 1\ntop = 4\n'


def rule(name: str, kind: str, body: str) -> str:
    return f'[[slots.t.rules]]\nname = "{name}"\ntype = "{kind}"\n{body}\n'


def categories(items: list[str]) -> Counter[str]:
    m = tiny_model()
    return Counter(str(m.bundle.items.category[m.item_index[i]]) for i in items)


def test_hard_filters_beat_pins() -> None:
    reg = registry(POPULAR + rule("Gold vegan", "tier_only", 'tag = "vegan"\ntiers = ["gold"]')
                   + rule("Vegan hero", "pin", 'item = "i030"\nposition = 1'))
    assert ids(serve(reg, member="m003"))[0] == "i030"  # gold: the pin holds
    silver = serve(reg, member="m002")
    assert "i030" not in ids(silver)
    assert silver.trace.gave_way() == [
        "'Vegan hero' gave way to Gold vegan: item i030 may not be shown here now"]


def test_pins_beat_quotas_and_the_trace_names_them() -> None:
    cheap = rule("Few cheap", "quota", "price_max = 10\nmax = 1\ntop = 6")
    reg = registry(POPULAR + cheap + rule("Pin A", "pin", 'item = "i011"\nposition = 1')
                   + rule("Pin B", "pin", 'item = "i013"\nposition = 2'))
    result = serve(reg, count=6)
    assert ids(result)[:2] == ["i011", "i013"]  # both under 10 yuan: the pins hold
    assert not {"i002", "i003"} & set(ids(result))  # the quota still keeps the free positions clean
    assert result.trace.gave_way() == [
        "'Few cheap' gave way to 'Pin A', 'Pin B': 2 with price under 10 in the top 6, wants at most 1"]


def test_quotas_plan_around_pins_so_both_hold() -> None:
    reg = registry(POPULAR + rule("Two vegan", "quota", 'tag = "vegan"\nmin = 2\ntop = 4')
                   + rule("Hero", "pin", 'item = "i031"\nposition = 1'))
    result = serve(reg, count=6)
    top = ids(result)[:4]
    assert top[0] == "i031" and {"i005", "i010"} <= set(top)  # i031 is not vegan: 2 of the other 3
    assert not result.trace.gave_way()
    vegan_pin = registry(POPULAR + rule("Two vegan", "quota", 'tag = "vegan"\nmin = 2\ntop = 4')
                         + rule("Hero", "pin", 'item = "i030"\nposition = 1'))  # i030 is vegan: it counts
    assert ids(serve(vegan_pin, count=6))[:4] == ["i030", "i002", "i003", "i005"]


def test_quotas_beat_diversity() -> None:
    reg = registry(POPULAR + MIX + rule("Two snacks", "quota", 'category = "snacks"\nmin = 2\ntop = 4'))
    result = serve(reg, count=6)
    assert categories(ids(result)[:4])["snacks"] == 2
    assert result.trace.gave_way() == [
        "'Mix' gave way to 'Two snacks': snacks above 1 in the top 4"]


def test_diversity_beats_boosts() -> None:
    reg = registry(POPULAR + rule("Snacks!", "boost", 'category = "snacks"\nfactor = 50') + MIX)
    result = serve(reg, count=6)
    assert ids(result)[0] == "i002"  # a snack still leads
    assert categories(ids(result)[:4])["snacks"] == 1
    assert not result.trace.gave_way()


def test_diversity_plans_around_pins() -> None:
    reg = registry(POPULAR + MIX + rule("Snack hero", "pin", 'item = "i030"\nposition = 4'))  # i030: snacks
    result = serve(reg, count=6)
    top = ids(result)[:4]
    assert top[3] == "i030" and categories(top)["snacks"] == 1 and max(categories(top).values()) == 1
