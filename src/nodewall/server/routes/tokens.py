"""Token routes (admin only): list the tokens (ids, kinds, nodes, times; never a token's text
or hash) and revoke one. A revoked token is refused at once by this process and within
`auth.CACHE_SECONDS` by every other one; creating tokens stays on the store
(`nodewall token create`), so that a token's text never crosses the network."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from nodewall.server import schemas
from nodewall.server.auth import TokenVerifier
from nodewall.server.deps import ERRORS, READ_ERRORS, Admin, StoreDep
from nodewall.server.errors import ApiError
from nodewall.server.guard import StrictJsonRoute
from nodewall.store.tokens import RevokeRefused, TokenInfo, list_tokens

router = APIRouter(route_class=StrictJsonRoute)


def _unix(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def token_view(info: TokenInfo) -> dict[str, Any]:
    return {"id": info.id, "kind": info.kind, "node": info.node,
            "created_at": _unix(info.created_at),
            "revoked_at": _unix(info.revoked_at) if info.revoked_at else None}


@router.get("/v1/tokens", response_model=schemas.TokenList, responses=READ_ERRORS)
def get_tokens(_: Admin, store: StoreDep, request: Request,
               include_revoked: Annotated[bool, Query()] = False) -> Any:
    unknown = sorted(set(request.query_params) - {"include_revoked"})
    if unknown:
        raise ApiError(400, f"Unknown query parameter {unknown[0][:40]!r}; this route takes "
                            "include_revoked only")
    return {"tokens": [token_view(t) for t in list_tokens(store,
                                                          include_revoked=include_revoked)]}


@router.delete("/v1/tokens/{token_id}", response_model=schemas.TokenOut, responses=ERRORS)
async def revoke(token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], _: Admin,
                 request: Request) -> Any:
    verifier: TokenVerifier = request.app.state.verifier
    try:
        info = await asyncio.to_thread(verifier.revoke, token_id)
    except RevokeRefused as exc:
        raise ApiError(exc.status, str(exc)) from None
    return token_view(info)
