"""Deleting projects, VPCs and integrations (SPEC section 6), each run inside a write transaction
as the changes of `ops` are, answering an `ops.Outcome`.

A project with services is refused (409) unless `force`: then its services go first, with their
nodes, ports, integrations and policies (their agents get 404 from then on). A VPC is refused
while a service uses it. Deleting an integration recompiles the project's nodes (a node whose
policy stays the same keeps its version). Nothing here deletes tokens: a node token names a node,
not a row, and may outlive it.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodewall.server import policies
from nodewall.server.errors import ApiError
from nodewall.server.ops import Outcome, _refresh, _validate
from nodewall.server.state import get_project, project_doc
from nodewall.store.models import (
    IntegrationRow,
    NodeRow,
    NodeStatusRow,
    ProjectRow,
    ServicePortRow,
    ServiceRow,
    VpcRow,
)


def delete_project(session: Session, project_name: str, force: bool = False) -> Outcome:
    project = get_project(session, project_name)
    services = session.execute(select(ServiceRow.id, ServiceRow.name).where(
        ServiceRow.project_id == project.id).order_by(ServiceRow.id)).all()
    if services and not force:
        names = ", ".join(s.name for s in services)
        raise ApiError(409, f"Project '{project_name}' still has {len(services)} service(s) "
                            f"({names}): delete them first, or ask with ?force=true")
    ids = [s.id for s in services]
    gone: list[str] = []
    if ids:
        gone = list(session.execute(select(NodeRow.name).where(
            NodeRow.service_id.in_(ids))).scalars())
        session.execute(delete(IntegrationRow).where(IntegrationRow.project_id == project.id))
        session.execute(delete(NodeRow).where(NodeRow.service_id.in_(ids)))
        session.execute(delete(ServicePortRow).where(ServicePortRow.service_id.in_(ids)))
        session.execute(delete(ServiceRow).where(ServiceRow.id.in_(ids)))
    if gone:
        session.execute(delete(NodeStatusRow).where(NodeStatusRow.node_name.in_(gone)))
    vpcs = list(session.execute(select(VpcRow.project_vpc_id).where(
        VpcRow.project_id == project.id).order_by(VpcRow.id)).scalars())
    session.execute(delete(VpcRow).where(VpcRow.project_id == project.id))
    session.execute(delete(ProjectRow).where(ProjectRow.id == project.id))
    changed = policies.drop(session, gone)
    return Outcome({"message": "deleted"}, changed, {
        "action": "project.delete", "force": force, "services": [s.name for s in services],
        "vpcs": vpcs, "nodes": sorted(gone)}, project_name)


def delete_vpc(session: Session, project_name: str, vpc_id: str) -> Outcome:
    project = get_project(session, project_name)
    row = session.execute(select(VpcRow).where(
        VpcRow.project_id == project.id, VpcRow.project_vpc_id == vpc_id)).scalar_one_or_none()
    if row is None:
        raise ApiError(404, f"VPC '{vpc_id}' does not exist in project '{project_name}'")
    users = list(session.execute(select(ServiceRow.name).where(
        ServiceRow.vpc_id == row.id).order_by(ServiceRow.id)).scalars())
    if users:
        raise ApiError(409, f"VPC '{vpc_id}' is still used by {len(users)} service(s) "
                            f"({', '.join(users)})")
    session.execute(delete(VpcRow).where(VpcRow.id == row.id))
    return Outcome({"message": "deleted"}, [], {
        "action": "vpc.delete", "project_vpc_id": vpc_id, "cloud_name": row.cloud_name,
        "network_cidr": row.network_cidr, "peer_cidrs": list(row.peer_cidrs)}, project_name)


def delete_integration(session: Session, project_name: str, integration_id: int) -> Outcome:
    project = get_project(session, project_name)
    row = session.execute(select(IntegrationRow).where(
        IntegrationRow.project_id == project.id,
        IntegrationRow.id == integration_id)).scalar_one_or_none()
    if row is None:
        raise ApiError(404, f"Integration {integration_id} does not exist in project "
                            f"'{project_name}'")
    names = dict(session.execute(select(ServiceRow.id, ServiceRow.name).where(
        ServiceRow.project_id == project.id)).tuples().all())
    summary = {"action": "integration.delete", "integration_id": row.id,
               "integration_type": row.integration_type,
               "source_service": names[row.source_service_id],
               "dest_service": names.get(row.dest_service_id) if row.dest_service_id else None}
    session.execute(delete(IntegrationRow).where(IntegrationRow.id == row.id))
    doc = project_doc(session, project)
    spec = _validate(doc.document, lambda _p: None)
    changed = _refresh(session, doc, spec, set(spec.node_names))
    return Outcome({"message": "deleted"}, changed, summary, project_name)
