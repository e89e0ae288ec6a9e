"""The door every request body passes: the token is checked before a byte of the body is read,
the body is bounded while it is read, slow bodies are cut off, and the JSON is read strictly.

`BodyGuard` is a pure-ASGI middleware. For a request that carries a body (a Content-Length
above 0, or chunked) it
- answers 401 at once, without reading the body, unless the bearer token is valid;
- answers 413 at once when the Content-Length exceeds the token's limit (`MAX_BODY_BYTES` for
  an admin token, `NODE_BODY_BYTES` for a node token), and 413 as soon as a chunked body
  passes it, never holding more than the limit;
- lets at most `LARGE_BODY_SLOTS` bodies over `LARGE_BODY_BYTES` be read and worked on at
  once (writes are serialised by the store anyway; waiting bodies stay in the kernel's socket
  buffers, since the server stops reading a connection whose body nobody receives), a slot
  taken once a body is known to be large (its Content-Length, or that many chunked bytes
  received) and waited for at most as long as the body may take (503 after that); when the
  last large request is answered, its memory is given back (`nodewall.server.memory`);
- answers 408 when the body stalls for `BODY_IDLE_SECONDS` or is not complete within
  `BODY_BASE_SECONDS` plus its length at `BODY_MIN_BYTES_PER_SECOND`;
- reads the JSON strictly (`nodewall.spec.document.read_json`: a key given twice, NaN, overlong
  integers, nesting past `MAX_DEPTH` are each a 400 naming the path) and hands the parsed
  document on, so that routes never parse a body again (`StrictJsonRoute`).
Every refusal before the body is read closes the connection (`connection: close`).

It never logs, echoes or stores a body or a token.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodewall.errors import SpecError, format_path
from nodewall.server.auth import Principal, TokenVerifier
from nodewall.server.errors import ApiError, error_body, field_message
from nodewall.server.memory import give_back
from nodewall.server.unavailable import (
    RETRY_AFTER_SECONDS,
    log_unavailable,
    unavailable_message,
    unavailable_reason,
)
from nodewall.spec.document import read_json
from nodewall.spec.limits import LARGE_BODY_BYTES, MAX_BODY_BYTES, NODE_BODY_BYTES

#: How many bodies over LARGE_BODY_BYTES are read and worked on at once, per process.
LARGE_BODY_SLOTS = 2
#: A body that sends nothing for this long is cut off (408).
BODY_IDLE_SECONDS = 10.0
#: A body must be complete within this plus its length at the rate below: 33 MiB takes at
#: most 20 s + 132 s.
BODY_BASE_SECONDS = 20.0
BODY_MIN_BYTES_PER_SECOND = 256 * 1024
#: Bodies up to this size are parsed on the event loop; larger ones in a worker thread.
_INLINE_PARSE_BYTES = 64 * 1024
#: Where the parsed body waits for its route, in the request's scope["state"].
PARSED_BODY = "nodewall.body"


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Gone(Exception):
    """The client went away while sending its body."""


class _LargeBodies:
    """The slots of large bodies, and how many requests want or hold one."""

    def __init__(self, slots: int) -> None:
        self.slots = asyncio.Semaphore(slots)
        self.wanting = 0


class _Claim:
    """One request's claim on a large-body slot: taken when its body turns out large (by
    its Content-Length, or once that many chunked bytes came), released when it is answered;
    the last large request answered gives its memory back."""

    def __init__(self, bodies: _LargeBodies, after: Callable[[], None] | None) -> None:
        self.bodies, self.after = bodies, after
        self.counted = self.held = False

    async def take(self, wait: float) -> None:
        if self.counted:
            return
        self.counted = True
        self.bodies.wanting += 1
        try:
            await asyncio.wait_for(self.bodies.slots.acquire(), max(wait, 0.001))
        except TimeoutError:
            raise _Refused(503, "Too many large request bodies at once; try again") from None
        self.held = True

    async def release(self) -> None:
        if self.held:
            self.bodies.slots.release()
        if self.counted:
            self.bodies.wanting -= 1
            if not self.bodies.wanting:
                await asyncio.to_thread(give_back, self.after)


class BodyGuard:
    def __init__(self, app: ASGIApp, verifier: TokenVerifier,
                 max_body: int = MAX_BODY_BYTES, node_body: int = NODE_BODY_BYTES,
                 after_large: Callable[[], None] | None = None) -> None:
        """`after_large` runs (in a worker thread) when the last large request is answered,
        before memory is given back: the store drops its idle connections there."""
        self.app = app
        self.verifier = verifier
        self.after_large = after_large
        self.max_body, self.node_body = max_body, node_body
        self._large = _LargeBodies(LARGE_BODY_SLOTS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, chunked = _framing(scope["headers"])
        if not chunked and not length:
            await self.app(scope, receive, send)
            return
        try:
            who = await self._principal(scope["headers"])
            limit = self.max_body if who.is_admin else self.node_body
            if length is not None and length > limit:
                raise _Refused(413, f"Request body of {length} bytes is larger than the "
                                    f"{limit} bytes this token may send")
        except _Refused as refused:
            await _answer(send, refused.status, [refused.message])
            return
        claim = _Claim(self._large, self.after_large)
        try:
            await self._guarded(scope, receive, send, limit, length, claim)
        finally:
            await claim.release()

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: int,
                       length: int | None, claim: _Claim) -> None:
        """Read, bound and parse the body, then run the app with it."""
        state = scope.setdefault("state", {})
        try:
            body = await _read_body(receive, limit, length, claim)
            state[PARSED_BODY] = await _parse(body)
        except _Refused as refused:
            await _answer(send, refused.status, [refused.message])
            return
        except SpecError as exc:
            await _answer(send, 400, [field_message(path, reason)
                                      for path, reason in exc.errors], close=False)
            return
        except _Gone:
            return
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:  # uvicorn keeps an idle connection's last scope: the document must not stay
            state.pop(PARSED_BODY, None)

    async def _principal(self, headers: list[tuple[bytes, bytes]]) -> Principal:
        token = _bearer(headers)
        if token is None:
            raise _Refused(401, "Authentication required: send 'Authorization: Bearer <token>'")
        who = self.verifier.cached(token)
        if who is None:
            try:
                who = await asyncio.to_thread(self.verifier.verify, token)
            except Exception as exc:
                reason = unavailable_reason(exc)
                if reason is None:
                    raise
                log_unavailable(exc, reason)
                raise _Refused(503, unavailable_message(reason)) from None
        if who is None:
            raise _Refused(401, "Invalid token")
        return who


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """(Content-Length or None, chunked); the HTTP parser has already refused bad framing."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length" and value.strip().isdigit():
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return (None if chunked else length), chunked


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


