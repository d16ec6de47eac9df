"""`mallrec models list|rollback|pin|unpin`: the published bundles in MODELS_DIR, putting an older one
live, and pinning the versions `mallrec train --keep` must not remove (service.bundle_versions).

Rollback only moves CURRENT (atomically, as publish does); a running server's BundleWatcher polls
CURRENT every second and swaps to the bundle it names. A bundle is fully loaded and checked
(manifest, checksums, shapes) before CURRENT moves, so a rollback never points the service at a
bundle it would refuse.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, JustifyMethod
from rich.filesize import decimal
from rich.table import Table

from service.bundle_manifest import BundleError, read_manifest

out = Console(soft_wrap=True)
err = Console(stderr=True)

ModelsOpt = Annotated[Path, typer.Option(
    "--models", metavar="<dir>", help="Models directory (MODELS_DIR): CURRENT and versions/<version>/.")]

app = typer.Typer(name="models", help="Published model bundles: list them, roll back to an older one, "
                                     "pin the ones pruning must keep.",
                  no_args_is_help=True, rich_markup_mode=None)


def _versions_dir(models_dir: Path) -> Path:
    from service.model_bundle import VERSIONS_DIR

    versions = models_dir / VERSIONS_DIR
    if not versions.is_dir():
        raise BundleError(f"{models_dir}: no {VERSIONS_DIR}/ folder, nothing published here "
                          f"(`mallrec train --out {models_dir}` publishes)")
    return versions


def describe(path: Path, live: str | None, pinned: dict[str, str] | None = None) -> dict[str, Any]:
    """One version's row: manifest facts, size on disk, live or not, pinned or not (and the pin's
    note); ``error`` when unreadable."""
    pins = pinned or {}
    row: dict[str, Any] = {"version": path.name, "live": path.name == live, "pinned": path.name in pins,
                           "pin_note": pins.get(path.name),
                           "size_bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file())}
    try:
        m = read_manifest(path)
    except BundleError as e:
        row.update(created_at=_iso(path.stat().st_mtime), error=str(e))
        return row
    stats = m.get("data_stats", {})
    row.update(created_at=m["created_at"], events=stats.get("events"),
               events_from=stats.get("events_from") or _iso(stats.get("ts_min")),
               events_to=stats.get("events_to") or _iso(stats.get("ts_max")), metrics=_metrics(m))
    return row


def _metrics(m: dict[str, Any]) -> dict[str, Any]:
    """The offline figures a manifest holds: the gate's, the re-ranker's validation, the index's."""
    found: dict[str, Any] = {}
    if gate := m.get("gate"):
        found["gate"] = {"passed": gate.get("passed"), "new": gate.get("new"), "live": gate.get("live"),
                         "live_version": gate.get("live_version")}
    valid = (m.get("reranker") or {}).get("valid") or {}
    if "rerank_ndcg@10" in valid:
        found["reranker_valid"] = {k: valid[k] for k in ("first_stage_ndcg@10", "rerank_ndcg@10", "shipped")
                                   if k in valid}
    if "index_recall_at_100" in (m.get("metrics") or {}):
        found["index_recall_at_100"] = m["metrics"]["index_recall_at_100"]
    return found


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def versions_newest_first(models_dir: Path) -> list[dict[str, Any]]:
    """Every published version (not those being written), newest first by creation time."""
    from service.bundle_versions import published, read_pinned
    from service.model_bundle import current_version

    versions, live, pinned = _versions_dir(models_dir), current_version(models_dir), read_pinned(models_dir)
    rows = [describe(p, live, pinned) for p in published(versions)]
    return sorted(rows, key=lambda r: (r["created_at"], r["version"]), reverse=True)


@app.command("list")
def list_models(
    models_dir: ModelsOpt,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON array instead of the table.")] = False,
) -> None:
    """Published versions, newest first: created, data window, offline metrics, size, which is live,
    which are pinned."""
    from service.bundle_versions import read_pinned
    from service.model_bundle import current_version

    rows = versions_newest_first(models_dir)
    live = current_version(models_dir)
    if live is not None and not any(r["live"] for r in rows):
        err.print(f"warning: CURRENT names {live!r}, which is not in {models_dir}/versions: "
                  f"nothing listed is live", highlight=False)
    if gone := [v for v in read_pinned(models_dir) if not any(r["version"] == v for r in rows)]:
        err.print(f"warning: PINNED names {', '.join(gone)}, not in {models_dir}/versions "
                  f"(`mallrec models unpin` drops a pin)", highlight=False)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        err.print(f"no published versions in {models_dir}", highlight=False)
        return
    table = Table(title=f"model versions in {models_dir}")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("live", "center"), ("pinned", "left"), ("version", "left"), ("created", "left"),
        ("data window", "left"), ("events", "right"), ("metrics", "left"), ("size", "right"))
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for r in rows:
        window = f"{r.get('events_from')} .. {r.get('events_to')}" if r.get("events_from") else "-"
        figures = f"unreadable: {r['error']}" if "error" in r else _metrics_text(r["metrics"])
        events = f"{r['events']:,}" if r.get("events") is not None else "-"
        pin = (f"pinned: {r['pin_note']}" if r["pin_note"] else "pinned") if r["pinned"] else ""
        table.add_row("*" if r["live"] else "", pin, r["version"], r["created_at"], window, events, figures,
                      decimal(r["size_bytes"]))
    console = out if out.is_terminal else Console(soft_wrap=True, width=220)
    console.print(table)


