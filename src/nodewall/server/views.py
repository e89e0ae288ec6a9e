"""What the API answers about stored objects: a service with its components (ports and routes)
and nodes (addresses, policy version, last reported status). Read-only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodewall import catalogue
from nodewall.spec.model import DeploymentSpec, IntegrationSpec, ServiceSpec, UserConfig
from nodewall.store.models import (
    IntegrationRow,
    NodePolicyRow,
    NodeRow,
    NodeStatusRow,
    ServicePortRow,
    ServiceRow,
    VpcRow,
)


def enabled_components(row: ServiceRow, has_prometheus: bool) -> list[catalogue.Component]:
    """The components the service runs now (the compiler's rule), catalogue order."""
    from nodewall.compiler.components import enabled_components as compiler_enabled

    integrations = ([IntegrationSpec.model_construct(type="prometheus", source=row.name,
                                                      dest=None)] if has_prometheus else [])
    spec = DeploymentSpec.model_construct(integrations=integrations)
    service = ServiceSpec.model_construct(name=row.name, type=row.service_type,
                                          user_config=UserConfig.model_validate(row.user_config))
    return compiler_enabled(spec, service)


def stored_ports(session: Session, service_id: int) -> dict[str, int]:
    return {
        p.component: p.port
        for p in session.execute(
            select(ServicePortRow).where(ServicePortRow.service_id == service_id)
        ).scalars()
    }


def node_view(node: NodeRow, policy_version: str | None,
              status: NodeStatusRow | None) -> dict[str, Any]:
    return {
        "name": node.name,
        "addresses": list(node.addresses),
        "policy_version": policy_version,
        "applied_version": status.applied_version if status else None,
        "backend": status.backend if status else None,
        "error": status.error if status else None,
    }


def service_view(session: Session, row: ServiceRow) -> dict[str, Any]:
    ports = stored_ports(session, row.id)
    has_prometheus = session.execute(
        select(IntegrationRow.id).where(IntegrationRow.source_service_id == row.id,
                                        IntegrationRow.integration_type == "prometheus")
    ).first() is not None
    components = [
        {"component": c.name, "port": ports[c.name] if c.takes_service_port else c.fixed_port,
         "route": c.route}
        for c in enabled_components(row, has_prometheus)
        if not c.takes_service_port or c.name in ports
    ]
    nodes = session.execute(
        select(NodeRow).where(NodeRow.service_id == row.id).order_by(NodeRow.id)
    ).scalars().all()
    names = [n.name for n in nodes]
    versions: dict[str, str] = {}
    statuses: dict[str, NodeStatusRow] = {}
    if names:
        versions = dict(session.execute(
            select(NodePolicyRow.node_name, NodePolicyRow.version)
            .where(NodePolicyRow.node_name.in_(names))
        ).all())
        statuses = {s.node_name: s for s in session.execute(
            select(NodeStatusRow).where(NodeStatusRow.node_name.in_(names))).scalars()}
    vpc = session.get(VpcRow, row.vpc_id) if row.vpc_id is not None else None
    return {
        "service_name": row.name,
        "service_type": row.service_type,
        "cloud_name": row.cloud_name,
        "project_vpc_id": vpc.project_vpc_id if vpc else None,
        "environment": row.environment,
        "socks5_proxy": row.socks5_proxy,
        "user_config": dict(row.user_config),
        "components": components,
        "nodes": [node_view(n, versions.get(n.name), statuses.get(n.name)) for n in nodes],
    }


def vpc_view(row: VpcRow) -> dict[str, Any]:
    return {"project_vpc_id": row.project_vpc_id, "cloud_name": row.cloud_name,
            "network_cidr": row.network_cidr, "peer_cidrs": list(row.peer_cidrs),
            "state": "ACTIVE"}


def integration_views(session: Session, project_id: int,
                      rows: Sequence[IntegrationRow]) -> list[dict[str, Any]]:
    names = dict(session.execute(select(ServiceRow.id, ServiceRow.name).where(
        ServiceRow.project_id == project_id)).tuples().all())
    return [{"integration_id": r.id, "integration_type": r.integration_type,
             "source_service": names[r.source_service_id],
             "dest_service": names[r.dest_service_id] if r.dest_service_id else None}
            for r in rows]
