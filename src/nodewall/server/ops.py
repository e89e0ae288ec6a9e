"""The state changes of the control plane, one function each, run inside a write transaction.

Each change is applied to the project's spec document first and validated by the spec model
(`nodewall.spec.parse_spec`) as a whole; only a valid result is written, so bad input leaves the
store exactly as it was (the caller's transaction rolls back on any error). Each returns the
answer, the nodes whose policy version changed, and the summary the audit trail records (empty:
nothing changed, nothing recorded). A summary holds nodewall's words, object names, addresses and
networks, never an ip_filter description (`ip_filter_networks`). Ports are drawn once, at service
creation, and never rewritten.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodewall.catalogue.allocation import allocate_ports
from nodewall.errors import SpecError
from nodewall.server import policies, schemas
from nodewall.server.errors import (
    INTEGRATION_FIELDS,
    NODE_FIELDS,
    SERVICE_FIELDS,
    VPC_FIELDS,
    ApiError,
    spec_error,
    under,
)
from nodewall.server.state import (
    PLACEHOLDER_NETWORKS,
    ProjectDoc,
    get_project,
    get_service,
    project_doc,
)
from nodewall.server.views import node_view, service_view, vpc_view
from nodewall.spec.load import parse_spec, validate_user_config
from nodewall.spec.model import DeploymentSpec
from nodewall.store.models import (
    IntegrationRow,
    NodePolicyRow,
    NodeRow,
    NodeStatusRow,
    PlatformRow,
    ProjectRow,
    ServicePortRow,
    ServiceRow,
    VpcRow,
    utcnow,
)


@dataclass
class Outcome:
    body: dict[str, Any]
    changed: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    project: str | None = None  # the project whose audit trail records it; None: platform


def ip_filter_networks(ip_filter: Any) -> list[str]:
    """The networks of an ip_filter value as given (strings or {network, description}
    objects), descriptions left out; the default when absent."""
    if ip_filter is None:
        return ["0.0.0.0/0", "::/0"]
    if not isinstance(ip_filter, list):
        return []
    return [str(e["network"]) if isinstance(e, dict) and "network" in e else str(e)
            for e in ip_filter if isinstance(e, str | dict)]


def _config_summary(before: dict[str, Any], after: dict[str, Any],
                    touched: set[str]) -> dict[str, Any]:
    """Which user_config keys changed; for ip_filter the networks added and removed; other
    keys' new values (toggles and settings of nodewall's schema, no free text)."""
    result: dict[str, Any] = {"user_config_keys": sorted(touched)}
    if "ip_filter" in touched:
        old = ip_filter_networks(before.get("ip_filter"))
        new = ip_filter_networks(after.get("ip_filter"))
        result["ip_filter"] = {"added": [n for n in new if n not in old],
                               "removed": [n for n in old if n not in new]}
    others = {k: after.get(k) for k in sorted(touched - {"ip_filter"})}
    if others:
        result["settings"] = others
    return result


def _validate(document: dict[str, Any], relocate: Callable[[str], str | None]) -> DeploymentSpec:
    try:
        return parse_spec(document)
    except SpecError as exc:
        raise spec_error(exc, relocate) from None


def _refresh(session: Session, doc: ProjectDoc, spec: DeploymentSpec,
             nodes: set[str]) -> list[str]:
    return policies.refresh(session, spec, nodes) if doc.configured else []


# --- platform and projects ----------------------------------------------------------------

def set_platform(session: Session, body: schemas.PlatformIn) -> Outcome:
    networks = list(body.management_networks)
    _validate({"platform": {"management_networks": networks}, "project": {"name": "p"}},
              lambda p: under("platform", p))
    row = session.get(PlatformRow, 1)
    assert row is not None, "migration 0001 inserts the platform row"
    changed: list[str] = []
    differs = row.management_networks != networks
    if differs:
        row.management_networks = networks
        session.flush()
        for project in session.execute(select(ProjectRow)).scalars():
            doc = project_doc(session, project)
            spec = _validate(doc.document, lambda _p: None)
            changed += _refresh(session, doc, spec, set(spec.node_names))
    summary = {"action": "platform.set", "management_networks": networks} if differs else {}
    return Outcome({"management_networks": networks}, changed, summary)


def create_project(session: Session, body: schemas.ProjectIn) -> Outcome:
    names = {"project.name": "project", "project.base_port": "base_port"}
    _validate({"platform": {"management_networks": PLACEHOLDER_NETWORKS},
               "project": {"name": body.project, "base_port": body.base_port}},
              lambda p: names.get(p, p))
    if session.execute(select(ProjectRow.id).where(ProjectRow.name == body.project)).first():
        raise ApiError(409, f"Project '{body.project}' already exists")
    session.add(ProjectRow(name=body.project, base_port=body.base_port))
    return Outcome({"project": {"project_name": body.project, "base_port": body.base_port}},
                   summary={"action": "project.create", "base_port": body.base_port},
                   project=body.project)


def create_vpc(session: Session, project_name: str, body: schemas.VpcIn) -> Outcome:
    project = get_project(session, project_name)
    doc = project_doc(session, project)
    vpc_id = "vpc-" + secrets.token_hex(8)
    vpcs: list[dict[str, Any]] = doc.document["vpcs"]
    vpcs.append({"id": vpc_id, "cloud": body.cloud_name, "network_cidr": body.network_cidr,
                 "peer_cidrs": list(body.peer_cidrs)})
    index = len(vpcs) - 1
    _validate(doc.document, lambda p: under(f"vpcs[{index}]", p, VPC_FIELDS))
    row = VpcRow(project_vpc_id=vpc_id, project_id=project.id, cloud_name=body.cloud_name,
                 network_cidr=body.network_cidr, peer_cidrs=list(body.peer_cidrs))
    session.add(row)
    return Outcome(vpc_view(row), summary={
        "action": "vpc.create", "project_vpc_id": vpc_id, "cloud_name": body.cloud_name,
        "network_cidr": body.network_cidr, "peer_cidrs": list(body.peer_cidrs)},
        project=project_name)


# --- services ----------------------------------------------------------------------------

def create_service(session: Session, project_name: str, body: schemas.ServiceIn) -> Outcome:
    project = get_project(session, project_name)
    doc = project_doc(session, project)
    if body.service_name in doc.service_index:
        raise ApiError(409, f"Service '{body.service_name}' already exists")
    entry: dict[str, Any] = {
        "name": body.service_name, "type": body.service_type, "cloud": body.cloud_name,
        "vpc": body.project_vpc_id, "user_config": body.user_config or {}, "nodes": [],
    }
    if body.environment is not None:
        entry["environment"] = body.environment
    if body.socks5_proxy is not None:
        entry["socks5_proxy"] = body.socks5_proxy
    index = doc.add_service(entry)
    spec = _validate(doc.document, lambda p: under(f"services[{index}]", p, SERVICE_FIELDS))
    created = spec.services[index]
    ports = allocate_ports(created.type, project.base_port, {}, secrets.randbelow(2**31))
    vpc_row = None
    if created.vpc is not None:
        vpc_row = session.execute(
            select(VpcRow).where(VpcRow.project_vpc_id == created.vpc)).scalar_one()
    row = ServiceRow(
        project_id=project.id, name=created.name, service_type=created.type,
        cloud_name=created.cloud, vpc_id=vpc_row.id if vpc_row else None,
        environment=created.environment, socks5_proxy=created.socks5_proxy,
        user_config=dict(body.user_config or {}),
    )
    session.add(row)
    session.flush()
    session.add_all(ServicePortRow(service_id=row.id, component=c, port=p)
                    for c, p in ports.items())
    session.flush()
    return Outcome({"service": service_view(session, row)}, summary={
        "action": "service.create", "service": created.name, "service_type": created.type,
        "cloud_name": created.cloud, "project_vpc_id": created.vpc, "ports": ports,
        **_config_summary({}, row.user_config, set(row.user_config))}, project=project_name)


def merge_user_config(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Keys given replace those keys; a key given as null goes back to its default."""
    merged = {**current, **update}
    return {k: v for k, v in merged.items() if v is not None}


