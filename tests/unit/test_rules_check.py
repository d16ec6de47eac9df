"""Validation of a rules file: every problem at once, each with its line, slot, rule, field and why."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.rules.schema import RULE_TYPES
from service.slots import RecipeError, build_recipe, components
from tests.fixtures.rules import POPULAR, problems, registry, serve
from tests.fixtures.service import tiny_model

EXAMPLE = Path(__file__).parents[2] / "service" / "rules" / "example_rules.toml"

BROKEN_TOML = """\
timezone = "Mars/Base"
colour = "red"

[[rules]]
name = "Cap"
type = "frequency_cap"
max = 0

[slots.check_in]
count = 5
sources = [
  { use = "als", weight = 60 },
  { use = "nope", weight = 20 },
]
rerank = "yes"

[[slots.check_in.rules]]
name = "Spring push"
type = "boost"
category = "serum"
factor = -1.5

[[slots.check_in.rules]]
name = "Hero"
type = "pin"
item = 100001
position = 1

[[slots.check_in.rules]]
name = "Late hero"
type = "pin"
item = "i007"
position = 7

[[slots.check_in.rules]]
name = "Hero 2"
type = "pin"
item = "i003"
position = 2
start = 2025-06-01
end = 2025-07-01

[[slots.check_in.rules]]
name = "Hero 3"
type = "pin"
item = "i004"
position = 2
start = 2025-06-15T00:00:00

[[slots.check_in.rules]]
name = "Spring push"
type = "promote"

[slots.cart_page]
about = "forgot the sources"
"""


def test_a_toml_file_with_many_mistakes_reports_every_one_on_its_line() -> None:
    found = [p.format("f.toml") for p in problems(BROKEN_TOML) if p.level == "error"]
    expected = [
        "f.toml:1: error: field 'timezone': unknown time zone 'Mars/Base'",
        "f.toml:2: error: field 'colour': unknown field (known: about, timezone, allow_removing_slots, "
        "rules, slots, experiments)",
        "f.toml:7: error: rule 'Cap' (rules[0]), field 'max': must be greater than or equal to 1 (got 0)",
        "f.toml:13: error: slot 'check_in', field 'sources[1]': unknown source 'nope'",
        "f.toml:15: error: slot 'check_in', field 'rerank': expected true or false, got 'yes'",
        "f.toml:21: error: slot 'check_in', rule 'Spring push' (rules[0]), field 'factor': must be greater "
        "than 0",
        "f.toml:26: error: slot 'check_in', rule 'Hero' (rules[1]), field 'item': expected text, got int "
        "100001; put it in quotes",
        "f.toml:33: error: slot 'check_in', rule 'Late hero' (rules[2]), field 'position': position 7 is "
        "beyond the 5 items the slot shows",
        "f.toml:48: error: slot 'check_in', rule 'Hero 3' (rules[4]), field 'start': overlaps pin 'Hero 2' "
        "(same position 2, date ranges overlap)",
        "f.toml:52: error: slot 'check_in', rule 'Spring push' (rules[5]), field 'type': unknown rule type "
        "'promote'",
        "f.toml:54: error: slot 'cart_page', field 'sources': a new slot needs sources",
    ]
    assert len(found) == len(expected), "\n".join(found)
    for line, want in zip(found, expected, strict=True):
        assert line.startswith(want), (line, want)


def test_rules_check_cli_prints_them_all_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text(BROKEN_TOML)
    result = CliRunner().invoke(app, ["rules", "check", str(bad)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ": error: " in ln]
    assert len(lines) == 11 and all(re.match(rf"{re.escape(str(bad))}:\d+: error: ", ln) for ln in lines)
    good = CliRunner().invoke(app, ["rules", "check", str(EXAMPLE)])
    assert good.exit_code == 0 and "valid, rules version" in good.output


YAML = """\
slots:
  t:
    sources: [{use: popular}]
    backfill: none
    rerank: yes
    rules:
      - name: Not brand NO
        type: exclude
        brand: NO
      - name: Pin
        type: pin
        item: 012
        position: 1
      - name: Boost
        type: boost
        tag: vegan
        factor: 0.5
        factor: 2
"""


def test_yaml_reports_lines_and_its_pitfalls() -> None:
    found = {p.line: p.format() for p in problems(YAML, "yaml") if p.level == "error"}
    assert "key given twice" in found[18]
    assert "field 'rerank': expected true or false, got 'yes'" in found[5]
    assert "field 'item': expected text, got int 12; put it in quotes (YAML reads" in found[12]
    assert len(found) == 3  # brand: NO stays the text "NO" (YAML 1.2 booleans), not false
    ok = YAML.replace("    rerank: yes\n", "").replace("item: 012", "item: '012'")
    ok = ok.replace("        factor: 0.5\n", "")
    reg = registry(ok, "yaml")
    recipe = reg.get("t")
    assert recipe is not None
    exclude = next(f for f in recipe.filters if f.name == "Not brand NO")
    assert exclude.matcher.sel.brand == ["NO"]  # type: ignore[attr-defined]


def test_semantic_checks_and_warnings_that_need_the_bundle() -> None:
    text = POPULAR + """
