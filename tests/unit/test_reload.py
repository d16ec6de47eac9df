"""Hot reload: a new bundle goes live atomically; a corrupt one is rejected and the old one serves."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from service.model import ServingModel
from service.model_bundle import current_version
from service.reload import BundleWatcher, Holder
from tests.fixtures.service import NOW
from tests.fixtures.tiny_bundle import publish_tiny


def corrupt(bundle_dir: Path) -> None:
    f = bundle_dir / "item_factors.npy"
    f.write_bytes(f.read_bytes()[:-16])


def test_new_bundle_goes_live_and_corrupt_one_is_rejected(tmp_path: Path) -> None:
    publish_tiny(tmp_path, NOW, seed=1)
    holder: Holder[ServingModel] = Holder()
    loaded, failed = [], []

    async def on_loaded(m: ServingModel) -> None:
        loaded.append(m.version)

    async def on_failed(v: str, e: Exception) -> None:
        failed.append(v)

    calls = []

    def loader(path: Path) -> ServingModel:
        calls.append(path.name)
        return ServingModel.load(path)

    watcher = BundleWatcher(tmp_path, holder, loader=loader, on_loaded=on_loaded, on_failed=on_failed)

    async def go() -> None:
        assert await watcher.check() and holder.current is not None
        first = holder.current
        assert not await watcher.check()  # nothing new: no reload

        second_dir = publish_tiny(tmp_path, NOW, seed=2)
        assert await watcher.check()
        assert holder.current.version == second_dir.name != first.version
        second = holder.current

        bad = publish_tiny(tmp_path, NOW, seed=3)
        corrupt(bad)
        assert current_version(tmp_path) == bad.name
        assert not await watcher.check()
        assert holder.current is second  # the old model keeps serving
        assert failed == [bad.name] and watcher.rejected == bad.name
        n = len(calls)
        assert not await watcher.check() and len(calls) == n  # a rejected version is not retried

        fixed = publish_tiny(tmp_path, NOW, seed=4)
        assert await watcher.check() and holder.current.version == fixed.name
        assert loaded == [first.version, second.version, fixed.name]

    asyncio.run(go())


def test_the_poll_loop_picks_up_a_publish(tmp_path: Path) -> None:
    holder: Holder[ServingModel] = Holder()
    watcher = BundleWatcher(tmp_path, holder, interval=0.02)

    async def go() -> None:
        watcher.start()
        await asyncio.sleep(0.05)
        assert holder.current is None  # nothing published yet: still polling, no error
        published = await asyncio.to_thread(publish_tiny, tmp_path, NOW)
        for _ in range(200):
            if holder.current is not None:
                break
            await asyncio.sleep(0.02)
        await watcher.stop()
        assert holder.current is not None and holder.current.version == published.name

    asyncio.run(go())


def test_a_load_runs_with_a_short_gil_switch_interval_and_restores_it(tmp_path: Path) -> None:
    import sys

    from service.reload import LOAD_SWITCH_INTERVAL

    publish_tiny(tmp_path, NOW, seed=1)
    seen: list[float] = []

    def loader(path: Path) -> ServingModel:
        seen.append(sys.getswitchinterval())
        return ServingModel.load(path)

    before = sys.getswitchinterval()
    watcher = BundleWatcher(tmp_path, Holder(), loader=loader)
    assert asyncio.run(watcher.check())
    assert seen == [LOAD_SWITCH_INTERVAL] and sys.getswitchinterval() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_a_load_runs_on_its_own_thread_at_a_lower_cpu_priority(tmp_path: Path) -> None:
    import os
    import threading

    from service.reload import LOAD_NICE

    publish_tiny(tmp_path, NOW, seed=1)
    seen: list[tuple[int, int]] = []

    def loader(path: Path) -> ServingModel:
        tid = threading.get_native_id()
        seen.append((tid, os.getpriority(os.PRIO_PROCESS, tid)))
        return ServingModel.load(path)

    me = threading.get_native_id()
    base = os.getpriority(os.PRIO_PROCESS, me)
    assert asyncio.run(BundleWatcher(tmp_path, Holder(), loader=loader).check())
    (tid, nice), = seen
    assert tid != me and nice == min(base + LOAD_NICE, 19)
    assert os.getpriority(os.PRIO_PROCESS, me) == base  # the server's own threads keep theirs


def test_a_failing_load_is_rejected_and_the_old_model_keeps_serving(tmp_path: Path) -> None:
    publish_tiny(tmp_path, NOW, seed=1)

    def loader(path: Path) -> ServingModel:
        raise MemoryError("out of memory while loading")

    holder: Holder[ServingModel] = Holder()
    watcher = BundleWatcher(tmp_path, holder, loader=loader)
    assert not asyncio.run(watcher.check())
    assert holder.current is None and watcher.rejected == current_version(tmp_path)


def test_overlapping_gil_sharing_restores_the_interval_when_the_last_one_ends() -> None:
    from service.reload import LOAD_SWITCH_INTERVAL, sharing_the_gil

    before = sys.getswitchinterval()
    first, second = sharing_the_gil(), sharing_the_gil()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to start ends first: the second still loads
    assert sys.getswitchinterval() == LOAD_SWITCH_INTERVAL
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == before
