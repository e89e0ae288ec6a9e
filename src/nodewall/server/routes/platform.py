"""Operators' routes (SPEC section 6): platform settings, projects, VPCs, services, nodes,
integrations. Admin tokens only. A change goes to `ops` through `Control` (one transaction,
then the held polls of the nodes it changed are woken); a read answers from the store."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from nodewall.server import fleet, ops, schemas
from nodewall.server.deps import ERRORS, READ_ERRORS, Admin, ControlDep, Name, StoreDep
from nodewall.server.guard import StrictJsonRoute
from nodewall.server.state import get_project, get_service
from nodewall.server.views import service_view, vpc_view
from nodewall.spec.model import NAME_PATTERN
from nodewall.store.models import ServiceRow, VpcRow

router = APIRouter(route_class=StrictJsonRoute)


# --- platform, projects, VPCs ----------------------------------------------------------------
@router.put("/v1/platform", response_model=schemas.PlatformOut, responses=ERRORS)
def put_platform(body: schemas.PlatformIn, _: Admin, control: ControlDep) -> Any:
    return control.change(ops.set_platform, body)


@router.post("/v1/project", response_model=schemas.ProjectOut, responses=ERRORS)
def create_project(body: schemas.ProjectIn, _: Admin, control: ControlDep) -> Any:
    return control.change(ops.create_project, body)


@router.post("/v1/project/{project}/vpcs", response_model=schemas.VpcOut, responses=ERRORS)
def create_vpc(project: Name, body: schemas.VpcIn, _: Admin, control: ControlDep) -> Any:
    return control.change(ops.create_vpc, project, body)


@router.get("/v1/project/{project}/vpcs", response_model=schemas.VpcList,
            responses=READ_ERRORS)
def list_vpcs(project: Name, _: Admin, store: StoreDep) -> Any:
    with store.read_session() as session:
        row = get_project(session, project)
        vpcs = session.execute(select(VpcRow).where(VpcRow.project_id == row.id)
                               .order_by(VpcRow.id)).scalars()
        return {"vpcs": [vpc_view(v) for v in vpcs]}


# --- services --------------------------------------------------------------------------------
@router.post("/v1/project/{project}/service", response_model=schemas.ServiceOut,
             responses=ERRORS)
def create_service(project: Name, body: schemas.ServiceIn, _: Admin,
                   control: ControlDep) -> Any:
    return control.change(ops.create_service, project, body)


@router.get("/v1/project/{project}/service", response_model=schemas.ServiceList,
            responses=READ_ERRORS)
def list_services(project: Name, _: Admin, store: StoreDep) -> Any:
    with store.read_session() as session:
        row = get_project(session, project)
        services = session.execute(select(ServiceRow).where(
            ServiceRow.project_id == row.id).order_by(ServiceRow.id)).scalars().all()
        return {"services": [service_view(session, s) for s in services]}


@router.get("/v1/project/{project}/service/{service}", response_model=schemas.ServiceOut,
            responses=READ_ERRORS)
def get_service_route(project: Name, service: Name, _: Admin, store: StoreDep) -> Any:
    with store.read_session() as session:
        row = get_service(session, get_project(session, project), service)
        return {"service": service_view(session, row)}


@router.put("/v1/project/{project}/service/{service}", response_model=schemas.ServiceOut,
            responses=ERRORS)
def update_service(project: Name, service: Name, body: schemas.ServiceUpdate, _: Admin,
                   control: ControlDep) -> Any:
    return control.change(ops.update_service, project, service, body)


@router.delete("/v1/project/{project}/service/{service}", response_model=schemas.Message,
               responses=ERRORS)
def delete_service(project: Name, service: Name, _: Admin, control: ControlDep) -> Any:
    return control.change(ops.delete_service, project, service)


# --- nodes and integrations ------------------------------------------------------------------
@router.get("/v1/project/{project}/nodes/status", response_model=schemas.NodeStatusList,
            responses=READ_ERRORS)
def node_statuses(project: Name, _: Admin, store: StoreDep,
                  service: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None) -> Any:
    with store.read_session() as session:
        return {"nodes": fleet.node_statuses(session, project, service)}



@router.put("/v1/project/{project}/service/{service}/node/{node}",
            response_model=schemas.NodeChange, responses=ERRORS)
def put_node(project: Name, service: Name, node: Name, body: schemas.NodeIn, _: Admin,
             control: ControlDep) -> Any:
    return control.change(ops.put_node, project, service, node, body)


@router.delete("/v1/project/{project}/service/{service}/node/{node}",
               response_model=schemas.Message, responses=ERRORS)
def remove_node(project: Name, service: Name, node: Name, _: Admin,
                control: ControlDep) -> Any:
    return control.change(ops.remove_node, project, service, node)


@router.post("/v1/project/{project}/integration", response_model=schemas.IntegrationOut,
             responses=ERRORS)
def create_integration(project: Name, body: schemas.IntegrationIn, _: Admin,
                       control: ControlDep) -> Any:
    return control.change(ops.create_integration, project, body)
