"""Structured logs of the agent: one JSON object per line on stderr, one line per event.

Every line has `time` (UTC, ISO 8601 with microseconds), `level` and `event`, then the event's
fields. Library messages (`logging` records of the backends) come out in the same shape, with
event `log`. It must never be handed a token or customer text: callers pass nodewall's own
words, versions, counts and the kernel's or the network's error messages.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

_lock = threading.Lock()
_stream: TextIO = sys.stderr
_fields: dict[str, Any] = {}


def configure(stream: TextIO | None = None, **fields: Any) -> None:
    """Send events to `stream` (default stderr), each carrying `fields` (e.g. the node name);
    route `logging` records (warnings and above, and the backends' info) there too."""
    global _stream
    _stream = stream if stream is not None else sys.stderr
    _fields.clear()
    _fields.update(fields)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_Handler())
    root.setLevel(logging.WARNING)
    logging.getLogger("nodewall").setLevel(logging.INFO)
    threading.excepthook = _thread_died


def _thread_died(args: threading.ExceptHookArgs) -> None:
    import traceback

    where = traceback.extract_tb(args.exc_traceback)[-3:] if args.exc_traceback else []
    event("thread_died", "critical", thread=args.thread.name if args.thread else None,
          error=f"{args.exc_type.__name__}: {args.exc_value}",
          at=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in where])


def event(name: str, /, level: str = "info", **fields: Any) -> None:
    """Write one event line."""
    record = {"time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
              "level": level, "event": name, **_fields, **fields}
    line = json.dumps(record, default=str, ensure_ascii=True, separators=(",", ":"))
    with _lock:
        try:
            _stream.write(line + "\n")
            _stream.flush()
        except (OSError, ValueError):
            pass  # stderr gone (journald restarted): nothing better to do than go on


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed library message must not stop the agent
            message = str(record.msg)
        event("log", record.levelname.lower(), logger=record.name, message=message)
