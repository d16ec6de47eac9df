"""JSON logs on stderr: one object per line, with whatever ``extra={...}`` a call adds."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{record.msecs:03.0f}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, marked so that ``configure`` again replaces it and keeps the others."""

    _mallrec = True


def configure(level: str = "INFO") -> None:
    """Route the root logger to stderr as JSON (idempotent: replaces our handler, keeps others)."""
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_mallrec", False)]
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
