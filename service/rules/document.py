"""Read a rules file (TOML or YAML, by suffix) and remember the line of every value, so each error
can say where it is.

TOML is the primary format (``tomllib`` has no surprises). YAML is read with YAML 1.2 scalars:
only ``true``/``false`` are booleans and only plain digits are integers, so a brand called ``NO``
stays the text "NO" and an item id ``012`` is not read as octal 10; the strict schema then asks for
quotes where a number landed in a text field. Duplicate YAML keys are errors (PyYAML would keep the
last one silently).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass
class Document:
    data: dict[str, Any]
    fmt: str = "toml"
    lines: dict[Path_, int] = field(default_factory=dict)
    errors: list[tuple[int | None, str]] = field(default_factory=list)  # (line, why): unreadable parts

    def line(self, path: Path_) -> int | None:
        """The line of ``path``, else of its nearest ancestor that has one."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def file_format(path: Path) -> str:
    """yaml for .yaml/.yml, else toml (the primary format)."""
    return "yaml" if path.suffix.lower() in (".yaml", ".yml") else "toml"


def read(path: Path) -> Document:
    return parse(path.read_text(encoding="utf-8"), file_format(path))


def parse(text: str, fmt: str) -> Document:
    return _parse_yaml(text) if fmt == "yaml" else _parse_toml(text)


# ---------------------------------------------------------------- TOML


def _parse_toml(text: str) -> Document:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        return Document({}, errors=[(int(m.group(1)) if m else None, f"not valid TOML: {e}")])
    return Document(data, "toml", _toml_lines(text))


_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*$")


def _toml_lines(text: str) -> dict[Path_, int]:
    """Line of each table header and key, found by scanning the text (tomllib keeps no positions).

    Handles ``[a.b]``, ``[[a.b]]`` (arrays of tables, counted), ``key = value``, quoted keys, and
    multi-line arrays with one inline table per line (``sources = [`` / ``{ use = "als" },``)."""
    lines: dict[Path_, int] = {}
    arrays: dict[Path_, int] = {}  # array-of-tables path -> index of its last element
    table: Path_ = ()
    open_array: Path_ | None = None  # the key of a multi-line array being read
    element = 0
    depth = 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        if depth > 0:
            if open_array is not None and line.startswith("{") and depth == 1:
                lines.setdefault((*open_array, element), no)
                element += 1
            depth += _bracket_balance(line)
            continue
        header = _HEADER.match(line) if line.startswith("[") else None
        if header:
            parts = _split_key(header.group(2))
            key = (*_resolve(parts[:-1], arrays), *parts[-1:])
            if header.group(1) == "[[":
                arrays[key] = arrays.get(key, -1) + 1
                key = (*key, arrays[key])
            table = key
            lines.setdefault(table, no)
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            path = (*table, *_split_key(name))
            lines.setdefault(path, no)
            balance = _bracket_balance(value)
            if balance > 0:
                depth, open_array, element = balance, path, 0
                if value.strip().startswith("[") and value.strip()[1:].strip().startswith("{"):
                    lines.setdefault((*path, 0), no)
                    element = 1
    return lines


def _resolve(key: Path_, arrays: dict[Path_, int]) -> Path_:
    """``[rules.match]`` after ``[[rules]]`` means the last element of rules: insert the indices."""
    out: list[str | int] = []
    for part in key:
        out.append(part)
        if tuple(out) in arrays:
            out.append(arrays[tuple(out)])
    return tuple(out)


def _split_key(key: str) -> tuple[str, ...]:
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([^.\s]+)', key.strip())
    return tuple(a or b or c for a, b, c in parts)


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and (quote == "'" or line[i - 1] != "\\"):
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def _bracket_balance(text: str) -> int:
    quote, balance = None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and (quote == "'" or text[i - 1] != "\\"):
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            balance += 1
        elif ch in "]}":
            balance -= 1
    return balance


# ---------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and integers (see the module docstring)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))


def _yaml_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    return int(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _yaml_int)


def _parse_yaml(text: str) -> Document:
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader) if root is not None else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return Document({}, "yaml", errors=[(mark.line + 1 if mark else None, f"not valid YAML: {e}")])
    doc = Document(data if isinstance(data, dict) else {}, "yaml")
    if root is not None and not isinstance(data, dict):
        doc.errors.append((root.start_mark.line + 1, "the file must be a mapping (timezone, rules, slots)"))
    if root is not None:
        _walk(root, (), doc)
    return doc


def _walk(node: yaml.Node, path: Path_, doc: Document) -> None:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                doc.errors.append((key.start_mark.line + 1,
                                   f"{'.'.join(map(str, (*path, name)))}: key given twice"))
            seen.add(name)
            doc.lines.setdefault((*path, name), key.start_mark.line + 1)
            _walk(value, (*path, name), doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), doc)
