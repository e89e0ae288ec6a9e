"""The control-plane HTTP API (SPEC section 6), built with FastAPI; OpenAPI at /openapi.json.

`create_app` puts the shared objects in `app.state` (`nodewall.server.deps`), mounts the
routers of `nodewall.server.routes` and the error handlers. Routes are thin: authenticate, hand
the change to `ops` through `Control`, answer. Errors always come back as
`{"errors": [...], "message": ...}`. Every request body passes `guard.BodyGuard` first (token
checked before it is read, size and time bounded, JSON read strictly). Request bodies, tokens and
customer text are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nodewall import __version__
from nodewall.server import metrics
from nodewall.server.auth import TokenVerifier
from nodewall.server.control import Control
from nodewall.server.errors import ApiError, error_body, field_message
from nodewall.server.guard import BodyGuard
from nodewall.server.hub import PolicyHub
from nodewall.server.middleware import MetricsMiddleware
from nodewall.server.routes import agents, events, health, platform, tokens
from nodewall.server.unavailable import (
    DATABASE_ERRORS,
    RETRY_AFTER_SECONDS,
    log_unavailable,
    unavailable_message,
    unavailable_reason,
)
from nodewall.store import Store

log = logging.getLogger("nodewall.server")


def create_app(store: Store) -> FastAPI:
    hub = PolicyHub(store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.start(asyncio.get_running_loop())
        yield
        hub.stop()

    app = FastAPI(title="nodewall control plane", version=__version__, lifespan=lifespan)
    app.state.store, app.state.hub = store, hub
    verifier = TokenVerifier(store)
    app.state.control, app.state.verifier = Control(store, hub), verifier
    # Inside the metrics, so that refusals count. After large bodies the store's idle
    # connections go: libpq and SQLite keep buffers as large as the largest statement sent.
    app.add_middleware(BodyGuard, verifier=verifier, after_large=store.release_idle)
    app.add_middleware(MetricsMiddleware)
    _install_error_handlers(app)
    for module in (platform, events, agents, tokens, health):
        app.include_router(module.router)
    _drop_422(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        _count_refused(request, exc.status)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        _count_refused(request, 400)
        messages = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            path = ".".join(loc)
            messages.append(field_message(path, str(err.get("msg", "invalid"))) if path
                            else f"Invalid request body: {err.get('msg', 'invalid')}")
        return JSONResponse(error_body(400, messages or ["Invalid request"]), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        _count_refused(request, exc.status_code)
        return JSONResponse(error_body(exc.status_code, [str(exc.detail)]),
                            status_code=exc.status_code)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        reason = unavailable_reason(exc)
        if reason is None:
            raise exc  # a bug: the 500 below
        log_unavailable(exc, reason)
        return JSONResponse(
            error_body(503, [unavailable_message(reason)]),
            status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, database_error)

    @app.exception_handler(Exception)
    async def crash(_request: Request, exc: Exception) -> JSONResponse:
        # The type and where, never the message: it may quote request data (customer text).
        frames = traceback.extract_tb(exc.__traceback__)
        where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in frames[-4:][::-1])
        log.error("internal error: %s at %s", type(exc).__name__, where)
        return JSONResponse(error_body(500, ["Internal server error"]), status_code=500)


def _count_refused(request: Request, status: int) -> None:
    """A refused state-changing request is counted (route template, never the path), not
    stored: the audit trail holds accepted changes only."""
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        route: Any = request.scope.get("route")
        metrics.CHANGES_REFUSED.labels(request.method, getattr(route, "path", "unmatched"),
                                       str(status)).inc()


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
