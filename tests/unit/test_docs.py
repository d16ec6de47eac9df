"""The docs name everything an operator can run or watch: every `mallrec` command (subgroups included,
such as `mallrec rules check`) and every Prometheus metric the service defines appear somewhere in
README.md or docs/*.md. A new command or metric fails this test until a line documents it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import typer.main

from service.cli import app
from service.metrics import Metrics
from training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: prometheus_client's metric classes; the first argument of each is the metric's name.
_METRIC = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*(?:name\s*=\s*)?"
                     r"[\"']([A-Za-z_:][\w:]*)[\"']")
#: the suffixes the exposition adds: counters are `<name>_total`, info metrics `<name>_info`.
_SUFFIXES = ("", "_total", "_info")


def docs_text() -> str:
    return "\n".join(p.read_text() for p in DOCS if p.is_file())


def commands(group: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every leaf command under ``group`` (typer's click group) as "rules check", walking subgroups."""
    out: list[str] = []
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):  # a group (typer vendors click: no isinstance against click's)
            out += commands(cmd, (*prefix, name))
        else:
            out.append(" ".join((*prefix, name)))
    return out


def metric_names() -> set[str]:
    """Metrics of ``service.metrics.Metrics`` (from its registry) and any created elsewhere under
    service/ (a scan of the source for prometheus_client constructors with a literal name)."""
    # prometheus_client's own process_* / python_* collectors are not ours to document one by one
    names = {m.name for m in Metrics().registry.collect() if m.name.startswith("mallrec_")}
    for path in (ROOT / "service").rglob("*.py"):
        if "gen" in path.relative_to(ROOT / "service").parts:
            continue
        text = path.read_text()
        if "prometheus_client" not in text:
            continue
        names.update(_METRIC.findall(text))
    return names


def undocumented_commands(names: list[str], text: str) -> list[str]:
    return [n for n in names
            if not re.search(r"\bmallrec\s+" + r"\s+".join(map(re.escape, n.split())) + r"\b", text)]


def undocumented_metrics(names: set[str], text: str) -> list[str]:
    def found(name: str) -> bool:
        base = re.sub(r"_total$", "", name)
        forms = "|".join(re.escape(base + s) for s in _SUFFIXES)
        return re.search(rf"(?<![\w]){'(?:' + forms + ')'}(?![\w])", text) is not None

    return sorted(n for n in names if not found(n))


def test_every_command_is_documented():
    names = commands(typer.main.get_command(app))
    assert "train" in names and "rules check" in names, names  # the walk reaches subgroups
    missing = undocumented_commands(names, docs_text())
    assert not missing, f"commands no doc mentions (add them to README.md's table or docs/): {missing}"


def test_every_metric_is_documented():
    names = metric_names()
    assert {"mallrec_requests", "mallrec_rules_reload_failures"} <= names, names  # both sources seen
    missing = undocumented_metrics(names, docs_text())
    assert not missing, f"metrics no doc mentions (add them to docs/operations.md): {missing}"


def test_the_checks_catch_what_is_missing():
    text = "run `mallrec rules check FILE`; watch mallrec_requests_total and mallrec_model_info"
    assert undocumented_commands(["rules check", "rules preview", "train"], text) == [
        "rules preview", "train"]
    # a prefix is not a mention: mallrec_model_info documents mallrec_model, not its longer siblings
    assert undocumented_metrics({"mallrec_requests", "mallrec_model", "mallrec_model_reload_failures",
                                 "mallrec_request_seconds"}, text) == ["mallrec_model_reload_failures",
                                                                       "mallrec_request_seconds"]


def test_training_config_example_validates():
    """docs/training.md's documented config is one `train` accepts, with the defaults it says."""
    text = (ROOT / "docs" / "training.md").read_text()
    block = re.search(r"```toml\n(blend_popularity.*?)```", text, re.S)
    assert block, "docs/training.md lost its training config example"
    documented = TrainConfig.model_validate(tomllib.loads(block.group(1)))
    defaults = TrainConfig()
    assert documented.als == defaults.als and documented.weighting == defaults.weighting
    assert documented.reranker == defaults.reranker and documented.index == defaults.index


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


def test_doc_links_resolve():
    """Relative links between the docs point at files (and headings) that exist."""
    broken = []
    for doc in DOCS:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", doc.read_text()):
            if "://" in target:
                continue
            path = (doc.parent / target) if target else doc
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
                broken.append(f"{doc.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, broken
