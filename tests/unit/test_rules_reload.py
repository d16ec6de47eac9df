"""The rules watcher: a changed valid file goes live, an invalid one is rejected (and not retried)
while the last good rules keep serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.reload import Holder, RulesWatcher
from service.rules import load_rules
from service.slots import SlotRegistry

GOOD = '[slots.cart_page]\nsources = [{ use = "popular" }]\n'


def test_valid_changes_go_live_and_invalid_ones_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD)
    first = load_rules(path)
    holder: Holder[SlotRegistry] = Holder(first.registry)
    loaded, failed, calls = [], [], []

    def load(p: Path):  # type: ignore[no-untyped-def]
        calls.append(p)
        return load_rules(p)

    async def on_loaded(rules) -> None:  # type: ignore[no-untyped-def]
        loaded.append(rules.registry.version)

    async def on_failed(error: Exception) -> None:
        failed.append(str(error))

    watcher = RulesWatcher(path, holder, load, digest=first.digest, on_loaded=on_loaded, on_failed=on_failed)

    async def go() -> None:
        assert not await watcher.check() and not calls  # same content: nothing to do
        path.write_text(GOOD + '[slots.gift_box]\nsources = [{ use = "trending" }]\n')
        assert await watcher.check()
        assert holder.current is not None and "gift_box" in holder.current.names()
        good = holder.current

        path.write_text(GOOD + '[[slots.cart_page.rules]]\nname = "x"\ntype = "boost"\nfactor = -2\n')
        assert not await watcher.check()
        assert holder.current is good and len(failed) == 1 and "factor" in failed[0]
        n = len(calls)
        path.touch()
        assert not await watcher.check() and len(calls) == n  # the same bad content is not rebuilt

        path.unlink()
        assert not await watcher.check() and holder.current is good and "cannot read" in failed[-1]
        path.write_text(GOOD)
        assert await watcher.check() and holder.current.names() == first.registry.names()
        assert len(loaded) == 2 and loaded[0] != loaded[1]

    asyncio.run(go())


def test_the_version_is_a_content_hash_and_the_files_time(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("slots:\n  cart_page:\n    sources: [popular]\n")
    version = load_rules(path).registry.version
    digest, stamp = version.split("-")
    assert len(digest) == 10 and stamp.endswith("Z") and "T" in stamp