async def _read_body(receive: Receive, limit: int, length: int | None, claim: _Claim) -> bytes:
    loop = asyncio.get_running_loop()
    expected = limit if length is None else length
    deadline = loop.time() + BODY_BASE_SECONDS + expected / BODY_MIN_BYTES_PER_SECOND
    if length is not None and length > LARGE_BODY_BYTES:
        await claim.take(deadline - loop.time())
    chunks: list[bytes] = []
    size = 0
    while True:
        wait = min(BODY_IDLE_SECONDS, deadline - loop.time())
        if wait <= 0:
            raise _Refused(408, "Request body not complete in time")
        try:
            message = await asyncio.wait_for(receive(), wait)
        except TimeoutError:
            raise _Refused(408, "Request body stalled: nothing received for "
                                f"{min(BODY_IDLE_SECONDS, wait):.0f} s") from None
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"Request body larger than the {limit} bytes this token may "
                                "send")
        if size > LARGE_BODY_BYTES:
            await claim.take(deadline - loop.time())
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _parse(body: bytes) -> Any:
    if len(body) <= _INLINE_PARSE_BYTES:
        return read_json(body, "request body")
    return await asyncio.to_thread(read_json, body, "request body")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, messages: list[str], *, close: bool = True) -> None:
    payload = json.dumps(error_body(status, messages)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class _StrictRequest(Request):
    """A request whose JSON is the document the guard already read strictly."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            state = self.scope.get("state") or {}
            if PARSED_BODY in state:
                self._json = state[PARSED_BODY]
            else:  # no guard in front (an app built without it): read strictly here
                self._json = read_json(await self.body(), "request body")
        return self._json


class StrictJsonRoute(APIRoute):
    """The route class of every router: bodies come from the guard, parsed once, strictly;
    query parameters the route does not take, or given twice, are refused (400 naming them):
    `?dry-run=true` must not run the real change as if the preview had been asked for."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        taken = frozenset(_query_names(self.dependant))

        async def strict(request: Request) -> Response:
            _check_query(request, taken)
            return await handler(_StrictRequest(request.scope, request.receive))

        return strict


def _query_names(dependant: Dependant) -> list[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = [q.alias for q in dependant.query_params]
    for sub in dependant.dependencies:
        names += _query_names(sub)
    return names


def _check_query(request: Request, taken: frozenset[str]) -> None:
    names = Counter(name for name, _ in request.query_params.multi_items())
    problems = []
    for name, given in names.items():
        shown = format_path((name,)) if name else "<empty name>"
        if name not in taken:
            accepted = ", ".join(sorted(taken)) or "none"
            problems.append(f"Invalid query parameter {shown}: not one this route takes "
                            f"(it takes: {accepted})")
        elif given > 1:
            problems.append(f"Invalid query parameter {shown}: given twice")
    if problems:
        raise ApiError(400, *problems)
