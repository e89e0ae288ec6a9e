"""The audit trail's read route: `GET /v1/project/{project}/events`, newest first, paginated
(`?limit=`, `?cursor=` from the previous page's `next_cursor`). Admin tokens only. A deleted
project's events stay readable; a project that never existed is 404."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from nodewall.server import audit, paging, schemas
from nodewall.server.deps import READ_ERRORS, Admin, Name, StoreDep
from nodewall.server.errors import ApiError
from nodewall.server.guard import StrictJsonRoute
from nodewall.server.paging import Cursor, Limit
from nodewall.store.models import ProjectRow

router = APIRouter(route_class=StrictJsonRoute)


@router.get("/v1/project/{project}/events", response_model=schemas.EventList,
            responses=READ_ERRORS)
def list_events(project: Name, _: Admin, store: StoreDep, limit: Limit = paging.DEFAULT_LIMIT,
                cursor: Cursor = None) -> Any:
    with store.read_session() as session:
        exists = session.execute(select(ProjectRow.id).where(
            ProjectRow.name == project)).first() is not None
        if not exists and not audit.project_has_events(session, project):
            raise ApiError(404, f"Project '{project}' does not exist")
        events, following = audit.events_page(session, project, limit, paging.after(cursor))
        return {"events": events,
                "next_cursor": str(following) if following is not None else None}
