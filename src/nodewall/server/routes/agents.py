"""Node agents' routes: the policy long-poll (the hot path) and status reports.

The policy route answers from the stored JSON without decoding it and holds long-polls on the
`PolicyHub`. A node token may read and report only for its own node.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from nodewall.server import ops, schemas
from nodewall.server.deps import ERRORS, READ_ERRORS, Anyone, Change, ControlDep, HubDep, Name
from nodewall.server.errors import ApiError
from nodewall.server.guard import StrictJsonRoute
from nodewall.server.hub import Answer, PolicyHub

#: The longest a long-poll is held, in seconds.
MAX_WAIT = 300

router = APIRouter(route_class=StrictJsonRoute)


@router.get("/v1/node/{node}/policy", response_model=schemas.PolicyOut,
            responses={**READ_ERRORS, 304: {"description": "Not modified (If-None-Match)"}})
async def get_policy(
    node: Name,
    request: Request,
    who: Anyone,
    hub: HubDep,
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


@router.post("/v1/node/{node}/status", response_model=schemas.StatusOut | schemas.Preview,
             responses=ERRORS)
def report_status(node: Name, body: schemas.StatusIn, who: Anyone, how: Change,
                  control: ControlDep) -> Any:
    """An agent's report; not an audited change (it records no summary)."""
    if not who.may_act_for(node):
        raise ApiError(403, "This token may report only its own node's status")
    return control.submit(how, ops.report_status, node, body)


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
