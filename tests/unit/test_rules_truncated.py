"""A rules file saved empty or cut short (still valid TOML) must not go live on reload: refused,
logged and counted while the serving rules stay, unless the file says ``allow_removing_slots``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.reload import Holder, RulesWatcher
from service.rules import load_rules
from service.rules.guard import RemovalRefused, RulesRegistry
from service.slots import SlotRegistry, default_registry

EXAMPLE = Path(__file__).parents[2] / "service" / "rules" / "example_rules.toml"
FULL = EXAMPLE.read_text()
# cut where an editor might have stopped writing: the top and check_in survive, cart_page does not
CUT = FULL[:FULL.index("# ---------------------------------------------------------------- search box")]


class Watch:
    """A rules watcher on ``path`` serving the file's current content, its failures recorded."""

    def __init__(self, path: Path, served: Collection[str] = (), first: SlotRegistry | None = None) -> None:
        self.path = path
        self.served = set(served)
        self.failed: list[Exception] = []
        self.loaded: list[str] = []
        if first is None:
            start = load_rules(path)
            first, digest = start.registry, start.digest
        else:
            digest = None
        self.holder: Holder[SlotRegistry] = Holder(first)

        async def on_failed(error: Exception) -> None:
            self.failed.append(error)

        async def on_loaded(rules) -> None:  # type: ignore[no-untyped-def]
            self.loaded.append(rules.registry.version)

        self.watcher = RulesWatcher(path, self.holder, load_rules, digest=digest, on_failed=on_failed,
                                    on_loaded=on_loaded, recently_served=lambda: self.served)

    def save(self, text: str) -> bool:
        self.path.write_text(text)
        return asyncio.run(self.watcher.check())


@pytest.fixture()
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(FULL)
    return path


@pytest.mark.parametrize("text", ["", "\n", "# nothing yet\n", 'about = "x"\ntimezone = "UTC"\n'])
def test_an_empty_save_is_refused_and_the_rules_keep_serving(
        rules_file: Path, caplog: pytest.LogCaptureFixture, text: str) -> None:
    caplog.set_level(logging.INFO, logger="service.reload")
    w = Watch(rules_file)
    serving = w.holder.current
    assert not w.save(text)
    assert w.holder.current is serving and "cart_page" in serving.names()
    assert len(w.failed) == 1 and isinstance(w.failed[0], RemovalRefused)
    assert "truncated" in str(w.failed[0]) and "allow_removing_slots = true" in str(w.failed[0])
    assert "16 rules and slot cart_page" in str(w.failed[0])
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 1 and "truncated" in logged[0].error
    rules_file.touch()
    assert not asyncio.run(w.watcher.check()) and len(w.failed) == 1  # the same content: not again


def test_a_cut_short_save_that_drops_a_slot_serving_traffic_is_refused(rules_file: Path) -> None:
    w = Watch(rules_file, served={"cart_page", "check_in"})
    serving = w.holder.current
    assert not w.save(CUT)
    assert w.holder.current is serving
    assert len(w.failed) == 1 and "removes slot cart_page" in str(w.failed[0])
    assert "INVALID_ARGUMENT" in str(w.failed[0])


def test_dropping_a_slot_that_served_nothing_lately_goes_through(rules_file: Path) -> None:
    w = Watch(rules_file, served={"check_in"})
    assert w.save(CUT)
    assert "cart_page" not in w.holder.current.names() and not w.failed


def test_the_file_can_say_it_means_it(rules_file: Path) -> None:
    w = Watch(rules_file, served={"cart_page"})
    assert w.save("allow_removing_slots = true\n")
    assert w.holder.current.names() == default_registry().names() and not w.failed
    w2 = Watch(rules_file.with_name("other.toml"), served={"cart_page"}, first=_registry(FULL))
    assert w2.save("allow_removing_slots = true\n" + CUT) and not w2.failed


def test_a_fix_after_a_refusal_goes_live(rules_file: Path) -> None:
    w = Watch(rules_file, served={"cart_page"})
    assert not w.save("")
    assert w.save(FULL.replace("count = 6", "count = 5"))
    assert len(w.failed) == 1 and len(w.loaded) == 1


def test_an_empty_file_replacing_built_in_slots_only_goes_through(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("")
    w = Watch(path, served={"check_in"}, first=default_registry())
    assert w.save("# still nothing\n") and not w.failed


def test_a_failing_recently_served_still_guards_the_empty_save(rules_file: Path) -> None:
    w = Watch(rules_file)

    def broken() -> Collection[str]:
        raise RuntimeError("no counts yet")

    w.watcher.recently_served = broken
    assert not w.save("") and len(w.failed) == 1


def _registry(text: str) -> RulesRegistry:
    from service.rules.document import parse
    from service.rules.loader import check
    from service.rules.recipe import build_rules_registry

    config, found = check(parse(text, "toml"))
    assert config is not None, found
    return build_rules_registry(config, "test")


def test_the_outline_counts_every_rule_and_the_file_slots() -> None:
    reg = _registry(FULL)
    assert reg.outline.rules == 16 and reg.outline.file_slots == ("cart_page",)
    assert not reg.outline.allow_removing_slots
    assert _registry("allow_removing_slots = true\n").outline.allow_removing_slots


def test_allow_removing_slots_is_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('allow_removing_slots = "yes"\n')
    result = CliRunner().invoke(app, ["rules", "check", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "allow_removing_slots" in result.output


def test_rules_check_says_what_a_reload_would_do(tmp_path: Path) -> None:
    runner = CliRunner()
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    said = runner.invoke(app, ["rules", "check", str(empty)], env={"COLUMNS": "300"}).output
    assert "refuses it as a probably truncated save" in said
    allowed = tmp_path / "allowed.toml"
    allowed.write_text("allow_removing_slots = true\n")
    said = runner.invoke(app, ["rules", "check", str(allowed)], env={"COLUMNS": "300"}).output
    assert "allow_removing_slots = true: a running service takes this file" in said
    said = runner.invoke(app, ["rules", "check", str(EXAMPLE)], env={"COLUMNS": "300"}).output
    assert "served in the last hour" in said


def test_the_example_file_documents_the_switch() -> None:
    assert "# allow_removing_slots = true" in FULL


def test_recently_served_remembers_slots_for_the_window() -> None:
    from service.reload import RecentlyServed

    now = [1000.0]
    recent = RecentlyServed(window=3600, clock=lambda: now[0])
    assert recent() == []
    recent.note("cart_page")
    now[0] += 1800
    recent.note("check_in")
    assert recent() == ["cart_page", "check_in"]
    now[0] += 1801
    assert recent() == ["check_in"]
