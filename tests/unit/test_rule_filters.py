"""Hard filters from the rules file: include/exclude, tier-only, stock, bought recently, caps."""

from __future__ import annotations

from service.domain import OnlineState
from service.engine.run import run
from tests.fixtures.rules import POPULAR, ids, registry, serve
from tests.fixtures.service import slot_query, tiny_model

UNDER_10 = {"i002", "i003", "i011", "i013"}  # the tiny bundle's cheap items among the popular ones


def rule(body: str) -> str:
    return POPULAR + "[[slots.t.rules]]\n" + body


def test_include_a_price_band_removes_the_rest_under_the_rules_name() -> None:
    result = serve(registry(rule('name = "Over 10 yuan"\ntype = "include"\nprice_min = 10')), count=12)
    assert not UNDER_10 & set(ids(result))
    assert {"i002", "i003"} <= set(result.trace.removed_by("Over 10 yuan"))
    step = next(s for s in result.trace.steps if s.step == "Over 10 yuan")
    assert step.note == "only items with price 10 and up"


def test_exclude_by_category_and_brand_case_insensitive() -> None:
    reg = registry(rule('name = "No snacks"\ntype = "exclude"\ncategory = "SNACKS"\n') +
                   '[[slots.t.rules]]\nname = "No acme"\ntype = "exclude"\nbrand = ["Acme"]\n')
    model = tiny_model()
    served = serve(reg, count=10).items
    assert served
    for item in served:
        i = model.item_index[item.item_id]
        assert model.bundle.items.category[i] != "snacks" and model.bundle.items.brand[i] != "acme"


def test_tier_only_items_reach_only_that_tier() -> None:
    reg = registry(rule('name = "Vegan for gold"\ntype = "tier_only"\ntag = "vegan"\ntiers = ["gold"]'))
    gold, silver, stranger = (ids(serve(reg, member=m, count=12)) for m in ("m003", "m002", "nobody"))
    assert "i005" in gold and "i010" in gold  # tagged "vegan organic"
    assert not {"i005", "i010", "i015"} & (set(silver) | set(stranger))
    assert "i005" in serve(reg, member="m002", count=12).trace.removed_by("Vegan for gold")


def test_min_stock_keeps_unknown_stock() -> None:
    result = serve(registry(rule('name = "Plenty"\ntype = "min_stock"\nmin_stock = 11')), count=5)
    assert ids(result) == ["i002"]  # stock -1: unknown counts as in stock; the rest have 10


def test_bought_recently_rule_is_stricter_than_the_slot_default() -> None:
    # m001 bought i011 two days ago (the built-in 14-day filter) and i010 35 days ago (the rule's 60)
    result = serve(registry(rule('name = "Not this quarter"\ntype = "bought_recently"\ndays = 60')),
                   member="m001", count=12)
    assert result.trace.removed_by("bought_recently") == ["i011"]
    assert result.trace.removed_by("Not this quarter") == ["i010"]


def test_frequency_cap_counts_today_or_a_window_of_days() -> None:
    today = registry(rule('name = "3 a day"\ntype = "frequency_cap"\nmax = 3'))
    week = registry(rule('name = "4 a week"\ntype = "frequency_cap"\nmax = 4\ndays = 7'))
    assert week.impression_days == 7 and today.impression_days == 1
    q = slot_query("m002", count=12, slot="t", impressions={"i002": 3, "i003": 2, "i004": 1})
    q.state.past_impressions = [{"i003": 1}, {}, {"i004": 5}]
    capped = run(today.get("t"), q)  # type: ignore[arg-type]
    assert capped.trace.removed_by("3 a day") == ["i002"]
    q = slot_query("m002", count=12, slot="t", impressions={"i002": 3, "i003": 2, "i004": 1})
    q.state.past_impressions = [{"i003": 1}, {}, {"i004": 5}]
    assert sorted(run(week.get("t"), q).trace.removed_by("4 a week")) == ["i004"]  # type: ignore[arg-type]
    assert OnlineState(impressions={"a": 1}, past_impressions=[{"a": 2}]).impressions_over(2) == {"a": 3}


def test_shown_today_and_a_cap_that_cannot_be_read() -> None:
    reg = registry(rule('name = "Fresh"\ntype = "shown_today"'))
    result = serve(reg, impressions={"i004": 1}, count=5)
    assert result.trace.removed_by("Fresh") == ["i004"]
    q = slot_query("m002", count=5, slot="t")
    q.profile.state.degraded = True
    result = run(reg.get("t"), q)  # type: ignore[arg-type]
    step = next(s for s in result.trace.steps if s.step == "Fresh")
    assert "state store unavailable" in step.note and not step.removed
