"""Slot recipes as data: the built-in slots, and a new slot from a spec with no code."""

from __future__ import annotations

import pytest

from service.engine.run import run
from service.slots import ALWAYS_FILTERS, DEFAULT_SLOTS, RecipeError, build_recipe, default_registry
from tests.fixtures.service import slot_query


def test_built_in_slots_read_like_a_table_of_contents() -> None:
    reg = default_registry()
    assert reg.names() == ["check_in", "delivery", "search_box"]
    check_in = reg.get("check_in")
    assert check_in is not None
    assert check_in.outline() == ["sources:  als 55% · liked 20% · new_launches 25%",
                                  "filters:  in_stock, on_shelf, bought_recently, just_ordered, page_dedup",
                                  "steps:    rerank", "backfill: popular"]


def test_every_slot_has_the_filters_no_slot_can_do_without() -> None:
    for recipe in default_registry().recipes.values():
        assert tuple(f.name for f in recipe.filters[:len(ALWAYS_FILTERS)]) == ALWAYS_FILTERS
    assert build_recipe("x", {"sources": ["popular"], "bought_recently_days": 3}).filters[2].days == 3


def test_a_new_slot_from_configuration_alone() -> None:
    spec = {"about": "new in, then trending", "sources": [
        {"use": "new_launches", "weight": 2, "days": 2.5}, {"use": "trending", "as": "hot"}]}
    recipe = build_recipe("home_banner", spec)
    result = run(recipe, slot_query("stranger", count=4))
    assert {i.source for i in result.items} == {"new_launches", "hot"}
    assert [i.item_id for i in result.items if i.source == "new_launches"] == ["i050", "i051"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"sources": []}, "sources"),
    ({"sources": ["nope"]}, "sources[0]: unknown source 'nope'"),
    ({"sources": [{"use": "new_launches", "dayz": 3}]}, "bad parameters for 'new_launches'"),
    ({"sources": ["als", "als"]}, "used twice"),
    ({"sources": ["als"], "steps": ["nope"]}, "steps[0]: unknown step"),
    ({"sources": ["als"], "colour": "red"}, "colour"),
])
def test_bad_specs_name_the_slot_and_the_entry(spec: dict, message: str) -> None:
    with pytest.raises(RecipeError, match="slot 'x'") as err:
        build_recipe("x", spec)
    assert message in str(err.value)


def test_default_specs_are_plain_data() -> None:
    import json

    json.dumps(DEFAULT_SLOTS)  # what a rules file will hold
