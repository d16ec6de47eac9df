from __future__ import annotations

import json
import logging

from service.logs import JsonFormatter


def test_log_lines_are_json_with_extra_fields() -> None:
    record = logging.LogRecord("mallrec", logging.WARNING, __file__, 1, "model %s live", ("v1",), None)
    record.version = "v1"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "model v1 live" and line["level"] == "warning" and line["version"] == "v1"
    assert line["ts"].endswith("Z")
