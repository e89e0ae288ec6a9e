"""Operators' routes (SPEC section 6): platform settings, projects, VPCs, services, nodes,
integrations. Admin tokens only. A change goes to `ops` (or `removals`) through `Control` (one
transaction, recorded in the audit trail, then the held polls of the nodes it changed are
woken); with `?dry_run=true` it answers a preview and writes nothing. A read answers from the
store; lists are paginated (`server.paging`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from nodewall.server import fleet, ops, paging, removals, schemas
from nodewall.server.deps import ERRORS, READ_ERRORS, Admin, Change, ControlDep, Name, StoreDep
from nodewall.server.guard import StrictJsonRoute
from nodewall.server.paging import Cursor, Limit
from nodewall.server.state import get_project, get_service
from nodewall.server.views import integration_views, service_view, vpc_view
from nodewall.spec.vocabulary import NAME_PATTERN
from nodewall.store.models import IntegrationRow, ProjectRow, ServiceRow, VpcRow

router = APIRouter(route_class=StrictJsonRoute)
Removed = schemas.Message | schemas.Preview
IntegrationId = Annotated[int, Path(ge=1, le=2**31 - 1)]


# --- platform, projects, VPCs ----------------------------------------------------------------
@router.put("/v1/platform", response_model=schemas.PlatformOut | schemas.Preview,
            responses=ERRORS)
def put_platform(body: schemas.PlatformIn, _: Admin, how: Change, control: ControlDep) -> Any:
    return control.submit(how, ops.set_platform, body)


@router.post("/v1/project", response_model=schemas.ProjectOut | schemas.Preview,
             responses=ERRORS)
def create_project(body: schemas.ProjectIn, _: Admin, how: Change, control: ControlDep) -> Any:
    return control.submit(how, ops.create_project, body)


@router.get("/v1/project", response_model=schemas.ProjectList, responses=READ_ERRORS)
def list_projects(_: Admin, store: StoreDep, limit: Limit = paging.DEFAULT_LIMIT,
                  cursor: Cursor = None) -> Any:
    with store.read_session() as session:
        rows = session.execute(paging.ascending(select(ProjectRow), ProjectRow.id, limit,
                                                cursor)).scalars().all()
        page, following = paging.cut(rows, limit, lambda r: r.id)
        return {"projects": [{"project_name": r.name, "base_port": r.base_port} for r in page],
                "next_cursor": following}


@router.delete("/v1/project/{project}", response_model=Removed, responses=ERRORS)
def delete_project(project: Name, _: Admin, how: Change, control: ControlDep,
                   force: Annotated[bool, Query(description="Delete its services too.")] = False,
                   ) -> Any:
    return control.submit(how, removals.delete_project, project, force)


@router.post("/v1/project/{project}/vpcs", response_model=schemas.VpcOut | schemas.Preview,
             responses=ERRORS)
def create_vpc(project: Name, body: schemas.VpcIn, _: Admin, how: Change,
               control: ControlDep) -> Any:
    return control.submit(how, ops.create_vpc, project, body)


@router.get("/v1/project/{project}/vpcs", response_model=schemas.VpcList,
            responses=READ_ERRORS)
def list_vpcs(project: Name, _: Admin, store: StoreDep, limit: Limit = paging.DEFAULT_LIMIT,
              cursor: Cursor = None) -> Any:
    with store.read_session() as session:
        row = get_project(session, project)
        rows = session.execute(paging.ascending(
            select(VpcRow).where(VpcRow.project_id == row.id), VpcRow.id, limit,
            cursor)).scalars().all()
        page, following = paging.cut(rows, limit, lambda r: r.id)
        return {"vpcs": [vpc_view(v) for v in page], "next_cursor": following}


@router.delete("/v1/project/{project}/vpcs/{vpc}", response_model=Removed, responses=ERRORS)
def delete_vpc(project: Name, vpc: Name, _: Admin, how: Change, control: ControlDep) -> Any:
    return control.submit(how, removals.delete_vpc, project, vpc)


# --- services --------------------------------------------------------------------------------
@router.post("/v1/project/{project}/service", response_model=schemas.ServiceOut | schemas.Preview,
             responses=ERRORS)
def create_service(project: Name, body: schemas.ServiceIn, _: Admin, how: Change,
                   control: ControlDep) -> Any:
    return control.submit(how, ops.create_service, project, body)


@router.get("/v1/project/{project}/service", response_model=schemas.ServiceList,
            responses=READ_ERRORS)
def list_services(project: Name, _: Admin, store: StoreDep,
                  limit: Limit = paging.DEFAULT_LIMIT, cursor: Cursor = None) -> Any:
    with store.read_session() as session:
        row = get_project(session, project)
        rows = session.execute(paging.ascending(
            select(ServiceRow).where(ServiceRow.project_id == row.id), ServiceRow.id, limit,
            cursor)).scalars().all()
        page, following = paging.cut(rows, limit, lambda r: r.id)
        return {"services": [service_view(session, s) for s in page],
                "next_cursor": following}


@router.get("/v1/project/{project}/service/{service}", response_model=schemas.ServiceOut,
            responses=READ_ERRORS)
def get_service_route(project: Name, service: Name, _: Admin, store: StoreDep) -> Any:
    with store.read_session() as session:
        row = get_service(session, get_project(session, project), service)
        return {"service": service_view(session, row)}


@router.put("/v1/project/{project}/service/{service}",
            response_model=schemas.ServiceOut | schemas.Preview, responses=ERRORS)
def update_service(project: Name, service: Name, body: schemas.ServiceUpdate, _: Admin,
                   how: Change, control: ControlDep) -> Any:
    return control.submit(how, ops.update_service, project, service, body)


@router.delete("/v1/project/{project}/service/{service}", response_model=Removed,
               responses=ERRORS)
def delete_service(project: Name, service: Name, _: Admin, how: Change,
                   control: ControlDep) -> Any:
    return control.submit(how, ops.delete_service, project, service)


# --- nodes and integrations ------------------------------------------------------------------
@router.get("/v1/project/{project}/nodes/status", response_model=schemas.NodeStatusList,
            responses=READ_ERRORS)
def node_statuses(project: Name, _: Admin, store: StoreDep,
                  service: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None) -> Any:
    with store.read_session() as session:
        return {"nodes": fleet.node_statuses(session, project, service)}


@router.put("/v1/project/{project}/service/{service}/node/{node}",
            response_model=schemas.NodeChange | schemas.Preview, responses=ERRORS)
def put_node(project: Name, service: Name, node: Name, body: schemas.NodeIn, _: Admin,
             how: Change, control: ControlDep) -> Any:
    return control.submit(how, ops.put_node, project, service, node, body)


@router.delete("/v1/project/{project}/service/{service}/node/{node}",
               response_model=Removed, responses=ERRORS)
def remove_node(project: Name, service: Name, node: Name, _: Admin, how: Change,
                control: ControlDep) -> Any:
    return control.submit(how, ops.remove_node, project, service, node)


@router.post("/v1/project/{project}/integration",
             response_model=schemas.IntegrationOut | schemas.Preview, responses=ERRORS)
def create_integration(project: Name, body: schemas.IntegrationIn, _: Admin, how: Change,
                       control: ControlDep) -> Any:
    return control.submit(how, ops.create_integration, project, body)


@router.get("/v1/project/{project}/integration", response_model=schemas.IntegrationList,
            responses=READ_ERRORS)
def list_integrations(project: Name, _: Admin, store: StoreDep,
                      limit: Limit = paging.DEFAULT_LIMIT, cursor: Cursor = None) -> Any:
    with store.read_session() as session:
        row = get_project(session, project)
        rows = session.execute(paging.ascending(
            select(IntegrationRow).where(IntegrationRow.project_id == row.id),
            IntegrationRow.id, limit, cursor)).scalars().all()
        page, following = paging.cut(rows, limit, lambda r: r.id)
        return {"integrations": integration_views(session, row.id, page),
                "next_cursor": following}


@router.delete("/v1/project/{project}/integration/{integration_id}", response_model=Removed,
               responses=ERRORS)
def delete_integration(project: Name, integration_id: IntegrationId, _: Admin, how: Change,
                       control: ControlDep) -> Any:
    return control.submit(how, removals.delete_integration, project, integration_id)
