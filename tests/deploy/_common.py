"""Helpers of the deploy checks: the files under deploy/, `mallrec` argv parsed by the real CLI, and the
metric series the service really exposes.

Nothing here needs a container runtime: a command line in a Dockerfile, compose file or Kubernetes
manifest is parsed by the same typer/click command `mallrec` runs (unknown flags, missing required
options, values of the wrong type all fail), without running it.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer.main
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
RULES = DEPLOY / "rules" / "rules.toml"

#: Flags the deploy files already use that the CLI is getting in a change still in flight:
#: (command, flag) -> whether the flag takes a value. While the CLI lacks one, it is dropped (with its
#: value) before parsing, and the check says so; once the CLI has it, it is parsed like any other.
#: Remove an entry once its change has landed.
PENDING_FLAGS: dict[tuple[str, str], bool] = {
    # e.g. ("train", "--since"): True  (was pending until `train --since` landed)
}

#: Metric series the dashboard may query before the service defines them (changes in flight).
#: Remove an entry once `service.metrics` has it; the dashboard test then checks it like the rest.
PENDING_SERIES: dict[str, str] = {
    # e.g. "mallrec_redis_up": "gauge"  (was pending until it landed in service.metrics)
}


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a file."""
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


@functools.cache
def root_command() -> Any:
    from service.cli import app

    return typer.main.get_command(app)


@dataclass
class Parsed:
    """One `mallrec ...` command line, as the CLI parses it."""

    argv: list[str]
    path: tuple[str, ...]  # the subcommand: ("serve",), ("rules", "check")
    params: dict[str, Any]  # the command's parameters after parsing (types converted)
    flags: dict[str, str | bool] = field(default_factory=dict)  # "--host" -> "0.0.0.0" as written
    pending: list[str] = field(default_factory=list)  # PENDING_FLAGS the CLI does not have yet

    @property
    def command(self) -> str:
        return " ".join(self.path)


def _is_group(cmd: Any) -> bool:
    return isinstance(getattr(cmd, "commands", None), dict)


def command_options(cmd: Any) -> tuple[set[str], set[str]]:
    """(every option string of ``cmd``, the ones that take a value)."""
    known: set[str] = set()
    valued: set[str] = set()
    for p in cmd.params:
        if getattr(p, "param_type_name", "") != "option":
            continue
        names = [*p.opts, *getattr(p, "secondary_opts", [])]
        known.update(names)
        if not getattr(p, "is_flag", False) and not getattr(p, "count", False):
            valued.update(p.opts)
    return known, valued


def parse_mallrec(argv: list[Any]) -> Parsed:
    """Parse ``mallrec ARGV`` with the real CLI; AssertionError naming the problem when it would not run."""
    argv = [str(a) for a in argv]
    where = "`mallrec " + " ".join(argv) + "`"
    cmd = root_command()
    path: list[str] = []
    i = 0
    while _is_group(cmd):
        assert i < len(argv) and not argv[i].startswith("-"), f"{where}: no subcommand"
        name = argv[i]
        assert name in cmd.commands, (f"{where}: no command {' '.join([*path, name])!r} "
                                      f"(there are: {', '.join(sorted(cmd.commands))})")
        cmd = cmd.commands[name]
        path.append(name)
        i += 1
    rest = argv[i:]
    known, valued = command_options(cmd)
    cleaned: list[str] = []
    pending: list[str] = []
    flags: dict[str, str | bool] = {}
    j = 0
    while j < len(rest):
        tok = rest[j]
        flag, eq, inline = tok.partition("=")
        is_opt = tok.startswith("--")
        value = inline if eq else (rest[j + 1] if j + 1 < len(rest) else "")
        step = 1
        if is_opt and flag not in known and (" ".join(path), flag) in PENDING_FLAGS:
            takes = PENDING_FLAGS[(" ".join(path), flag)]
            pending.append(flag)
            flags[flag] = value if takes else True
            j += 2 if takes and not eq else 1
            continue
        if is_opt and flag in valued:
            flags[flag] = value
            step = 1 if eq else 2
        elif is_opt and flag in known:
            flags[flag] = True
        cleaned.extend(rest[j:j + step])
        j += step
    try:
        ctx = cmd.make_context("mallrec " + " ".join(path), cleaned)
    except Exception as e:  # click's UsageError / BadParameter (typer vendors click: no public class)
        if hasattr(e, "format_message"):
            raise AssertionError(f"{where}: {e.format_message()}") from None
        raise
    return Parsed(argv=argv, path=tuple(path), params=dict(ctx.params), flags=flags, pending=pending)


@dataclass(frozen=True)
class Series:
    """One series name the service exposes."""

    kind: str  # "counter" (rate() applies: *_total, *_bucket, *_sum, *_count), "gauge", "info"
    labels: frozenset[str] | None  # None: any (info metrics, collectors without declared labels)


def _series_of(collector: Any) -> dict[str, Series]:
    # prometheus_client keeps a metric's name, type and label names in _name/_type/_labelnames (stable
    # for years; no public accessor gives label names before a child exists)
    name, kind = getattr(collector, "_name", None), getattr(collector, "_type", None)
    labels = frozenset(getattr(collector, "_labelnames", ()))
    if name is None or kind is None:
        return {}
    if kind == "counter":
        return {f"{name}_total": Series("counter", labels), f"{name}_created": Series("gauge", labels)}
    if kind == "histogram":
        with_le = labels | {"le"}
        return {f"{name}_bucket": Series("counter", with_le), f"{name}_sum": Series("counter", labels),
                f"{name}_count": Series("counter", labels), f"{name}_created": Series("gauge", labels)}
    if kind == "info":
        return {f"{name}_info": Series("info", None)}
    return {name: Series("gauge" if kind in ("gauge", "unknown") else kind, labels)}


@functools.cache
def service_series() -> dict[str, Series]:
    """Every series a `serve` process (with a rules file) and a `sink` process expose: the registry of an
    app wired by ``service.app.build`` exactly as `mallrec serve --rules ... --log ...` wires it (the
    sink's metrics included), without starting it: no port, no Redis connection."""
    from service.app import build
    from service.settings import Settings
    from service.state.memory import InMemoryStateStore

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(models_dir=Path(tmp), rules_path=RULES, redis_url="redis://127.0.0.1:9/0",
                            log_dir=Path(tmp) / "log")
        registry = build(settings, state=InMemoryStateStore()).metrics.registry
    out: dict[str, Series] = {}
    names_to_collectors = getattr(registry, "_names_to_collectors", {})
    for collector in set(names_to_collectors.values()):
        out.update(_series_of(collector))
    for series_name, collector in names_to_collectors.items():  # process_*, python_info: no _type
        if series_name not in out and not hasattr(collector, "_type"):
            out[series_name] = Series("counter" if series_name.endswith("_total") else "gauge", None)
    return out


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def sink_metrics_address(parsed: Parsed) -> str:
    """The address `mallrec sink` serves its metrics on for this command line: its --metrics-host when
    the CLI has one, else the default of ``Metrics.serve``."""
    import inspect

    from service.metrics import Metrics

    host = parsed.flags.get("--metrics-host")
    if isinstance(host, str) and host:
        return host
    return str(inspect.signature(Metrics.serve).parameters["addr"].default)


def sink_has_metrics_host_flag() -> bool:
    return "--metrics-host" in command_options(root_command().commands["sink"])[0]
