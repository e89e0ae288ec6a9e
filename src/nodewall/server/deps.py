"""What every route of the API depends on: the app's shared objects, authentication, path names.

The app keeps one `Control`, `PolicyHub`, `TokenVerifier` and `Store` in `app.state`
(`nodewall.server.app.create_app`); routes reach them through the dependencies here, so that
routers are plain module-level objects. Tokens are checked before a route's body is used, and
never logged.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nodewall.server import schemas
from nodewall.server.audit import Origin
from nodewall.server.auth import Principal, TokenVerifier
from nodewall.server.control import Control, How
from nodewall.server.errors import ApiError
from nodewall.server.hub import PolicyHub
from nodewall.spec.vocabulary import NAME_PATTERN
from nodewall.store import Store

#: Project, service and node names in paths: the spec's name rule (anything else is a 400).
Name = Annotated[str, Path(pattern=NAME_PATTERN)]

_ERR = {"model": schemas.ErrorBody}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR, 409: _ERR}
READ_ERRORS: dict[int | str, dict[str, Any]] = {400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR}

_bearer = HTTPBearer(auto_error=False)


def _control(request: Request) -> Control:
    control: Control = request.app.state.control
    return control


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _hub(request: Request) -> PolicyHub:
    hub: PolicyHub = request.app.state.hub
    return hub


async def _authenticated(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if creds is None or not creds.credentials:
        raise ApiError(401, "Authentication required: send 'Authorization: Bearer <token>'")
    verifier: TokenVerifier = request.app.state.verifier
    who = verifier.cached(creds.credentials)
    if who is None:
        who = await asyncio.to_thread(verifier.verify, creds.credentials)
    if who is None:
        raise ApiError(401, "Invalid token")
    return who


def _admin(who: Annotated[Principal, Depends(_authenticated)]) -> Principal:
    if not who.is_admin:
        raise ApiError(403, "This token may not change or read the platform's state")
    return who


Admin = Annotated[Principal, Depends(_admin)]
Anyone = Annotated[Principal, Depends(_authenticated)]
ControlDep = Annotated[Control, Depends(_control)]
StoreDep = Annotated[Store, Depends(_store)]
HubDep = Annotated[PolicyHub, Depends(_hub)]


def _how(
    request: Request,
    dry_run: Annotated[bool, Query(description="Answer what the change would do; write "
                                               "nothing.")] = False,
) -> How:
    """How a state-changing route runs its change: previewed or for real, and its origin for
    the audit trail (the bearer token goes only as far as its id lookup)."""
    route: Any = request.scope.get("route")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    origin = Origin(request.method, str(getattr(route, "path", "")), request.url.path,
                    token.strip() if scheme.lower() == "bearer" else None)
    return How(dry_run=dry_run, origin=origin)


#: A state-changing route's `?dry_run=` and audit origin.
Change = Annotated[How, Depends(_how)]