[[slots.t.rules]]
name = "Boost"
type = "boost"
category = "snackz"
factor = 0.5
[[slots.t.rules]]
name = "Boost"
type = "quota"
source = "trending"
tag = "vegan"
min = 1
top = 3
[[slots.t.rules]]
name = "Ghost"
type = "pin"
item = "nope"
position = 1
"""
    errors = [p.format() for p in problems(text) if p.level == "error"]
    assert any("'factor': a boost's factor must be above 1 (below 1: use type = \"bury\")" in e
               for e in errors)
    assert any("another rule of this slot is already called 'Boost'" in e for e in errors)
    without_bundle = [p.format() for p in problems(text) if p.level == "warning"]
    with_bundle = [p.format() for p in problems(text, model=tiny_model()) if p.level == "warning"]
    assert any("has no source 'trending'" in w for w in without_bundle)
    assert not any("nope" in w for w in without_bundle)
    assert any("no item has category 'snackz' in model tiny" in w for w in with_bundle)
    assert any("item nope is not in model tiny: the pin gives way until it is" in w for w in with_bundle)


def test_pins_for_one_position_in_ranges_that_do_not_overlap_are_fine() -> None:
    text = POPULAR + "".join(
        f'[[slots.t.rules]]\nname = "P{k}"\ntype = "pin"\nitem = "i00{k}"\nposition = 1\n'
        f"start = 2025-0{k}-01\nend = 2025-0{k + 1}-01\n" for k in (3, 4))
    assert not [p for p in problems(text) if p.level == "error"]


def test_rerank_switch_needs_the_step_and_goes_after_the_boosts() -> None:
    text = POPULAR + (
        'rerank = true\n[[slots.t.rules]]\nname = "Mix"\ntype = "diversity"\nby = "brand"\nmax = 1\ntop = 3\n'
        '[[slots.t.rules]]\nname = "B"\ntype = "boost"\ntag = "vegan"\nfactor = 2\n')
    import service.rules.recipe

    with pytest.MonkeyPatch.context() as mp:  # a build without service/steps/rerank.py
        mp.setattr(service.rules.recipe, "rerank_factory", lambda: None)
        assert any("no re-ranker step is installed" in p.message for p in problems(text))
    assert "rerank" in components()["step"]
    recipe = registry(text).get("t")
    assert recipe is not None
    assert [s.name for s in recipe.steps] == ["B", "rerank", "Mix", "precedence"]


def test_every_slot_rules_reach_the_built_in_slots_which_keep_their_recipes() -> None:
    reg = registry('[[rules]]\nname = "No snacks"\ntype = "exclude"\ncategory = "snacks"\n')
    assert reg.names() == ["check_in", "delivery", "search_box"]
    search = reg.get("search_box")
    assert search is not None and search.filters[-1].name == "No snacks"
    assert [s.name for s in search.steps] == ["query_first", "rerank"]  # rerank: when the model has one
    result = serve(reg, "check_in", count=20)
    assert result.trace.removed_by("No snacks") and len(result.items) == 20
    model = tiny_model()
    assert all(model.bundle.items.category[model.item_index[i.item_id]] != "snacks" for i in result.items)


def test_the_example_is_valid_and_documents_every_rule_type() -> None:
    assert not [p for p in problems(EXAMPLE.read_text(), model=tiny_model()) if p.level == "error"]
    data = tomllib.loads(EXAMPLE.read_text())
    used = {r["type"] for r in data["rules"]} | {r["type"] for s in data["slots"].values()
                                                 for r in s.get("rules", [])}
    assert used == set(RULE_TYPES)
    commented = set(re.findall(r'^type = "(\w+)"\s+#', EXAMPLE.read_text(), re.M))
    assert commented == set(RULE_TYPES), "every rule type has a comment where it first appears"
    reg = registry(EXAMPLE.read_text())
    assert "cart_page" in reg.names()


def test_rule_components_work_in_code_specs_too() -> None:
    recipe = build_recipe("x", {"sources": ["popular"],
                                "steps": [{"use": "boost", "tag": "vegan", "factor": 9}],
                                "filters": [{"use": "exclude", "category": "snacks"}]})
    assert [s.name for s in recipe.steps] == ["boost"] and recipe.filters[-1].name == "exclude"
    with pytest.raises(RecipeError, match="bad parameters for 'boost'"):
        build_recipe("x", {"sources": ["popular"], "steps": [{"use": "boost", "tag": "vegan", "factor": -1}]})


def test_with_a_bundle_every_slot_is_run_once_so_request_time_failures_stop_the_file(tmp_path: Path) -> None:
    from service.rules import RulesError, load_rules

    path = tmp_path / "rules.toml"
    path.write_text('[slots.x]\nsources = [{ use = "new_launches", days = "thirty" }]\n')
    assert load_rules(path).registry.get("x") is not None  # nothing to run it on: cannot tell
    with pytest.raises(RulesError, match="slot 'x': fails when run on model tiny: TypeError"):
        load_rules(path, model=tiny_model())