def update_service(session: Session, project_name: str, service_name: str,
                   body: schemas.ServiceUpdate) -> Outcome:
    project = get_project(session, project_name)
    row = get_service(session, project, service_name)
    merged = merge_user_config(row.user_config, body.user_config)
    try:
        validate_user_config(row.service_type, merged)
    except SpecError as exc:
        raise spec_error(exc, lambda p: p) from None
    doc = project_doc(session, project)
    index = doc.service_index[service_name]
    doc.services[index]["user_config"] = merged
    spec = _validate(doc.document, lambda p: under(f"services[{index}]", p, SERVICE_FIELDS))
    changed: list[str] = []
    summary: dict[str, Any] = {}
    if merged != row.user_config:
        touched = {k for k in set(merged) | set(row.user_config)
                   if merged.get(k) != row.user_config.get(k)}
        summary = {"action": "service.update", "service": service_name,
                   **_config_summary(row.user_config, merged, touched)}
        row.user_config = merged
        row.updated_at = utcnow()
        scope = (policies.nodes_of(spec, {service_name}) if touched <= {"ip_filter"}
                 else policies.node_change_scope(spec, service_name))
        changed = _refresh(session, doc, spec, scope)
    session.flush()
    return Outcome({"service": service_view(session, row)}, changed, summary, project_name)


