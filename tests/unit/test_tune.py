"""`tune`: budgets, the validation split, a config `train` can read, and a real improvement."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from service.errors import MallrecError
from service.model_bundle import EVENT_TYPES, MemberTable
from tests.factories import items_table
from training import tune as tune_module
from training.config import TrainConfig, load_config
from training.dataset import Dataset, Interactions
from training.tune import TuneResult, tune
from training.tune_space import search_space, time_scale

HOUR = 3600
BAD = TrainConfig.model_validate({"als": {"factors": 2, "regularization": 50.0, "alpha": 0.3,
                                          "iterations": 1}, "weighting": {"half_life": None},
                             # ALS alone (the item stage: test_tune_item_model.py)
                             "item_model": {"enabled": False}})


def planted(members: int = 300, clusters: int = 6, per_cluster: int = 10, length: int = 10,
            seed: int = 0) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Members drift: the first half of a history is in one cluster of items, the second half and
    the held-out next item in another. Returns the dataset and the true next (member, item) pairs,
    which are NOT in the dataset."""
    rng = np.random.default_rng(seed)
    n_items = clusters * per_cluster
    rows: list[tuple[int, int, int, int]] = []
    nxt_m, nxt_i = [], []
    for m in range(members):
        a, b = rng.choice(clusters, 2, replace=False)
        start = int(rng.integers(0, 30 * 24)) * HOUR
        items = np.r_[rng.choice(per_cluster, length // 2, replace=False) + a * per_cluster,
                      rng.choice(per_cluster, length - length // 2 + 1, replace=False) + b * per_cluster]
        for k, item in enumerate(items[:-1]):
            ev = int(rng.choice(len(EVENT_TYPES), p=[0.5, 0.2, 0.1, 0.1, 0.1]))
            rows.append((m, int(item), ev, start + k * HOUR))
        nxt_m.append(m)
        nxt_i.append(int(items[-1]))
    it = items_table(n_items, seed=seed)
    member_ids = np.array([f"m{m}" for m in range(members)])
    arr = np.array(rows, dtype=np.int64)
    ev = Interactions(member=arr[:, 0].astype(np.int32), item=arr[:, 1].astype(np.int32),
                      event=arr[:, 2].astype(np.uint8), ts=arr[:, 3], member_ids=member_ids,
                      item_ids=it.item_id)
    ds = Dataset(ev, it, MemberTable(member_ids, np.full(members, "gold"), np.full(members, 1.0)))
    return ds, np.array(nxt_m), np.array(nxt_i)


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def improved(data) -> TuneResult:
    ds, _, _ = data
    return tune(ds, BAD, trials=12, minutes=5, seed=0)


def test_trial_budget(data):
    ds, _, _ = data
    r = tune(ds, BAD, trials=4, minutes=5, seed=1)
    assert len(r.trials) == 4
    assert r.trials[0].number == 0 and r.trials[0].params["factors"] == 2  # the starting config first
    assert [t.number for t in r.trials] == [0, 1, 2, 3]


def test_one_trial_scores_only_the_starting_config(data):
    ds, _, _ = data
    r = tune(ds, BAD, trials=1, minutes=5)
    assert len(r.trials) == 1
    assert r.best_config == BAD


def test_minutes_budget(data):
    ds, _, _ = data
    started = time.perf_counter()
    r = tune(ds, BAD, trials=10_000, minutes=0.02, seed=0)  # 1.2 s
    took = time.perf_counter() - started
    slowest = max(t.seconds for t in r.trials)
    assert len(r.trials) < 10_000
    assert took < 1.2 + 2 * slowest + 2  # no trial starts after the budget
    assert r.seconds == pytest.approx(took, abs=0.5)


def test_validation_comes_from_the_given_events_only(data, monkeypatch):
    ds, true_m, true_i = data
    seen = []
    real = tune_module.leave_last_out

    def spy(arg):
        seen.append(arg)
        return real(arg)

    def forbidden(*_a, **_k):
        raise AssertionError("tune must not read a holdout")

    monkeypatch.setattr(tune_module, "leave_last_out", spy)
    monkeypatch.setattr("training.dataset.holdout_split", forbidden)
    monkeypatch.setattr("training.events.read_pairs", forbidden, raising=False)
    captured = []
    real_score = tune_module.Validation.score

    def score(self, config, on_iteration=None):
        captured.append(self)
        return real_score(self, config, on_iteration)

    monkeypatch.setattr(tune_module.Validation, "score", score)
    tune(ds, BAD, trials=2, minutes=5)
    assert seen == [ds]
    val = captured[0]
    # validation pairs are each member's last given event; the true next items are never used
    ev = ds.events
    last = {}
    for m, i, t in zip(ev.member.tolist(), ev.item.tolist(), ev.ts.tolist(), strict=True):
        if m not in last or t >= last[m][1]:
            last[m] = (i, t)
    pairs = set(zip(val.split.test_members.tolist(), val.split.test_items.tolist(), strict=True))
    assert pairs <= {(m, i) for m, (i, _) in last.items()}
    assert len(val.split.train.events) == len(ev) - len(val.split.test_members)
    truth_pairs = set(zip(true_m.tolist(), true_i.tolist(), strict=True))
    assert pairs.isdisjoint(truth_pairs)


def test_config_validates_and_round_trips(improved, tmp_path: Path):
    cfg = improved.best_config
    assert TrainConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    f = tmp_path / "best.toml"
    f.write_text(cfg.to_toml())
    assert load_config(f) == cfg


def test_tune_improves_a_bad_config(improved):
    r = improved
    assert r.base_score is not None
    assert r.best_score > r.base_score + 0.1
    assert r.best_score == max(t.score for t in r.trials if t.score is not None)
    assert r.best_config != BAD
    # the summary names the best trial's params and score
    text = r.summary()
    for word in ("factors", "regularization", "alpha", "half_life", str(len(r.trials))):
        assert word in text
    assert f"{r.best_score:.4f}" in text


def test_tuned_config_beats_the_bad_one_on_the_true_next_items(data, improved):
    """The tuned config, trained on all given events, predicts the unseen next items better."""
    from training.dataset import holdout_split
    from training.evaluate import evaluate

    ds, true_m, true_i = data
    split = holdout_split(ds, true_m, true_i)
    bad = evaluate(split, BAD, names=("als",), ks=(10,))["als"]["ndcg@10"]
    good = evaluate(split, improved.best_config, names=("als",), ks=(10,))["als"]["ndcg@10"]
    assert good > bad + 0.1


def test_search_space_follows_the_data(data):
    ds, _, _ = data
    scale = time_scale(ds)
    assert scale.member_gap == HOUR  # consecutive events one hour apart
    assert scale.member_span == 9 * HOUR
    space = search_space(ds, scale)
    r = space.ranges["member_half_life"]
    assert r.low < HOUR < 9 * HOUR < r.high
    assert space.ranges["factors"].high <= ds.n_items // 2
    assert space.ranges["factors"].limits[1] <= ds.n_items // 2  # widening stays under it too
    assert space.decays == ("off", "member", "global")
    assert search_space(ds, scale, clock="order").decays == ("off", "member")
    assert search_space(ds, scale, clock="none").decays == ("off",)
    assert space.event_types == EVENT_TYPES
    assert space.reference == "purchase"


def test_trials_are_recorded_with_params_and_scores(improved):
    for t in improved.trials:
        assert {"factors", "regularization", "alpha", "iterations", "half_life", "decay_from",
                "log_scale"} <= set(t.params)
        assert t.score is None or 0 <= t.score <= 1


def test_every_trial_prints_one_line(data):
    import io

    from rich.console import Console

    from training.progress import Steps

    ds, _, _ = data
    buf = io.StringIO()
    tune(ds, BAD, trials=3, minutes=5, steps=Steps(Console(file=buf, width=80)))
    lines = [x for x in buf.getvalue().splitlines() if x.startswith("trial ")]
    assert len(lines) == 3
    assert all("ndcg@10" in x and "alpha=" in x for x in lines)


SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "amazon-beauty"


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.exists(), reason=f"{SHARED} not found (shared datasets absent)")
def test_amazon_beauty_few_trials():
    from training.events import load_dataset

    ds = load_dataset(SHARED / "events.csv", SHARED / "items.csv")
    r = tune(ds, TrainConfig(), trials=2, minutes=0.5, seed=0, sample=5000)
    assert r.validation["member_gap_s"] == 1  # `ts` is the position in a member's history
    assert len(r.trials) == 2  # the defaults, then the member-decay prior
    assert r.best_score > r.base_score
    assert r.best_config.weighting.decay_from == "member"


def test_keeps_the_starting_config_unless_the_gain_is_clear(data):
    """A winner that does not beat the starting config by the required number of standard errors
    (here an impossible one) is luck on a small validation set: the starting config stays."""
    ds, _, _ = data
    r = tune(ds, BAD, trials=3, minutes=5, min_gain_se=1e9)
    assert r.best_config == BAD
    assert r.best_number == 0 and r.best_score == r.base_score
    assert r.note and "keeping the starting config" in r.note
    assert "keeping the starting config" in r.summary()


def no_clock(ds: Dataset) -> Dataset:
    ev = ds.events
    flat = Interactions(member=ev.member, item=ev.item, event=ev.event, ts=np.zeros_like(ev.ts),
                        member_ids=ev.member_ids, item_ids=ev.item_ids)
    return Dataset(flat, ds.items, ds.members)


def test_no_clock_validates_on_a_random_share(data, monkeypatch):
    ds = no_clock(data[0])
    shares = []
    real = tune_module.leave_random_share

    def spy(arg, share, seed):
        shares.append((share, seed))
        return real(arg, share, seed)

    monkeypatch.setattr(tune_module, "leave_random_share", spy)
    monkeypatch.setattr(tune_module, "leave_last_out", lambda *_a: pytest.fail("no clock: no last event"))
    r = tune(ds, BAD, trials=1, seed=3, test_share=0.3)
    assert shares == [(0.3, 3)]
    assert "random 30%" in r.validation["split"]
    # members with ten distinct items hold out three each
    assert r.validation["held_out_pairs"] == 3 * ds.n_members
    with pytest.raises(MallrecError, match="share"):
        tune(ds, BAD, trials=1, test_share=1.0)


def fake_score(self, config, on_iteration=None):
    """A trial in no time: the score is a function of alpha, the per-member scores made to match."""
    score = 1 / (1 + abs(np.log(config.als.alpha)))
    self.last = {m: np.full(len(self.members), score) for m in ("hr@10", "ndcg@10")}
    return {"hr@10": score, "ndcg@10": score, "members": len(self.members)}


def test_minutes_govern_with_no_trial_cap(data, monkeypatch):
    ds, _, _ = data
    monkeypatch.setattr(tune_module.Validation, "score", fake_score)
    started = time.perf_counter()
    r = tune(ds, BAD, minutes=0.02)  # 1.2 s; no --trials: no cap
    assert time.perf_counter() - started < 6
    assert r.seconds >= 1.2  # it stopped because the time was up, not at a trial count
    assert len(r.trials) > 10
    r = tune(ds, BAD, trials=5, minutes=None)  # a cap alone: no time limit
    assert len(r.trials) == 5
    with pytest.raises(MallrecError, match="budget"):
        tune(ds, BAD, trials=None, minutes=None)


def test_config_header_says_how_it_was_found(improved, tmp_path: Path):
    header = improved.header()
    assert "seed 0" in header
    assert "validation: leave-last-out" in header and "ndcg@10" in header
    best = improved.best_trial.params
    assert f"factors={best['factors']}" in header and f"alpha={best['alpha']:.4g}" in header
    assert f"{improved.base_score:.4f} -> this config {improved.best_score:.4f}" in header
    f = tmp_path / "best.toml"
    f.write_text(improved.best_config.to_toml(header=header))
    text = f.read_text()
    assert text.startswith("# written by `mallrec tune` (seed 0)")
    assert all(line.startswith("# ") for line in text.split("\n\n")[0].splitlines())
    assert load_config(f) == improved.best_config


def test_decay_spans_on_an_order_only_clock_read_as_positions_not_times() -> None:
    """ts that count positions in a member's history make a half-life a number of positions."""
    assert tune_module.human_duration(90000.0) == "1.04d"
    assert tune_module.human_duration(227345.6, "order") == "227,346 positions"
    params = {"factors": 64, "regularization": 0.01, "alpha": 2.0, "iterations": 15, "log_scale": True,
              "decay_from": "member", "half_life": 40.0, "member_half_life": 12.0}
    rec = tune_module.TrialRecord(3, params, 0.1, {"hr@10": 0.2})
    order = tune_module._trial_line(rec, "ndcg@10", 0.1, True, "order")
    assert "decay=member 40 positions member=12 positions" in order
    assert "40s" in tune_module._trial_line(rec, "ndcg@10", 0.1, True, "time")
    assert tune_module._fmt("half_life", 40.0, "order") == "40 positions"
    assert tune_module._fmt("member_half_life", 90000.0) == "1.04d (90000 s)"
