"""The control-plane HTTP API (SPEC section 6), built with FastAPI; OpenAPI at /openapi.json.

Routes are thin: authenticate, hand the change to `ops` through `Control`, answer. The policy
route is the hot path: it answers from the stored JSON without decoding it and holds long-polls
on the `PolicyHub`. Errors always come back as `{"errors": [...], "message": ...}`. Request bodies
and customer text are never logged.
"""


import asyncio
import logging
import os
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from nodewall import __version__
from nodewall.server import ops, schemas
from nodewall.server.auth import Principal, TokenVerifier
from nodewall.server.control import Control
from nodewall.server.errors import ApiError, error_body, field_message
from nodewall.server.hub import Answer, PolicyHub
from nodewall.server.middleware import MetricsMiddleware
from nodewall.server.state import get_project, get_service
from nodewall.server.views import service_view, vpc_view
from nodewall.spec.model import NAME_PATTERN
from nodewall.store import Store
from nodewall.store.models import ServiceRow, VpcRow

log = logging.getLogger("nodewall.server")

#: The longest a long-poll is held, in seconds.
MAX_WAIT = 300
#: Project, service and node names in paths: the spec's name rule (anything else is a 400).
Name = Annotated[str, Path(pattern=NAME_PATTERN)]

_ERR = {"model": schemas.ErrorBody}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR, 409: _ERR}
READ_ERRORS: dict[int | str, dict[str, Any]] = {400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR}


def create_app(store: Store) -> FastAPI:
    hub = PolicyHub(store)
    control = Control(store, hub)
    verifier = TokenVerifier(store)
    bearer_scheme = HTTPBearer(auto_error=False)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.start(asyncio.get_running_loop())
        yield
        hub.stop()

    app = FastAPI(title="nodewall control plane", version=__version__, lifespan=lifespan)
    app.add_middleware(MetricsMiddleware)
    _install_error_handlers(app)

    async def authenticated(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        if creds is None or not creds.credentials:
            raise ApiError(401, "Authentication required: send 'Authorization: Bearer <token>'")
        who = verifier.cached(creds.credentials)
        if who is None:
            who = await asyncio.to_thread(verifier.verify, creds.credentials)
        if who is None:
            raise ApiError(401, "Invalid token")
        return who

    def admin(who: Annotated[Principal, Depends(authenticated)]) -> Principal:
        if not who.is_admin:
            raise ApiError(403, "This token may not change or read the platform's state")
        return who

    Admin = Annotated[Principal, Depends(admin)]
    Anyone = Annotated[Principal, Depends(authenticated)]

    # --- platform, projects, VPCs ---------------------------------------------------------
    @app.put("/v1/platform", response_model=schemas.PlatformOut, responses=ERRORS)
    def put_platform(body: schemas.PlatformIn, _: Admin) -> Any:
        return control.change(ops.set_platform, body)

    @app.post("/v1/project", response_model=schemas.ProjectOut, responses=ERRORS)
    def create_project(body: schemas.ProjectIn, _: Admin) -> Any:
        return control.change(ops.create_project, body)

    @app.post("/v1/project/{project}/vpcs", response_model=schemas.VpcOut, responses=ERRORS)
    def create_vpc(project: Name, body: schemas.VpcIn, _: Admin) -> Any:
        return control.change(ops.create_vpc, project, body)

    @app.get("/v1/project/{project}/vpcs", response_model=schemas.VpcList,
             responses=READ_ERRORS)
    def list_vpcs(project: Name, _: Admin) -> Any:
        with store.read_session() as session:
            row = get_project(session, project)
            vpcs = session.execute(select(VpcRow).where(VpcRow.project_id == row.id)
                                   .order_by(VpcRow.id)).scalars()
            return {"vpcs": [vpc_view(v) for v in vpcs]}

    # --- services -------------------------------------------------------------------------
    @app.post("/v1/project/{project}/service", response_model=schemas.ServiceOut,
              responses=ERRORS)
    def create_service(project: Name, body: schemas.ServiceIn, _: Admin) -> Any:
        return control.change(ops.create_service, project, body)

    @app.get("/v1/project/{project}/service", response_model=schemas.ServiceList,
             responses=READ_ERRORS)
    def list_services(project: Name, _: Admin) -> Any:
        with store.read_session() as session:
            row = get_project(session, project)
            services = session.execute(select(ServiceRow).where(
                ServiceRow.project_id == row.id).order_by(ServiceRow.id)).scalars().all()
            return {"services": [service_view(session, s) for s in services]}

    @app.get("/v1/project/{project}/service/{service}", response_model=schemas.ServiceOut,
             responses=READ_ERRORS)
    def get_service_route(project: Name, service: Name, _: Admin) -> Any:
        with store.read_session() as session:
            row = get_service(session, get_project(session, project), service)
            return {"service": service_view(session, row)}

    @app.put("/v1/project/{project}/service/{service}", response_model=schemas.ServiceOut,
             responses=ERRORS)
    def update_service(project: Name, service: Name, body: schemas.ServiceUpdate,
                       _: Admin) -> Any:
        return control.change(ops.update_service, project, service, body)

    @app.delete("/v1/project/{project}/service/{service}", response_model=schemas.Message,
                responses=ERRORS)
    def delete_service(project: Name, service: Name, _: Admin) -> Any:
        return control.change(ops.delete_service, project, service)

    # --- nodes and integrations -----------------------------------------------------------
    @app.put("/v1/project/{project}/service/{service}/node/{node}",
             response_model=schemas.NodeChange, responses=ERRORS)
    def put_node(project: Name, service: Name, node: Name, body: schemas.NodeIn,
                 _: Admin) -> Any:
        return control.change(ops.put_node, project, service, node, body)

    @app.delete("/v1/project/{project}/service/{service}/node/{node}",
                response_model=schemas.Message, responses=ERRORS)
    def remove_node(project: Name, service: Name, node: Name, _: Admin) -> Any:
        return control.change(ops.remove_node, project, service, node)

    @app.post("/v1/project/{project}/integration", response_model=schemas.IntegrationOut,
              responses=ERRORS)
    def create_integration(project: Name, body: schemas.IntegrationIn, _: Admin) -> Any:
        return control.change(ops.create_integration, project, body)

    # --- agents ---------------------------------------------------------------------------
    @app.get("/v1/node/{node}/policy", response_model=schemas.PolicyOut,
             responses={**READ_ERRORS, 304: {"description": "Not modified (If-None-Match)"}})
    async def get_policy(
        node: Name,
        request: Request,
        who: Anyone,
        version: Annotated[str | None, Query(max_length=64)] = None,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0,
    ) -> Response:
        if not who.may_act_for(node):
            raise ApiError(403, "This token may read only its own node's policy")
        answer = await _current_or_next(hub, node, version, wait)
        if answer is None:
            raise ApiError(404, f"No policy for node '{node}' (unknown node, or the platform's "
                                "management networks are not set)")
        etag = f'"{answer.version}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(answer.body, media_type="application/json", headers={"ETag": etag})

    @app.post("/v1/node/{node}/status", response_model=schemas.StatusOut, responses=ERRORS)
    def report_status(node: Name, body: schemas.StatusIn, who: Anyone) -> Any:
        if not who.may_act_for(node):
            raise ApiError(403, "This token may report only its own node's status")
        return control.change(ops.report_status, node, body)

    @app.get("/metrics", include_in_schema=False)
    def metrics_route() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"message": "ok"}

    _drop_422(app)
    return app