def delete_service(session: Session, project_name: str, service_name: str) -> Outcome:
    project = get_project(session, project_name)
    row = get_service(session, project, service_name)
    doc = project_doc(session, project)
    spec = _validate(doc.document, lambda _p: None)
    gone = policies.nodes_of(spec, {service_name})
    session.execute(delete(IntegrationRow).where(
        (IntegrationRow.source_service_id == row.id) | (IntegrationRow.dest_service_id == row.id)))
    session.execute(delete(NodeRow).where(NodeRow.service_id == row.id))
    session.execute(delete(ServicePortRow).where(ServicePortRow.service_id == row.id))
    session.execute(delete(ServiceRow).where(ServiceRow.id == row.id))
    if gone:
        session.execute(delete(NodeStatusRow).where(NodeStatusRow.node_name.in_(gone)))
    changed = policies.drop(session, gone)
    doc = project_doc(session, project)
    spec = _validate(doc.document, lambda _p: None)
    # The service's integrations went with it, so the nodes they reached change too. Integration
    # sets are named by type and connector (`compiler.node._integrations`), not by position, so
    # no other node changes; refreshing the whole project finds the reached ones without tracking
    # them (deletions are rare), and a node whose policy is unchanged keeps its version.
    changed += _refresh(session, doc, spec, set(spec.node_names))
    return Outcome({"message": "deleted"}, changed, {
        "action": "service.delete", "service": service_name, "nodes": sorted(gone)},
        project_name)


# --- nodes --------------------------------------------------------------------------------

def put_node(session: Session, project_name: str, service_name: str, node_name: str,
             body: schemas.NodeIn) -> Outcome:
    project = get_project(session, project_name)
    service = get_service(session, project, service_name)
    existing = session.execute(
        select(NodeRow).where(NodeRow.name == node_name)).scalar_one_or_none()
    if existing is not None and existing.service_id != service.id:
        raise ApiError(409, f"Node '{node_name}' belongs to another service")
    addresses = list(body.addresses)
    if existing is not None and list(existing.addresses) == addresses:
        return Outcome({"node": node_view(existing, _version(session, node_name), None),
                        "message": "unchanged"}, project=project_name)
    doc = project_doc(session, project)
    index = doc.service_index[service_name]
    nodes: list[dict[str, Any]] = doc.services[index]["nodes"]
    position = next((j for j, n in enumerate(nodes) if n["name"] == node_name), None)
    if position is None:
        nodes.append({"name": node_name, "addresses": addresses})
        position = len(nodes) - 1
    else:
        nodes[position]["addresses"] = addresses
    prefix = f"services[{index}].nodes[{position}]"
    spec = _validate(doc.document, lambda p: under(prefix, p, NODE_FIELDS))
    summary: dict[str, Any] = {"service": service_name, "node": node_name,
                               "addresses": addresses}
    if existing is None:
        existing = NodeRow(name=node_name, service_id=service.id, addresses=addresses)
        session.add(existing)
        message = "added"
    else:
        summary["addresses_before"] = list(existing.addresses)
        existing.addresses = addresses
        message = "replaced"
    session.flush()
    changed = _refresh(session, doc, spec, policies.node_change_scope(spec, service_name))
    return Outcome({"node": node_view(existing, _version(session, node_name), None),
                    "message": message}, changed,
                   {"action": f"node.{'add' if message == 'added' else 'replace'}", **summary},
                   project_name)


