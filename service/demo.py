"""`mallrec demo`: synthetic mall (or --data) -> train -> serve with embedded Redis -> show slots.

Everything the demo shows goes through the real gRPC server, so what you see is what the frontend
gets. The trainer is imported inside the functions (the service itself never needs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np
from rich.console import Console

from service import logs
from service.app import App, build
from service.client import BUILT_IN_SLOTS, Client, print_response
from service.errors import MallrecError
from service.model import ServingModel
from service.model_bundle import current_version
from service.settings import Settings


class _Synth(TypedDict):
    members: int
    items: int
    events: int
    seed: int


SYNTH: _Synth = {"members": 2000, "items": 500, "events": 50_000, "seed": 7}
SHOW_COUNT = 5


async def run_demo(console: Console, *, data: Path | None, models: Path, port: int,
                   redis_url: str | None = None, once: bool = False) -> None:
    if data is not None:
        _train(console, _input_files(data), models)
    elif current_version(models) is None:
        synth_dir = models.parent / "synth"
        console.rule("1. a synthetic mall")
        from training.synth import generate

        files = generate(synth_dir, **SYNTH)
        console.print(f"{SYNTH['members']:,} members, {SYNTH['items']:,} items, {SYNTH['events']:,} events "
                      f"in {synth_dir}")
        _train(console, files, models)
    else:
        console.print(f"serving the model already in {models} (version {current_version(models)}); "
                      f"pass --data DIR to train on your own files")
    logs.configure("WARNING")  # keep the screen for the tables; `mallrec serve` logs JSON at INFO
    # the loop's files beside the models: the event log, and the embedded Redis's append-only file
    settings = Settings.load(models_dir=models, port=port, redis_url=redis_url, drain_seconds=0,
                             log_dir=models.parent / "log",
                             embedded_redis_file=models.parent / "redis" / "mallrec.rdb")
    app = await build(settings).start()
    try:
        await _show(console, app)
    except BaseException:
        await app.stop(grace=0)
        raise
    if once:
        await app.stop(grace=0)
        return
    console.rule("serving")
    log_dir = app.settings.log_dir
    console.print(f"mallrec is serving on [bold]{app.target}[/] (Ctrl-C to stop); the event log is written "
                  f"to {log_dir} (`mallrec report --log {log_dir}`). Try:\n"
                  f"  mallrec recommend --target {app.target} --member {_members(app)[0]} --slot check_in\n"
                  f"  mallrec recommend --target {app.target} --member {_members(app)[0]} --page")
    await app.serve_until_signal()


def _input_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name in ("events", "items", "members"):
        for suffix in (".csv", ".csv.gz", ".parquet"):
            if (folder / f"{name}{suffix}").exists():
                found[name] = folder / f"{name}{suffix}"
                break
    missing = [n for n in ("events", "items") if n not in found]
    if missing:
        raise MallrecError(f"--data {folder}: no {' or '.join(missing)} file (.csv, .csv.gz or .parquet)")
    return found


def _train(console: Console, files: dict[str, Path], models: Path) -> None:
    from training.config import TrainConfig
    from training.events import load_dataset
    from training.pipeline import train
    from training.progress import Steps

    console.rule("2. training")
    ds = load_dataset(files["events"], files["items"], files.get("members"))
    path = train(ds, TrainConfig(), models, steps=Steps(console))
    console.print(f"published {path.name} into {models}")


def _members(app: App) -> list[str]:
    """Two members with the longest histories, and one the model has never seen."""
    model = app.models.current
    assert model is not None
    sizes = np.diff(model.bundle.history_indptr)
    top = np.argsort(-sizes, kind="stable")[:2]
    return [str(model.bundle.members.member_id[m]) for m in top] + ["new-member-001"]


def _page_context(model: ServingModel, member_id: str) -> tuple[str, list[str]]:
    """A search text (the brand of the member's latest item) and a 'delivered order' (their last
    purchases), so each slot has something to work with."""
    member = model.member(member_id)
    if member is None:
        return str(model.bundle.items.category[model.popular_order[0]]), []
    h = model.history(member)
    b = model.bundle
    order = np.argsort(-b.history_last_ts[h], kind="stable")
    items = b.history_items[h][order]
    bought = items[b.history_purchases[h][order] > 0][:2]
    query = str(b.items.brand[items[0]] or b.items.category[items[0]]) if len(items) else ""
    return query, [str(model.item_ids[i]) for i in bought]


async def _show(console: Console, app: App) -> None:
    model = app.models.current
    if model is None:
        raise MallrecError(f"no model could be loaded from {app.settings.models_dir}")
    console.rule(f"3. the slots (model {model.version}, server {app.target})")
    async with Client(app.target) as client:
        for member in _members(app):
            query, orders = _page_context(model, member)
            console.print(f"\n[bold]{member}[/]  search box text: {query!r}  delivered order: "
                          f"{', '.join(orders) or '-'}")
            for slot in BUILT_IN_SLOTS:
                resp = await client.recommend(member, slot, SHOW_COUNT, query, orders)
                print_response(console, member, resp)
        member = _members(app)[0]
        query, orders = _page_context(model, member)
        console.rule(f"4. one page for {member}: three slots, no item twice")
        page = await client.page(member, [(s, SHOW_COUNT) for s in BUILT_IN_SLOTS], query, orders)
        print_response(console, member, page)
