"""uvicorn's httptools protocol with a deadline and a size bound for the request line and
headers.

uvicorn closes a keep-alive connection that stays idle, but holds for ever a connection that
sends nothing, or part of a request's headers and then stops (slowloris), and its HTTP parser
gathers a header of any length. Here every request must have its headers complete within
`HEADER_SECONDS` of its first byte (the first request: of the connection's opening), else the
server answers 408 and closes the connection; and headers may take at most `MAX_HEADER_BYTES`
(431 and close otherwise; the parser holds at most one read beyond that). Slow and large bodies
are `nodewall.server.guard`'s. Nothing here reads or logs request data.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from nodewall.server.errors import error_body

#: The longest a client may take from a connection's opening (or a request's first byte) to
#: the end of its headers.
HEADER_SECONDS = 10.0
#: The most bytes a request line and headers may take (a nodewall request needs under 1 KiB).
MAX_HEADER_BYTES = 64 * 1024



def _raw_answer(status: int, reason: str, message: str) -> bytes:
    body = json.dumps(error_body(status, [message])).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body


_TIMEOUT_408 = _raw_answer(408, "Request Timeout", "Request headers not complete in time")
_TOO_LARGE_431 = _raw_answer(431, "Request Header Fields Too Large",
                             f"Request line and headers larger than {MAX_HEADER_BYTES} bytes")


class TimedHttpToolsProtocol(HttpToolsProtocol):
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is None or self.transport.is_closing():
            return
        self._header_bytes += len(data)  # headers still incomplete after this read
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(_TOO_LARGE_431)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._header_bytes = 0
        super().on_headers_complete()

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(HEADER_SECONDS, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        self._refuse(_TIMEOUT_408)

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # no answer under way
            self.transport.write(answer)
        self.transport.close()
