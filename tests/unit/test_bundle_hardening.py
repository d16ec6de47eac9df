"""Bad bundles: a manifest of the wrong shape, a folder copied under a new name, a CURRENT naming a
missing version, non-finite factors. Each is refused with its reason, counted once and left alone
until CURRENT moves; the model serving before keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service import model_bundle as mb
from service.model import ServingModel
from service.reload import BundleWatcher, Holder
from tests.fixtures.service import NOW
from tests.fixtures.tiny_bundle import make_bundle, publish_tiny


def edit_manifest(bundle_dir: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    path = bundle_dir / mb.MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def point_current(models: Path, version: str) -> None:
    (models / mb.CURRENT_FILE).write_text(version + "\n")


def drop_bytes(m: dict[str, Any]) -> None:
    del m["files"]["item_factors.npy"]["bytes"]


def files_as_list(m: dict[str, Any]) -> None:
    m["files"] = [{"name": k, **v} for k, v in m["files"].items()]


def no_version(m: dict[str, Any]) -> None:
    del m["version"]


def hyperparameters_as_text(m: dict[str, Any]) -> None:
    m["hyperparameters"] = "als"


SHAPES = {"file entry without bytes": (drop_bytes, "bytes"),
          "files as a list": (files_as_list, "files"),
          "no version": (no_version, "version"),
          "hyperparameters not a table": (hyperparameters_as_text, "hyperparameters")}


@pytest.mark.parametrize("name", list(SHAPES))
def test_a_manifest_of_the_wrong_shape_is_a_bundle_error(tmp_path: Path, name: str) -> None:
    edit, field = SHAPES[name]
    bundle = publish_tiny(tmp_path, NOW)
    edit_manifest(bundle, edit)
    with pytest.raises(mb.BundleError, match=field) as e:
        mb.load(tmp_path)
    assert "manifest" in str(e.value)


class Watch:
    """A watcher over ``models`` with its loads, failures and log records counted."""

    def __init__(self, models: Path, caplog: pytest.LogCaptureFixture,
                 loader: Callable[[Path], ServingModel] = ServingModel.load) -> None:
        self.holder: Holder[ServingModel] = Holder()
        self.loads: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.caplog = caplog

        def counting(path: Path) -> ServingModel:
            self.loads.append(path.name)
            return loader(path)

        async def on_failed(version: str, error: Exception) -> None:
            self.failed.append((version, f"{type(error).__name__}: {error}"))

        self.watcher = BundleWatcher(models, self.holder, loader=counting, on_failed=on_failed)

    def check(self, times: int = 1) -> list[bool]:
        async def go() -> list[bool]:
            return [await self.watcher.check() for _ in range(times)]

        return asyncio.run(go())

    def rejections(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if r.name == "service.reload" and r.levelno >= logging.ERROR]


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_watcher_rejects_a_bad_manifest_once_counts_it_and_keeps_serving(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str) -> None:
    edit, field = SHAPES[name]
    caplog.set_level(logging.INFO, logger="service.reload")
    publish_tiny(tmp_path, NOW, seed=1)
    w = Watch(tmp_path, caplog)
    assert w.check() == [True]
    good = w.holder.current
    bad = publish_tiny(tmp_path, NOW, seed=2)
    edit_manifest(bad, edit)

    assert w.check(times=5) == [False] * 5
    assert w.holder.current is good
    assert w.loads.count(bad.name) == 1  # not loaded again every poll
    assert len(w.failed) == 1 and w.failed[0][0] == bad.name and field in w.failed[0][1]
    logged = w.rejections()
    assert len(logged) == 1 and logged[0].exc_info is None  # a known bad bundle: its reason, no traceback
    assert field in logged[0].error and logged[0].version == bad.name

    fixed = publish_tiny(tmp_path, NOW, seed=3)  # CURRENT moves: the next one is tried
    assert w.check() == [True] and w.holder.current.version == fixed.name


def test_a_folder_copied_under_a_new_name_is_rejected_once(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="service.reload")
    first = publish_tiny(tmp_path, NOW, seed=1)
    w = Watch(tmp_path, caplog)
    assert w.check() == [True]
    copy = first.parent / "hand-made-copy"
    shutil.copytree(first, copy)
    point_current(tmp_path, copy.name)

    assert w.check(times=5) == [False] * 5
    assert w.holder.current.version == first.name
    assert len(w.failed) == 1 and w.failed[0][0] == copy.name
    assert first.name in w.failed[0][1] and copy.name in w.failed[0][1]
    assert len(w.rejections()) == 1


def test_a_loader_that_names_another_version_is_rejected_too(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    publish_tiny(tmp_path, NOW, seed=1)
    stale = ServingModel(make_bundle(NOW, version="something-else"))
    w = Watch(tmp_path, caplog, loader=lambda _path: stale)
    assert w.check(times=3) == [False] * 3
    assert w.holder.current is None and len(w.failed) == 1 and len(w.loads) == 1


def test_an_unexpected_loader_error_is_rejected_once_with_its_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="service.reload")
    publish_tiny(tmp_path, NOW, seed=1)

    def broken(path: Path) -> ServingModel:
        raise KeyError("als")

    w = Watch(tmp_path, caplog, loader=broken)
    assert w.check(times=4) == [False] * 4
    assert len(w.loads) == 1 and len(w.failed) == 1 and "KeyError" in w.failed[0][1]
    logged = w.rejections()
    assert len(logged) == 1 and logged[0].exc_info is not None  # not a known bundle error: where it broke


def test_current_naming_a_missing_version_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    publish_tiny(tmp_path, NOW, seed=1)
    point_current(tmp_path, "20990101T000000.000Z-gone")
    with pytest.raises(mb.BundleError) as e:
        mb.load(tmp_path)
    message = str(e.value)
    assert "no CURRENT file" not in message and "20990101T000000.000Z-gone" in message
    assert "does not exist" in message

    w = Watch(tmp_path, caplog)
    assert w.check(times=3) == [False] * 3
    assert len(w.failed) == 1 and "does not exist" in w.failed[0][1]


def test_an_empty_current_and_an_empty_folder_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(mb.BundleError, match="no model published"):
        mb.load(tmp_path)
    (tmp_path / mb.CURRENT_FILE).write_text("\n")
    with pytest.raises(mb.BundleError, match="CURRENT.*empty"):
        mb.load(tmp_path)


@pytest.mark.parametrize("array", ["item_factors", "member_factors"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_factors_are_refused_at_publish(tmp_path: Path, array: str, bad: float) -> None:
    bundle = make_bundle(NOW)
    values = bundle.arrays[array].copy()
    values[3, 1] = bad
    bundle.arrays[array] = values
    with pytest.raises(mb.BundleError, match=f"{array}.*1 non-finite"):
        mb.publish(bundle, tmp_path)
    assert mb.current_version(tmp_path) is None
    assert not any((tmp_path / mb.VERSIONS_DIR).iterdir())


def test_non_finite_factors_are_refused_at_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    publish_tiny(tmp_path, NOW, seed=1)
    w = Watch(tmp_path, caplog)
    assert w.check() == [True]
    bad = publish_tiny(tmp_path, NOW, seed=2)
    factors = np.load(bad / "member_factors.npy")
    factors[:2] = np.nan
    np.save(bad / "member_factors.npy", factors)  # as a writer that skipped publish's checks would

    def rehash(m: dict[str, Any]) -> None:
        m["files"]["member_factors.npy"] = mb._seal(bad / "member_factors.npy")

    edit_manifest(bad, rehash)
    with pytest.raises(mb.BundleError, match="member_factors.*non-finite"):
        mb.load(bad)
    assert w.check(times=3) == [False] * 3
    assert len(w.failed) == 1 and "member_factors" in w.failed[0][1]


def test_publish_validates_the_manifest_it_writes(tmp_path: Path) -> None:
    bundle = make_bundle(NOW, version="a/b")
    with pytest.raises(mb.BundleError, match="version"):
        mb.publish(bundle, tmp_path)
    path = publish_tiny(tmp_path, NOW)
    manifest = mb.Manifest.model_validate_json((path / mb.MANIFEST).read_text())
    assert manifest.version == path.name and set(manifest.files) >= {"item_factors.npy", mb.ITEMS_TABLE}
    assert mb.read_manifest(path)["version"] == path.name  # the reader hands back the plain mapping


def test_train_refuses_to_publish_a_diverged_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.pipeline as pipeline
    from training.config import TrainConfig
    from training.dataset import Dataset
    from training.events import load_dataset
    from training.synth import generate

    paths = generate(tmp_path / "data", members=60, items=40, events=1500, seed=3)
    ds: Dataset = load_dataset(paths["events"], paths["items"], paths["members"])
    real = pipeline.fit_final

    def diverged(*args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        als, report = real(*args, **kwargs)
        als.item_factors = als.item_factors.copy()
        als.item_factors[5] = np.nan
        return als, report

    monkeypatch.setattr(pipeline, "fit_final", diverged)
    config = TrainConfig.model_validate({"als": {"factors": 8, "iterations": 2},
                                         "reranker": {"enabled": False}})
    with pytest.raises(mb.BundleError, match="train: item_factors has 8 non-finite"):
        pipeline.train(ds, config, tmp_path / "models")
    assert mb.current_version(tmp_path / "models") is None


def test_current_naming_a_path_is_refused_without_reading_outside_versions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    elsewhere = publish_tiny(tmp_path / "other", NOW)
    publish_tiny(tmp_path / "models", NOW)
    models = tmp_path / "models"
    point_current(models, f"../../other/{mb.VERSIONS_DIR}/{elsewhere.name}")
    with pytest.raises(mb.BundleError, match="should name a version"):
        mb.load(models)
    w = Watch(models, caplog)
    assert w.check(times=2) == [False, False]
    assert w.loads == [] and len(w.failed) == 1 and "not a version" in w.failed[0][1]
