"""The fleet view: per node, the version the control plane wants and what its agent last said.

A node *lags* when its agent has not reported the desired version: it applied an older one, it
reported an error, or it never reported at all. Lagging nodes also say since when the desired
version has waited (`behind_seconds`, from the time of the change that made it). Read only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewall.server.errors import ApiError
from nodewall.server.state import get_project
from nodewall.store.models import NodePolicyRow, NodeRow, NodeStatusRow, ServiceRow


def _stamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def node_statuses(session: Session, project: str, service: str | None) -> list[dict[str, Any]]:
    """One entry per node of `project` (of `service` only, when given), by service and node."""
    row = get_project(session, project)
    query = (select(ServiceRow.name, NodeRow.name, NodePolicyRow.version,
                    NodePolicyRow.updated_at, NodeStatusRow)
             .join(NodeRow, NodeRow.service_id == ServiceRow.id)
             .outerjoin(NodePolicyRow, NodePolicyRow.node_name == NodeRow.name)
             .outerjoin(NodeStatusRow, NodeStatusRow.node_name == NodeRow.name)
             .where(ServiceRow.project_id == row.id)
             .order_by(ServiceRow.name, NodeRow.name))
    if service is not None:
        if session.execute(select(ServiceRow.id).where(
                ServiceRow.project_id == row.id, ServiceRow.name == service)).first() is None:
            raise ApiError(404, f"Service '{service}' does not exist")
        query = query.where(ServiceRow.name == service)
    now = datetime.now(UTC).timestamp()
    out = []
    for service_name, node, desired, changed, status in session.execute(query):
        applied = status.applied_version if status is not None else None
        error = status.error if status is not None else None
        lagging = desired is not None and (applied != desired or error is not None)
        changed_at = _stamp(changed)
        out.append({
            "service": service_name, "node": node, "desired_version": desired,
            "applied_version": applied, "backend": status.backend if status else None,
            "error": error, "reported_at": _stamp(status.reported_at) if status else None,
            "lagging": lagging,
            "behind_seconds": round(now - changed_at, 3) if lagging and changed_at else None,
        })
    return out
