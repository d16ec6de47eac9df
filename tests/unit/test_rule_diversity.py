"""Diversity: at most N per category or brand in the top K; gives way when candidates are too alike."""

from __future__ import annotations

from collections import Counter

from tests.fixtures.rules import POPULAR, ids, registry, serve, steps
from tests.fixtures.service import tiny_model


def categories(items: list[str]) -> Counter[str]:
    m = tiny_model()
    return Counter(str(m.bundle.items.category[m.item_index[i]]) for i in items)


def test_at_most_n_per_category_in_the_top_k() -> None:
    reg = registry(POPULAR + """
[[slots.t.rules]]
name = "Snacks first"
type = "boost"
category = "snacks"
factor = 10
[[slots.t.rules]]
name = "Mix"
type = "diversity"
by = "category"
max = 1
top = 4
""")
    result = serve(reg, count=6)
    top = ids(result)[:4]
    assert max(categories(top).values()) == 1
    assert top[0] == "i002"  # the boost still decides who leads
    deferred = ids(result)[4:]
    assert any("Mix" in steps(result, i) for i in deferred)
    assert not result.trace.gave_way()


def test_by_brand_and_gives_way_when_too_few_brands() -> None:
    reg = registry(POPULAR + """
[[slots.t.rules]]
name = "Acme and globex only"
type = "include"
brand = ["acme", "globex"]
[[slots.t.rules]]
name = "One per brand"
type = "diversity"
by = "brand"
max = 1
top = 4
""")
    result = serve(reg, count=4)
    assert len(result.items) == 4
    assert any("'One per brand' gave way: too few brand values" in g for g in result.trace.gave_way())