def _metrics_text(m: dict[str, Any]) -> str:
    parts = []
    if gate := m.get("gate"):
        new, live = gate.get("new") or {}, gate.get("live")
        figures = " ".join(f"{k} {new[k]:.4f}" + (f" (live {live[k]:.4f})" if live else "")
                           for k in ("hr@10", "ndcg@10") if k in new)
        parts.append(f"gate {figures}" + ("" if live else " (no live bundle)"))
    if rr := m.get("reranker_valid"):
        refused = " refused by the gate: not shipped" if rr.get("shipped") is False else ""
        parts.append(f"rerank ndcg@10 {rr['rerank_ndcg@10']:.4f} (first stage "
                     f"{rr.get('first_stage_ndcg@10', float('nan')):.4f}){refused}")
    if "index_recall_at_100" in m:
        parts.append(f"index recall@100 {m['index_recall_at_100']:.3f}")
    return "; ".join(parts) or "-"



@app.command("rollback")
def rollback(
    models_dir: ModelsOpt,
    version: Annotated[str | None, typer.Argument(
        help="The version to make live. Default: the newest one older than the live one.")] = None,
) -> None:
    """Make an older (or the named) version live: CURRENT moves atomically once that bundle loads and
    its checksums match. A running server swaps to it within a few seconds."""
    from service.model_bundle import current_version, load, set_current

    versions = _versions_dir(models_dir)
    live = current_version(models_dir)
    if version is None:
        version = _previous(models_dir, live)
    elif version.startswith(".") or "/" in version or "\\" in version or not (versions / version).is_dir():
        known = ", ".join(r["version"] for r in versions_newest_first(models_dir)) or "none"
        raise BundleError(f"no version {version!r} in {versions} (published: {known})")
    if version == live:
        out.print(f"{version} is already live; nothing changed", highlight=False)
        return
    try:
        load(versions / version, verify=True, with_index=False)
    except BundleError as e:
        raise BundleError(f"not rolling back to {version}: its bundle does not validate ({e}); "
                          f"CURRENT still names {live}") from e
    set_current(models_dir, version)
    out.print(f"live was {live or '(none)'}, live now {version}", highlight=False)
    out.print(f"a running server swaps within a few seconds (it polls {models_dir / 'CURRENT'})",
              highlight=False)


def _previous(models_dir: Path, live: str | None) -> str:
    """The newest version older than the live one."""
    rows = versions_newest_first(models_dir)
    if live is None:
        raise BundleError(f"nothing is live in {models_dir} (no CURRENT): name the version to make live")
    order = [r["version"] for r in rows]
    if live not in order:
        raise BundleError(f"the live version {live!r} is not in {models_dir}/versions: name the version "
                          f"to make live")
    older = order[order.index(live) + 1:]
    if not older:
        raise BundleError(f"{live} is the oldest published version: there is nothing older to roll back to")
    return older[0]


@app.command("pin")
def pin(
    models_dir: ModelsOpt,
    version: Annotated[str, typer.Argument(help="The published version to keep, e.g. one an experiment "
                                                "arm serves (model = \"<version>\").")],
    note: Annotated[str | None, typer.Option("--note", help="Why it is pinned (kept in PINNED).")] = None,
) -> None:
    """Pin a version: `mallrec train --keep N` never removes it (nor counts it toward N). The pin is
    a line in MODELS_DIR/PINNED, replaced atomically."""
    from service.bundle_versions import published, read_pinned, write_pinned

    versions = _versions_dir(models_dir)
    names = [p.name for p in reversed(published(versions))]
    if version not in names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise BundleError(f"cannot pin {version!r}: not in {versions} (newest first: {shown or 'none'})")
    pins = read_pinned(models_dir)
    pins[version] = " ".join((note or pins.get(version) or "").split())
    write_pinned(models_dir, pins)
    out.print(f"pinned {version}" + (f" ({pins[version]})" if pins[version] else "")
              + f": `mallrec train --keep` will not remove it ({models_dir / 'PINNED'})", highlight=False)


@app.command("unpin")
def unpin(
    models_dir: ModelsOpt,
    version: Annotated[str, typer.Argument(help="The pinned version to let go.")],
) -> None:
    """Unpin a version: a later `mallrec train --keep N` may remove it again."""
    from service.bundle_versions import read_pinned, write_pinned

    pins = read_pinned(models_dir)
    if version not in pins:
        pinned = ", ".join(pins) or "none"
        out.print(f"{version} is not pinned in {models_dir} (pinned: {pinned}); nothing changed",
                  highlight=False)
        return
    del pins[version]
    write_pinned(models_dir, pins)
    out.print(f"unpinned {version}: a later `mallrec train --keep` may remove it", highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="models")

