"""The audit trail: every accepted change of the platform's state, written in the change's own
transaction (so an event exists exactly when its change does), and read back newest first.

An event holds when, which token (its id: the row of the token table whose hash the request's
bearer token has; never the token's text or hash), the method, route template and path, the
change's summary (built by `ops` from nodewall's words, object names and networks, never an
ip_filter description) and the resulting version of every node whose policy version moved.
Refused requests are not stored (they are counted in metrics, see `server.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from nodewall.server.auth import hash_token
from nodewall.store.models import EventRow, TokenRow


@dataclass(frozen=True)
class Origin:
    """Where a change came from: the request's method, route template, path and bearer token
    (kept only until its id is looked up; never stored)."""

    method: str
    route: str
    path: str
    token: str | None = None


def token_id(session: Session, token: str | None) -> int | None:
    if not token:
        return None
    return session.execute(select(TokenRow.id).where(
        TokenRow.token_hash == hash_token(token))).scalar_one_or_none()


def record(session: Session, origin: Origin, project: str | None, summary: dict[str, Any],
           versions: dict[str, str | None]) -> EventRow:
    row = EventRow(token_id=token_id(session, origin.token), project=project,
                   method=origin.method, route=origin.route, path=origin.path,
                   summary=summary, versions=versions)
    session.add(row)
    return row


def event_view(row: EventRow) -> dict[str, Any]:
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)  # SQLite: naive UTC
    return {"id": row.id, "at": at.isoformat(), "token_id": row.token_id,
            "project": row.project, "method": row.method, "route": row.route,
            "path": row.path, "summary": row.summary, "versions": row.versions}


def project_has_events(session: Session, project: str) -> bool:
    return session.execute(select(EventRow.id).where(EventRow.project == project)
                           .limit(1)).first() is not None


def events_page(session: Session, project: str, limit: int,
                before: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the project's events and the platform-wide ones (which change every
    project's nodes), newest first; with `before`, only events older than that id. Returns
    the page and the cursor of the next one (None: this is the last)."""
    stmt = (select(EventRow).where(or_(EventRow.project == project, EventRow.project.is_(None)))
            .order_by(EventRow.id.desc()).limit(limit + 1))
    if before is not None:
        stmt = stmt.where(EventRow.id < before)
    rows = session.execute(stmt).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [event_view(r) for r in rows], (rows[-1].id if more and rows else None)
