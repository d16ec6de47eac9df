"""`mallrec rules check` and `mallrec rules preview` (registered by service.cli_commands).

Both work on files alone: no server, no Redis unless ``--redis-url`` asks for the live state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from service.errors import MallrecError

if TYPE_CHECKING:
    from service.model import ServingModel

out = Console()
app = typer.Typer(name="rules", help="Exposure rules files: check them, preview a slot with its full trace.",
                  no_args_is_help=True, rich_markup_mode=None)


class RulesCheckFailed(MallrecError):
    """The file has errors (already printed, one per line)."""

    exit_code = 1


def _model(models: Path) -> ServingModel:
    from service.model import ServingModel

    return ServingModel.load(models)


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="The rules file (.toml, or .yaml/.yml).")],
    models: Annotated[Path | None, typer.Option(
        "--models", help="Models directory: also warn about items, categories, brands, tags and tiers "
                         "the bundle does not have.")] = None,
) -> None:
    """Check a rules file: every error at once (line, slot, rule, field, why); exit 1 on any error."""
    from service.rules.loader import RulesError, load_rules

    try:
        loaded = load_rules(file, model=None if models is None else _model(models), models_dir=models)
    except RulesError as e:
        for p in e.problems:
            out.print(p.format(str(file)), highlight=False, markup=False, soft_wrap=True)
        errors = sum(p.level == "error" for p in e.problems)
        raise RulesCheckFailed(f"{file}: {errors} error{'s' * (errors != 1)}, "
                               f"{len(e.problems) - errors} warning(s): not valid") from None
    for p in loaded.problems:
        out.print(p.format(str(file)), highlight=False, markup=False, soft_wrap=True)
    reg = loaded.registry
    out.print(f"{file}: valid, rules version {reg.version}; slots: {', '.join(reg.names())}; "
              f"{len(loaded.problems)} warning(s)", highlight=False, soft_wrap=True)
    for slot, exps in sorted(reg.experiments.items()):
        for exp in exps:
            total = sum(a.weight for a in exp.arms)
            arms = ", ".join(f"{a.name} {a.weight / total:.0%}" + (f" (model {a.model})" if a.model else "")
                             for a in exp.arms)
            out.print(f"experiment {exp.name} on {slot}: {arms}; salt {exp.salt!r}", highlight=False,
                      soft_wrap=True)
    outline = loaded.outline
    if outline.allow_removing_slots:
        note = ("allow_removing_slots = true: a running service takes this file even when it drops "
                "every rule or a slot that served lately; remove the line once this change is live")
    elif outline.empty:
        note = ("note: this file defines no rules and no slots of its own; a running service refuses it "
                "as a probably truncated save unless it says allow_removing_slots = true at the top")
    else:
        note = ("reload: a running service refuses this file if it drops a slot that served in the last "
                "hour (allow_removing_slots = true at the top lets it)")
    out.print(note, highlight=False, markup=False, soft_wrap=True)


@app.command()
def preview(
    models: Annotated[Path, typer.Option("--models", help="Models directory (its CURRENT bundle).")],
    rules: Annotated[Path, typer.Option("--rules", help="The rules file to preview.")],
    slot: Annotated[str, typer.Option("--slot", help="Slot id (built-in or defined in the file).")],
    member: Annotated[str | None, typer.Option("--member", help="Member id (unknown: a cold start).")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="When: ISO-8601 (no offset = the rules file's timezone) or epoch seconds; "
                     "default now.")] = None,
    count: Annotated[int, typer.Option(help="Items to show.")] = 10,
    query: Annotated[str, typer.Option(help="Search box text (context.query).")] = "",
    order_items: Annotated[str, typer.Option(help="Delivered order's item ids, comma separated.")] = "",
    redis_url: Annotated[str | None, typer.Option(
        "--redis-url", help="Read the members' live state (recent events, impressions) from this Redis, "
                            "read-only. Default: no state (a fresh day, no recent events).")] = None,
    redis_prefix: Annotated[str, typer.Option(help="Key prefix of the live state.")] = "mallrec:",
    diff: Annotated[Path | None, typer.Option(
        "--diff", help="Another rules file: show how it moves the slot for a sample of members.")] = None,
    members: Annotated[int, typer.Option(help="Members sampled for --diff.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """What a member would see in a slot under a rules file, with the full trace; or, with --diff,
    how another rules file would move the slot for a sample of members. In-process: no server."""
    from service.domain import Context
    from service.rules import load_rules
    from service.rules.preview import diff as run_diff
    from service.rules.preview import parse_at, result_json, run_slot, sample_members

    model = _model(models)
    loaded = load_rules(rules, model=model)
    when = parse_at(at, loaded.timezone, time.time())
    orders = tuple(i.strip() for i in order_items.split(",") if i.strip())
    context = Context(query=query, order_item_ids=orders)
    if diff is None:
        if member is None:
            raise MallrecError("give --member M (or --diff OTHER_FILE for a sample of members)")
        sample = [member]
    else:
        sample = ([member] if member else []) + [
            m for m in sample_members(model, members) if m != member][:members]
    states, state_note = _states(sample, when, redis_url, redis_prefix)
    header = {"rules": str(rules), "rules_version": loaded.registry.version, "model": model.version,
              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)), "state": state_note}
    if diff is not None:
        other = load_rules(diff, model=model)
        report = run_diff(model, loaded.registry, other.registry, slot, sample, count, when, context, states)
        body = {**header, "diff_rules": str(diff), "diff_rules_version": other.registry.version,
                **report.as_json(), "rules_file": str(rules)}  # report's "rules": what each rule did
        return out.print_json(json.dumps(body)) if as_json else _print_diff(body)
    assert member is not None
    result = run_slot(model, loaded.registry, member, slot, count, when, context, states.get(member))
    chosen = loaded.registry.choose(slot, member, when)
    body = {**header, "member": member, "outline": chosen.recipe.outline() if chosen else [],
            **result_json(model, result)}
    return out.print_json(json.dumps(body)) if as_json else _print_preview(body)


def _states(members: list[str], when: float, url: str | None, prefix: str) -> tuple[dict[str, Any], str]:
    if url is None:
        return {}, "none: no recent events, no impressions (pass --redis-url to read the live state)"
    import asyncio

    from service.state.redis_store import RedisStateStore

    async def read() -> dict[str, Any]:
        store = RedisStateStore(url, prefix=prefix, timeout=2.0, scripted_read=False)  # reads only
        try:
            return {m: await store.read(m, when, days=30) for m in members}
        finally:
            await store.close()

    states = asyncio.run(read())
    if any(s.degraded for s in states.values()):
        raise MallrecError(f"--redis-url: cannot read the live state from {url}")
    return states, f"live, read-only from {url} (prefix {prefix!r})"


def _print_preview(body: dict[str, Any]) -> None:
    out.print(f"[bold]{body['slot']}[/] for [bold]{body['member']}[/] at {body['at']} · rules "
              f"{body['rules_version']} · model {body['model']}", highlight=False)
    out.print(f"[dim]state: {body['state']}[/]", highlight=False)
    if body.get("experiment"):
        out.print(f"experiment [bold]{body['experiment']}[/]: arm [bold]{body['arm']}[/]", highlight=False)
    for line in body["outline"]:
        out.print(f"[dim]{line}[/]", highlight=False)
    items = Table(title="what the member sees", title_justify="left")
    for col in ("#", "item", "score", "source", "category", "brand", "price", "tags", "why"):
        items.add_column(col)
    for i in body["items"]:
        why = "\n".join(f"{r['step']} ({r['kind']}): {r['detail']}" for r in i["reasons"])
        items.add_row(str(i["position"]), i["item_id"], f"{i['score']:.3f}", i["source"],
                      i.get("category", ""), i.get("brand", ""), str(i.get("price", "")), i.get("tags", ""),
                      why)
    out.print(items)
    if body.get("degraded"):
        skipped = ", ".join(body["degraded"])
        out.print(f"[bold yellow]degraded: served without {skipped} (the trace says why)[/]", highlight=False)
    trace = Table(title="trace (in the order the steps ran)", title_justify="left")
    for col in ("step", "kind", "what it is", "removed", "added", "moved", "gave way"):
        trace.add_column(col)
    for s in body["trace"]:
        trace.add_row(s["step"], s["kind"], s["note"], _ids(s["removed"]), _ids(s["added"]),
                      ", ".join(s["moved"]), "\n".join(s["gave_way"]))
    out.print(trace)


def _ids(ids: list[str]) -> str:
    return f"{len(ids)}: {', '.join(ids)}" if ids else ""


def _print_diff(body: dict[str, Any]) -> None:
    out.print(f"[bold]{body['slot']}[/]: {body['rules_file']} ({body['rules_version']}) -> "
              f"{body['diff_rules']} ({body['diff_rules_version']}), {body['members']} members "
              f"at {body['at']}", highlight=False)
    out.print(f"[dim]state: {body['state']}[/]", highlight=False)
    out.print(f"members whose slot changed: {body['members_changed']} of {body['members']}; "
              f"positions changed: {body['positions_changed_share']:.1%}", highlight=False)
    for title, key in (("items entering (members)", "entering"), ("items leaving (members)", "leaving")):
        shown = list(body[key].items())[:15]
        out.print(f"{title}: " + (", ".join(f"{i} ({n})" for i, n in shown) or "none"), highlight=False)
    table = Table(title="rules: members they acted for / gave way for", title_justify="left")
    for col in ("rule", "acted (old)", "acted (new)", "gave way (old)", "gave way (new)"):
        table.add_column(col)
    for name, r in body["rules"].items():
        table.add_row(name, *(str(r[k]) for k in ("acted_old", "acted_new", "gave_way_old", "gave_way_new")))
    out.print(table)
