"""The stored state of one project as a deployment spec: what the compiler and the validator
read. Stored ports go in as pins, so a compiled policy always uses the ports the store holds.

Reads only; it never writes, allocates or compiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewall.server.errors import ApiError
from nodewall.store.models import (
    IntegrationRow,
    NodeRow,
    PlatformRow,
    ProjectRow,
    ServicePortRow,
    ServiceRow,
    VpcRow,
)

#: Stands in for the management networks while the platform is not configured yet, so that a
#: project can be validated; no policy is compiled from it.
PLACEHOLDER_NETWORKS = ["192.0.2.0/32"]


@dataclass
class ProjectDoc:
    """A project's spec document plus where each object sits in it (for error paths)."""

    document: dict[str, Any]
    configured: bool  # False: platform settings missing, validate only
    service_index: dict[str, int] = field(default_factory=dict)

    @property
    def services(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.document["services"]
        return result

    def add_service(self, entry: dict[str, Any]) -> int:
        self.services.append(entry)
        self.service_index[entry["name"]] = len(self.services) - 1
        return len(self.services) - 1


def management_networks(session: Session) -> list[str] | None:
    row = session.get(PlatformRow, 1)
    return None if row is None or not row.management_networks else list(row.management_networks)


def get_project(session: Session, name: str) -> ProjectRow:
    row = session.execute(select(ProjectRow).where(ProjectRow.name == name)).scalar_one_or_none()
    if row is None:
        raise ApiError(404, f"Project '{name}' does not exist")
    return row


def get_service(session: Session, project: ProjectRow, name: str) -> ServiceRow:
    row = session.execute(
        select(ServiceRow).where(ServiceRow.project_id == project.id, ServiceRow.name == name)
    ).scalar_one_or_none()
    if row is None:
        raise ApiError(404, f"Service '{name}' does not exist in project '{project.name}'")
    return row


def project_doc(session: Session, project: ProjectRow) -> ProjectDoc:
    """The project's whole spec document as stored now."""
    networks = management_networks(session)
    vpcs = session.execute(
        select(VpcRow).where(VpcRow.project_id == project.id).order_by(VpcRow.id)
    ).scalars().all()
    vpc_ids = {v.id: v.project_vpc_id for v in vpcs}
    services = session.execute(
        select(ServiceRow).where(ServiceRow.project_id == project.id).order_by(ServiceRow.id)
    ).scalars().all()
    service_ids = [s.id for s in services]
    names = {s.id: s.name for s in services}
    ports: dict[int, dict[str, int]] = {sid: {} for sid in service_ids}
    nodes: dict[int, list[dict[str, Any]]] = {sid: [] for sid in service_ids}
    if service_ids:
        for p in session.execute(
            select(ServicePortRow).where(ServicePortRow.service_id.in_(service_ids))
        ).scalars():
            ports[p.service_id][p.component] = p.port
        for n in session.execute(
            select(NodeRow).where(NodeRow.service_id.in_(service_ids)).order_by(NodeRow.id)
        ).scalars():
            nodes[n.service_id].append({"name": n.name, "addresses": list(n.addresses)})
    integrations = session.execute(
        select(IntegrationRow).where(IntegrationRow.project_id == project.id)
        .order_by(IntegrationRow.id)
    ).scalars().all()
    doc = ProjectDoc(
        document={
            "platform": {"management_networks": networks or PLACEHOLDER_NETWORKS},
            "project": {"name": project.name, "base_port": project.base_port},
            "vpcs": [
                {"id": v.project_vpc_id, "cloud": v.cloud_name, "network_cidr": v.network_cidr,
                 "peer_cidrs": list(v.peer_cidrs)} for v in vpcs
            ],
            "services": [],
            "integrations": [
                {"type": i.integration_type, "source": names[i.source_service_id],
                 "dest": names[i.dest_service_id] if i.dest_service_id is not None else None}
                for i in integrations
            ],
        },
        configured=networks is not None,
    )
    for s in services:
        doc.add_service(service_entry(s, vpc_ids.get(s.vpc_id) if s.vpc_id else None,
                                      ports[s.id], nodes[s.id]))
    return doc


def service_entry(row: ServiceRow, vpc: str | None, ports: dict[str, int],
                  nodes: list[dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": row.name, "type": row.service_type, "cloud": row.cloud_name, "vpc": vpc,
        "environment": row.environment, "user_config": dict(row.user_config),
        "ports": dict(ports), "nodes": nodes,
    }
    if row.socks5_proxy is not None:
        entry["socks5_proxy"] = row.socks5_proxy
    return entry
