"""Credentials out of the server's log lines, wherever a client put them.

A token belongs in the Authorization header (which no log line prints), but clients also put
tokens in the URL (`?token=...`, `?access_token=...`, or a bare `nw_...` anywhere), and the
access log prints the URL. `RedactCredentials` is a logging filter for the server's handlers
that rewrites each record before it is formatted: nodewall tokens anywhere, the value of every
query parameter whose name suggests a secret, and `Bearer <credential>` become `<redacted>`.
It never keeps or forwards what it removes.
"""

from __future__ import annotations

import logging
import re

REDACTED = "<redacted>"
#: A nodewall token's text (`nodewall.server.auth.TOKEN_PREFIX` and url-safe base64).
_TOKEN = re.compile(r"nw_[A-Za-z0-9_\-%]{6,}")
#: A query (or matrix) parameter named like a secret, and its value up to the next separator.
_SECRET_PARAM = re.compile(
    r"(?i)([?&;][^=&;#\s]*(?:token|auth|key|secret|pass|pwd|credential|session|sig)"
    r"[^=&;#\s]*=)[^&;#\s]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)[^\s&;#\"']+")


def redact(text: str) -> str:
    text = _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _TOKEN.sub("nw_" + REDACTED, text)


class RedactCredentials(logging.Filter):
    """Rewrites the message and every string argument of each record (the access log's
    formatter reads the arguments one by one, so their number and types stay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v
                           for k, v in record.args.items()}
        return True


def install(logger_names: tuple[str, ...] = ("", "uvicorn", "uvicorn.error",
                                             "uvicorn.access")) -> None:
    """Put the filter on every handler of these loggers (a handler's filter sees every
    record it writes, from any logger below)."""
    flt = RedactCredentials()
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactCredentials) for f in handler.filters):
                handler.addFilter(flt)