def remove_node(session: Session, project_name: str, service_name: str,
                node_name: str) -> Outcome:
    project = get_project(session, project_name)
    service = get_service(session, project, service_name)
    row = session.execute(select(NodeRow).where(
        NodeRow.name == node_name, NodeRow.service_id == service.id)).scalar_one_or_none()
    if row is None:
        raise ApiError(404, f"Node '{node_name}' does not exist in service '{service_name}'")
    session.execute(delete(NodeRow).where(NodeRow.id == row.id))
    session.execute(delete(NodeStatusRow).where(NodeStatusRow.node_name == node_name))
    changed = policies.drop(session, [node_name])
    doc = project_doc(session, project)
    spec = _validate(doc.document, lambda _p: None)
    changed += _refresh(session, doc, spec, policies.node_change_scope(spec, service_name))
    return Outcome({"message": "deleted"}, changed, {
        "action": "node.remove", "service": service_name, "node": node_name,
        "addresses": list(row.addresses)}, project_name)


def _version(session: Session, node: str) -> str | None:
    return session.execute(select(NodePolicyRow.version).where(
        NodePolicyRow.node_name == node)).scalar_one_or_none()


# --- integrations --------------------------------------------------------------------------

def create_integration(session: Session, project_name: str,
                       body: schemas.IntegrationIn) -> Outcome:
    project = get_project(session, project_name)
    doc = project_doc(session, project)
    wanted = {"type": body.integration_type, "source": body.source_service,
              "dest": body.dest_service}
    integrations: list[dict[str, Any]] = doc.document["integrations"]
    if wanted in integrations:
        raise ApiError(409, "This integration already exists")
    integrations.append(wanted)
    index = len(integrations) - 1
    spec = _validate(doc.document,
                     lambda p: under(f"integrations[{index}]", p, INTEGRATION_FIELDS))
    ids = {s.name: s.id for s in session.execute(
        select(ServiceRow).where(ServiceRow.project_id == project.id)).scalars()}
    row = IntegrationRow(
        project_id=project.id, integration_type=body.integration_type,
        source_service_id=ids[body.source_service],
        dest_service_id=ids[body.dest_service] if body.dest_service else None)
    session.add(row)
    session.flush()
    ends = {body.source_service} | ({body.dest_service} if body.dest_service else set())
    changed = _refresh(session, doc, spec, policies.nodes_of(spec, ends))
    view = {"integration_id": row.id, "integration_type": body.integration_type,
            "source_service": body.source_service, "dest_service": body.dest_service}
    return Outcome({"service_integration": view}, changed,
                   {"action": "integration.create", **view}, project_name)


# --- node status ---------------------------------------------------------------------------

def report_status(session: Session, node_name: str, body: schemas.StatusIn) -> Outcome:
    if session.execute(select(NodeRow.id).where(NodeRow.name == node_name)).first() is None:
        raise ApiError(404, f"Node '{node_name}' does not exist")
    row = session.get(NodeStatusRow, node_name)
    if row is None:
        row = NodeStatusRow(node_name=node_name)
        session.add(row)
    row.applied_version, row.backend, row.error = body.applied_version, body.backend, body.error
    row.reported_at = utcnow()
    return Outcome({"node": node_name, "applied_version": body.applied_version,
                    "backend": body.backend, "error": body.error})
