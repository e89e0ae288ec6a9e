"""The database is unavailable: 503 with Retry-After, never a 500.

A PostgreSQL server restarting, a connection it ended (`pg_terminate_backend`, a failover), no
connection to be had within the store's wait, or a SQLite file another process holds locked
past the busy timeout: the request's transaction did not commit (or its outcome is not known
to this process), so nothing is half-written, and the client may retry. The answer is
`{"errors": [...], "message": "The database is unavailable (...); try again"}` with status 503
and `Retry-After: 1`. Other database errors (a bug) stay 500.

The log line names the exception's type and the SQLSTATE or SQLite's reason, never its message:
SQLAlchemy's messages quote the statement and its parameters (customer text).
"""

from __future__ import annotations

import logging

from sqlalchemy import exc as sa

log = logging.getLogger("nodewall.server")

RETRY_AFTER_SECONDS = 1
#: The exception classes whose handler asks `unavailable_reason`.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sa.DBAPIError, sa.TimeoutError)
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def unavailable_reason(error: BaseException) -> str | None:
    """A short reason when `error` means the database could not be reached or used in time;
    None for any other error."""
    if isinstance(error, sa.TimeoutError):
        return "no database connection free in time"
    if not isinstance(error, sa.OperationalError | sa.InterfaceError) and not (
            isinstance(error, sa.DBAPIError) and error.connection_invalidated):
        return None
    original = getattr(error, "orig", None)
    module = type(original).__module__ if original is not None else ""
    if module.startswith("sqlite3"):
        text = str(original).lower()
        return "SQLite file locked by another process" if any(
            s in text for s in _SQLITE_BUSY) else None
    sqlstate = getattr(original, "sqlstate", None)
    return f"PostgreSQL unreachable, SQLSTATE {sqlstate}" if sqlstate else \
        "PostgreSQL unreachable"


def log_unavailable(error: BaseException, reason: str) -> None:
    log.warning("database unavailable (%s): %s, answered 503", reason, type(error).__name__)


def unavailable_message(reason: str) -> str:
    return f"The database is unavailable ({reason}); try again"
