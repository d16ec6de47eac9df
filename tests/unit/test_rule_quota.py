"""Quotas: at least / at most N matching items in the top K; gives way when candidates are short."""

from __future__ import annotations

from tests.fixtures.rules import POPULAR, ids, registry, serve, steps


def quota(body: str) -> str:
    return POPULAR + '[[slots.t.rules]]\nname = "Q"\ntype = "quota"\n' + body


def test_at_least_pulls_the_best_matching_items_into_the_top() -> None:
    result = serve(registry(quota('tag = "vegan"\nmin = 2\ntop = 6')), count=8)
    top = ids(result)[:6]
    assert {"i005", "i010"} <= set(top)
    assert top[5] == "i010"  # the pulled item takes the bottom of the window
    assert ids(result)[6] == "i007"  # the displaced item moves just below it
    assert "Q" in steps(result, "i010") and "Q" in steps(result, "i007")


def test_at_most_pushes_extra_matching_items_below_the_top() -> None:
    result = serve(registry(quota("price_max = 10\nmax = 1\ntop = 6")), count=8)
    top = ids(result)[:6]
    assert top[0] == "i002" and "i003" not in top  # i002, i003 are under 10 yuan
    assert ids(result)[6] == "i003"
    detail = [r.detail for i in result.items if i.item_id == "i003" for r in i.reasons if r.step == "Q"]
    assert detail == ["moved down: at most 1 with price under 10 in the top 6"]


def test_a_quota_the_candidates_cannot_meet_gives_way_and_says_how_far_it_got() -> None:
    result = serve(registry(quota('items = ["i020", "i059"]\nmin = 2\ntop = 4')), count=6)
    assert "i020" in ids(result)[:4]
    assert result.trace.gave_way() == [
        "'Q' gave way: only 1 of the 2 more items with items i020, i059 it wants in the top 4 are among "
        "the candidates"]


def test_the_window_is_never_larger_than_the_request() -> None:
    result = serve(registry(quota('tag = "vegan"\nmin = 3\ntop = 10')), count=2)
    assert ids(result) == ["i002", "i005"]  # 2 asked for: the quota wants 2, the candidates have 1
    assert "only 1 of the 2 more items" in result.trace.gave_way()[0]
