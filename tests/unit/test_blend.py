"""Interleave blending: weights become shares of positions; duplicates keep their first place."""

from __future__ import annotations

from service.blend import Interleave
from service.domain import Candidate
from tests.fixtures.service import slot_query


def pool(source: str, items: list[int]) -> list[Candidate]:
    return [Candidate(i, 1.0 / (n + 1), source) for n, i in enumerate(items)]


def test_weights_become_position_shares_spread_evenly() -> None:
    blend = Interleave({"a": 0.75, "b": 0.25})
    pools = {"a": pool("a", list(range(100, 112))), "b": pool("b", list(range(200, 204)))}
    out = blend.blend(slot_query(), pools)
    sources = "".join(c.source for c in out[:8])
    assert sources.count("b") == 2 and "bb" not in sources
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)
    assert blend.describe() == "a 75% · b 25%"


def test_an_empty_source_gives_its_share_to_the_others() -> None:
    out = Interleave({"a": 0.5, "b": 0.5}).blend(slot_query(), {"a": pool("a", [1, 2, 3]), "b": []})
    assert [c.item for c in out] == [1, 2, 3]


def test_an_item_from_two_sources_appears_once_with_both_reasons() -> None:
    out = Interleave({"a": 1, "b": 1}).blend(slot_query(), {"a": pool("a", [1, 2]), "b": pool("b", [1, 3])})
    assert [c.item for c in out] == [1, 3, 2]
    assert any(r.detail == "also from b" for r in out[0].reasons)


def _reference_blend(weights: dict[str, float], pools: dict[str, list[Candidate]]) -> list[Candidate]:
    """Interleave.blend before its one-pool-left shortcut (commit 2867151), kept to compare with."""
    names = [n for n, p in pools.items() if p and weights.get(n, 0) > 0]
    weight, pending = [weights[n] for n in names], [pools[n] for n in names]
    at, credit = [0] * len(names), [0.0] * len(names)
    placed: dict[int, Candidate] = {}
    out: list[Candidate] = []
    while names:
        total, pick = sum(weight), 0
        for k in range(len(names)):
            credit[k] += weight[k]
            if credit[k] > credit[pick]:
                pick = k
        credit[pick] -= total
        p, i = pending[pick], at[pick]
        while i < len(p) and p[i].item in placed:
            placed[p[i].item].because("interleave", "blend", f"also from {names[pick]}")
            i += 1
        if i < len(p):
            placed[p[i].item] = p[i]
            out.append(p[i])
            i += 1
        at[pick] = i
        if i == len(p):
            for column in (names, weight, pending, at, credit):
                del column[pick]
    for pos, c in enumerate(out):
        c.score = 1.0 - pos / len(out)
    return out


def test_same_order_scores_and_reasons_as_the_reference_on_random_pools() -> None:
    import random

    rng = random.Random(3)
    for _ in range(300):
        names = ["a", "b", "c", "d"][: rng.randint(1, 4)]
        weights = {n: rng.choice([0.1, 0.2, 0.25, 0.3, 0.45, 0.5, 0.75, 1.0]) for n in names}
        items = {n: [rng.randrange(40) for _ in range(rng.randint(0, 30))] for n in names}
        got = Interleave(weights).blend(slot_query(), {n: pool(n, items[n]) for n in names})
        want = _reference_blend(weights, {n: pool(n, items[n]) for n in names})
        assert [(c.item, c.score, c.source, c.reasons) for c in got] == \
            [(c.item, c.score, c.source, c.reasons) for c in want]
