"""Training subcommands: synth, train, evaluate, tune (registered on the root `mallrec` app).

Heavy modules (implicit, faiss) load inside the commands so `mallrec --help` stays instant.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from service.errors import MallrecError

if TYPE_CHECKING:  # the commands import these when they run (a serve-only install has none of them)
    from training.dataset import Clock, Dataset, Split
    from training.gate import GateResult

out = Console(soft_wrap=True)  # paths and versions stay on one line, whatever the width
err = Console(stderr=True)

EventsOpt = Annotated[list[Path], typer.Option("--events", metavar="<path>", help="Events: a file (CSV or Parquet: member_id,item_id,event,ts[,quantity]) or the service's event log folder (its view/click/fav/cart/purchase records; impression and served records are left out). Repeat to combine sources, e.g. --events history.csv --events LOG_DIR.")]
SinceOpt = Annotated[str | None, typer.Option("--since", metavar="<when>", help="Only events at or after this time, from every --events source: a span back from now (90d, 24h, 2w) or an ISO date or time (2026-09-04; UTC unless it names a zone). Default: all events.")]
ItemsOpt = Annotated[Path, typer.Option("--items", help="Item catalogue (CSV or Parquet): item_id,category,brand,price,stock,on_shelf,launched_at,tags.")]
MembersOpt = Annotated[Path | None, typer.Option("--members", help="Optional members file: member_id,tier,points,joined_at.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Training config (TOML or YAML); defaults apply to anything unset. `mallrec tune` writes one.")]


class SplitKind(StrEnum):
    leave_last_out = "leave-last-out"
    temporal = "temporal"
    random = "random"


def _load(events: list[Path], items: Path, members: Path | None, max_bad_share: float,
          since: str | None = None) -> Dataset:
    from training.events import format_report, load_dataset
    from training.input_files import parse_since

    start = parse_since(since) if since is not None else None
    with err.status("reading input"):
        ds = load_dataset(events, items, members, max_bad_share=max_bad_share, since=start)
    err.print(format_report(ds.events.report), highlight=False)
    return ds


def synth(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write events, items and members into.")],
    members: Annotated[int, typer.Option(min=1, help="Number of members.")] = 2000,
    items: Annotated[int, typer.Option(min=1, help="Number of catalogue items.")] = 500,
    events: Annotated[int, typer.Option(min=1, help="Number of behaviour events.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same mall).")] = 7,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    days: Annotated[int, typer.Option(min=1, help="Days of behaviour, ending now.")] = 30,
) -> None:
    """Make a synthetic mall in the input format (for demos, tests and scale runs; never for accuracy)."""
    from training.synth import generate

    if fmt not in ("csv", "parquet"):
        raise MallrecError(f"--format must be csv or parquet, not {fmt!r}")
    paths = generate(out_dir, members=members, items=items, events=events, seed=seed, fmt=fmt, days=days)
    for name, path in paths.items():
        out.print(f"{name:8} {path}", highlight=False)


def train(
    events: EventsOpt,
    items: ItemsOpt,
    models_dir: Annotated[Path, typer.Option("--out", help="Models directory; the bundle is published into it.")],
    members: MembersOpt = None,
    config: ConfigOpt = None,
    keep: Annotated[int, typer.Option(min=1, help="Published versions to keep.")] = 5,
    since: SinceOpt = None,
    gate: Annotated[bool, typer.Option("--gate", help="Publish only if the new bundle ranks a recent holdout about as well as the live one (HR@10 and NDCG@10 each >= live x (1 - tolerance)). It is trained without the holdout, and that bundle is what gets published. Refused: nothing is published and train exits with code 3. No live bundle: passes.")] = False,
    holdout: Annotated[Path | None, typer.Option("--holdout", metavar="<file>", help="With --gate: the holdout as a member_id,item_id file (its pairs should not be in --events); all events train. Default: the last --gate-days of the events.")] = None,
    gate_days: Annotated[float | None, typer.Option("--gate-days", min=0.001, help="With --gate: hold out the events' last N days (default 1), or those after the live bundle's newest event when it is newer.")] = None,
    gate_tolerance: Annotated[float, typer.Option("--gate-tolerance", min=0.0, max=1.0, help="With --gate: how much worse (relative) than the live bundle the new one may be, e.g. 0.02 = 2%.")] = 0.02,
) -> None:
    """Train ALS, popularity and neighbours, index item vectors and publish a versioned bundle.

    Exit codes: 0 published; 2 bad input or config; 3 --gate kept the new bundle back."""
    from training.config import load_config
    from training.dataset import read_clock
    from training.progress import Steps

    if not gate and (holdout is not None or gate_days is not None):
        raise MallrecError("--holdout and --gate-days choose the gate's holdout: add --gate")
    cfg = load_config(config)
    ds = _load(events, items, members, cfg.input.max_bad_share, since)
    steps = Steps(err)
    steps.info(read_clock(ds.events).line)
    if gate:
        from training.gate import GATE_REFUSED_EXIT, gated_train

        result = gated_train(ds, cfg, models_dir, holdout_file=holdout, days=gate_days or 1.0,
                             tolerance=gate_tolerance, steps=steps, keep=keep)
        _print_gate(result)
        if result.path is None:
            err.print(f"not published (exit {GATE_REFUSED_EXIT}): {result.live_version} stays live",
                      highlight=False)
            raise typer.Exit(GATE_REFUSED_EXIT)
        path = result.path
    else:
        from training.pipeline import train as run_train

        path = run_train(ds, cfg, models_dir, steps=steps, keep=keep)
    from service.model_bundle import read_manifest

    manifest = read_manifest(path)
    err.print(f"index: {manifest['index']['kind']}, recall@100 {manifest['index']['recall_at_100']:.3f}",
              highlight=False)
    if nb := manifest.get("neighbours"):
        recall = "exact" if nb["recall_at_k"] is None else f"recall {nb['recall_at_k']:.3f}"
        err.print(f"neighbours: {nb['kind']}, {recall}, {nb['items_with_vector']:,} items with a vector",
                  highlight=False)
    out.print(f"published {manifest['version']} -> {path}", highlight=False)


def _print_gate(result: GateResult) -> None:
    h = result.holdout
    where = h["file"] if h["kind"] == "file" else f"events after {h['cut']}"
    err.print(f"gate holdout: {h['pairs']:,} pairs of {h['members']:,} members ({where})", highlight=False)
    for note in result.notes:
        err.print(f"gate: {note}", highlight=False)
    against = f" against live {result.live_version}" if result.live is not None else ""
    err.print(f"gate {'passed' if result.passed else 'refused'}{against}: {result.reason}", highlight=False)


def evaluate(
    events: EventsOpt,
    items: ItemsOpt,
    members: MembersOpt = None,
    holdout: Annotated[Path | None, typer.Option(help="Explicit holdout file member_id,item_id (all events train).")] = None,
    split: Annotated[SplitKind, typer.Option(help="Split when no --holdout: each member's last event (a random item when the events have no clock), the last --test-days (needs real times), or a random --test-share of each member's items.")] = SplitKind.leave_last_out,
    test_days: Annotated[float, typer.Option(help="Length of the test period for --split temporal.")] = 1.0,
    test_share: Annotated[float | None, typer.Option("--test-share", help="With --split random: the share of each member's distinct items held out, between 0 and 1 (default 0.2; at least one item held out and one kept).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random splits (--split random, and leave-last-out without a clock).")] = 0,
    config: ConfigOpt = None,
    k: Annotated[str, typer.Option(help="Cut-offs, comma separated.")] = "10,20",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the metrics, the split and the fit and scoring times (seconds) as JSON here.")] = None,
    since: SinceOpt = None,
) -> None:
    """Score ALS, RP3beta, popularity models and their blends on a holdout, ranking all items."""
    from training.config import load_config
    from training.dataset import read_clock
    from training.evaluate import evaluate as run_eval
    from training.evaluate import scoring_times
    from training.progress import Steps

    ks = _parse_ks(k)
    if test_share is not None and (holdout is not None or split is not SplitKind.random):
        raise MallrecError("--test-share applies to --split random (without --holdout)")
    share = 0.2 if test_share is None else test_share
    if not 0 < share < 1:
        raise MallrecError(f"--test-share must be between 0 and 1 (exclusive), not {share:g}")
    cfg = load_config(config)
    ds = _load(events, items, members, cfg.input.max_bad_share, since)
    steps = Steps(err)
    clock = read_clock(ds.events)
    steps.info(clock.line)
    split_ds = make_split(ds, holdout, split, test_days, clock=clock, share=share, seed=seed)
    err.print(f"split: {len(split_ds.test_members):,} held-out pairs for "
              f"{len(set(split_ds.test_members.tolist())):,} members", highlight=False)
    notes: list[str] = []
    results = run_eval(split_ds, cfg, ks=ks, steps=steps, notes=notes, clock=clock)
    for note in notes:
        err.print(note, highlight=False)
    scoring = scoring_times(steps.timings, list(results))
    fits = {name: t for name, t in steps.timings.items() if not name.startswith("score ")}
    err.print(f"scoring: {sum(scoring.values()):.1f}s for {len(scoring)} models ("
              + ", ".join(f"{name} {t:.1f}s" for name, t in scoring.items())
              + "); fitting: " + ", ".join(f"{name} {t:.1f}s" for name, t in fits.items()), highlight=False)
    print_metrics(results, ks)
    if json_out:
        payload = {"split": holdout and str(holdout) or split.value, "clock": clock.kind,
                   "test_share": share if split is SplitKind.random and holdout is None else None,
                   "seed": seed, "k": list(ks), "models": results,
                   "seconds": {"fit": fits, "score": scoring, "score_total": round(sum(scoring.values()), 3)},
                   "config": cfg.model_dump(mode="json")}
        json_out.write_text(json.dumps(payload, indent=2))
        err.print(f"metrics written to {json_out}")


def tune(
    events: EventsOpt,
    items: ItemsOpt,
    out_config: Annotated[Path, typer.Option("--out", help="Where to write the best config (TOML) for `train`.")],
    members: MembersOpt = None,
    config: ConfigOpt = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Cap: at most this many trials (the starting config counts as one). Default: no cap; given alone, no time limit.")] = None,
    minutes: Annotated[float | None, typer.Option(min=0.1, help="Budget: no trial starts after this long; the search runs until then. Default: 20 when neither --minutes nor --trials is given.")] = None,
    test_share: Annotated[float, typer.Option("--test-share", min=0.01, max=0.99, help="Data without a clock (every event at one time): the seeded random share of each member's items held out for validation. With a clock each member's last event is held out.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Search seed (also the validation sample's and the random split's).")] = 0,
    since: SinceOpt = None,
) -> None:
    """Search ALS hyperparameters, event weights and decay, then RP3beta's and its blend weight (the
    last quarter of the time) on a validation split of the events (a holdout file is never read),
    write the best config with how it was found as comments."""
    from training.config import load_config
    from training.progress import Steps
    from training.tune import DEFAULT_MINUTES
    from training.tune import tune as run_tune

    base = load_config(config)
    ds = _load(events, items, members, base.input.max_bad_share, since)
    if minutes is None and trials is None:
        minutes = DEFAULT_MINUTES
    result = run_tune(ds, base, trials=trials, minutes=minutes, seed=seed, steps=Steps(err),
                      test_share=test_share)
    out_config.parent.mkdir(parents=True, exist_ok=True)
    out_config.write_text(result.best_config.to_toml(header=result.header()))
    out.print(result.summary(), highlight=False)
    out.print(f"best config written to {out_config}", highlight=False)


def make_split(ds: Dataset, holdout: Path | None, split: SplitKind, test_days: float,
               clock: Clock | None = None, share: float = 0.2, seed: int = 0) -> Split:
    from training.dataset import (
        holdout_split,
        leave_last_out,
        leave_random_out,
        leave_random_share,
        read_clock,
        temporal,
    )

    if holdout is not None:
        from training.events import read_pairs

        members, items = read_pairs(holdout, ds)
        return holdout_split(ds, members, items)
    clock = clock or read_clock(ds.events)
    if split is SplitKind.random:
        return leave_random_share(ds, share, seed)
    if split is SplitKind.temporal:
        if clock.kind != "time":
            raise MallrecError(f"--split temporal needs event times, and these events have {clock.kind} "
                               f"(see the clock line): use --split random or leave-last-out")
        return temporal(ds, test_days)
    if not clock.has_order:  # "last" would be last in file order: hold out a random item instead
        err.print(f"leave-last-out without a clock: holds out a random item per member (seed {seed}) "
                  f"instead of the last in file order", highlight=False)
        return leave_random_out(ds, seed)
    return leave_last_out(ds)


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise MallrecError(f"--k takes whole numbers separated by commas, not {text!r}") from None
    if not ks or min(ks) < 1:
        raise MallrecError(f"--k needs at least one cut-off >= 1, not {text!r}")
    return ks


def print_metrics(results: dict[str, dict[str, float]], ks: tuple[int, ...]) -> None:
    table = Table(title="offline metrics (full ranking, seen items excluded)")
    table.add_column("model")
    cols = [f"{m}@{k}" for k in ks for m in ("hr", "recall", "ndcg", "map", "coverage")]
    for c in cols:
        table.add_column(c, justify="right")
    for name, metrics in results.items():
        table.add_row(name, *(f"{metrics[c]:.4f}" for c in cols))
    # piped or logged output has no terminal width: do not squeeze the numbers into 80 columns
    console = out if out.is_terminal else Console(soft_wrap=True, width=40 + 10 * len(cols))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("tune")(tune)