async def _current_or_next(hub: PolicyHub, node: str, version: str | None,
                           wait: float) -> Answer | None:
    """The node's answer now, or, with `version` and `wait`, as soon as it differs."""
    if version is None or wait <= 0:
        return await hub.answer(node)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    fut = hub.register(node)  # before reading: a change after the read still wakes us
    try:
        answer = await hub.answer(node)
        while answer is not None and answer.version == version:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                answer = await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                break
            if answer is not None and answer.version == version:
                fut = hub.register(node)  # woken without a new version: wait again
                answer = await hub.answer(node)
        return answer
    finally:
        hub.unregister(node, fut)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        messages = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            path = ".".join(loc)
            messages.append(field_message(path, str(err.get("msg", "invalid"))) if path
                            else f"Invalid request body: {err.get('msg', 'invalid')}")
        return JSONResponse(error_body(400, messages or ["Invalid request"]), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, [str(exc.detail)]),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def crash(_request: Request, exc: Exception) -> JSONResponse:
        # The type and where, never the message: it may quote request data (customer text).
        frames = traceback.extract_tb(exc.__traceback__)
        where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in frames[-4:][::-1])
        log.error("internal error: %s at %s", type(exc).__name__, where)
        return JSONResponse(error_body(500, ["Internal server error"]), status_code=500)


def _drop_422(app: FastAPI) -> None:
    """FastAPI documents 422 for invalid input; this API answers 400 (declared per route)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
