"""Because you liked X: the member's items times RP3beta's W (the bundle's liked_* CSR arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.candidates.liked import BecauseYouLiked
from service.engine.run import run
from service.model import ServingModel
from service.model_bundle import BundleError, load, publish
from service.slots import build_recipe
from tests.fixtures.service import NOW, event, rows, slot_query
from tests.fixtures.tiny_bundle import make_bundle


def _by_hand(q: object) -> tuple[dict[int, float], dict[int, int]]:
    """sum over the member's items h of conf_h x W[h, j], and each j's strongest h."""
    items, conf, _ = q.profile.interactions  # type: ignore[attr-defined]
    b = q.model.bundle  # type: ignore[attr-defined]
    score: dict[int, float] = {}
    best: dict[int, tuple[float, int]] = {}
    for h, c in zip(items.tolist(), conf.tolist(), strict=True):
        lo, hi = int(b.liked_indptr[h]), int(b.liked_indptr[h + 1])
        for j, w in zip(b.liked_indices[lo:hi].tolist(), b.liked_scores[lo:hi].tolist(), strict=True):
            if j in items:
                continue
            score[j] = score.get(j, 0.0) + c * w
            if j not in best or c * w > best[j][0]:
                best[j] = (c * w, h)
    return score, {j: h for j, (_, h) in best.items()}


def test_scores_are_the_members_confidence_times_w_and_the_reason_names_the_strongest_item() -> None:
    q = slot_query("m001", recent=[event("m001", "i020", "cart", days_ago=1)])
    found = rows(BecauseYouLiked().fetch(q, 100))
    want, strongest = _by_hand(q)
    assert found and {r.item for r in found} == set(want)
    own = set(q.profile.interactions[0].tolist())
    assert not own & {r.item for r in found}, "never the member's own items"
    for r in found:
        assert r.score == pytest.approx(want[r.item])
        assert r.reason == f"because you liked {q.model.item_ids[strongest[r.item]]}"


def test_fresh_events_alone_seed_it_and_a_stranger_without_them_gets_nothing() -> None:
    q = slot_query("stranger", recent=[event("stranger", "i033", "click")])
    found = rows(BecauseYouLiked().fetch(q, 3))
    b = q.model.bundle
    assert {r.item for r in found} <= set(b.liked_indices[b.liked_indptr[33]:b.liked_indptr[34]].tolist())
    assert all(r.reason == "because you liked i033" for r in found)
    assert rows(BecauseYouLiked().fetch(slot_query("stranger"), 3)) == []


def test_a_bundle_without_the_item_model_brings_nothing_and_the_trace_says_why() -> None:
    model = ServingModel(make_bundle(NOW, version="no-liked", liked=False))
    model.bundle.manifest["item_model"] = {"fitted": False, "walks": 9,
                                           "skipped": "item_model.enabled is false"}
    q = slot_query("m001", model=model)
    assert len(BecauseYouLiked().fetch(q, 5)) == 0
    result = run(build_recipe("t", {"sources": ["liked"], "backfill": "popular"}), q)
    step = next(s for s in result.trace.steps if s.step == "liked")
    assert step.added == [] and "no item model in bundle no-liked (item_model.enabled is false)" in step.note
    assert result.items and {i.source for i in result.items} == {"popular"}


def test_the_arrays_round_trip_and_older_bundles_without_them_load(tmp_path: Path) -> None:
    with_liked = load(publish(make_bundle(NOW, version="with"), tmp_path / "a"))
    want = make_bundle(NOW).arrays
    for name in ("liked_indptr", "liked_indices", "liked_scores"):
        np.testing.assert_array_equal(with_liked.arrays[name], want[name])
    older = load(publish(make_bundle(NOW, version="older", liked=False), tmp_path / "b"))
    assert not older.has_liked and with_liked.has_liked


@pytest.mark.parametrize(("name", "break_it", "says"), [
    ("liked_indices", lambda a: a.__setitem__(0, 60), "outside [0, 60)"),
    ("liked_indices", lambda a: a.__setitem__(0, -1), "outside [0, 60)"),
    ("liked_scores", lambda a: a.__setitem__(1, np.nan), "liked_scores has 1 non-finite"),
    ("liked_indptr", lambda a: a.__setitem__(3, a[2] - 1), "not a CSR row pointer"),
])
def test_broken_arrays_are_refused(name: str, break_it: object, says: str) -> None:
    b = make_bundle(NOW, version="broken")
    b.arrays[name] = b.arrays[name].copy()
    break_it(b.arrays[name])  # type: ignore[operator]
    with pytest.raises(BundleError, match=says.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        b.validate()


def test_a_partial_set_or_a_short_row_pointer_is_refused() -> None:
    b = make_bundle(NOW, version="partial")
    del b.arrays["liked_scores"]
    with pytest.raises(BundleError, match="without liked_scores"):
        b.validate()
    b = make_bundle(NOW, version="short")
    b.arrays["liked_indptr"] = b.arrays["liked_indptr"][:-1]
    with pytest.raises(BundleError, match=r"liked_indptr has shape \(60,\), expected \(61,\)"):
        b.validate()


def test_a_rules_file_may_name_it_and_boost_what_it_brings() -> None:
    from service.rules.document import parse
    from service.rules.loader import check
    from service.rules.recipe import build_rules_registry

    text = """
[slots.for_you]
count = 6
sources = [{ use = "liked", weight = 2 }, { use = "popular", weight = 1 }]

[[slots.for_you.rules]]
name = "Liked up"
type = "boost"
source = ["liked"]
factor = 1.5
"""
    model = slot_query().model
    config, found = check(parse(text, "toml"), now=NOW, model=model)
    assert config is not None, [p.format() for p in found]
    recipe = build_rules_registry(config, "t").get("for_you")
    assert recipe is not None
    result = run(recipe, slot_query("m001", count=6))
    liked = [i for i in result.items if i.source == "liked"]
    assert liked and all(any(r.step == "Liked up" for r in i.reasons) for i in liked)
