"""Slow clients against a real server process: connections that send nothing, half a request
line, part of the headers, or a few body bytes and then stop are all closed within a bound
(`HEADER_SECONDS`, `BODY_IDLE_SECONDS` plus a margin), and the server keeps answering others
meanwhile. Headers larger than `MAX_HEADER_BYTES` are refused while they arrive."""

from __future__ import annotations

import socket
import threading

from hardening import close_times, connect, head, read_answer
from seed import ok
from serverproc import ServerProc

from nodewall.server.guard import BODY_IDLE_SECONDS
from nodewall.server.protocol import HEADER_SECONDS, MAX_HEADER_BYTES

#: Scheduling slack on a loaded two-core CI machine.
MARGIN = 5.0
SLOW = 50


def _slow_clients(server: ServerProc) -> list[socket.socket]:
    """SLOW connections of each kind of stall, each having sent its few bytes."""
    socks: list[socket.socket] = []
    token = server.admin
    starts = [
        b"",  # connects and says nothing
        b"GET /v1/platf",  # half a request line
        b"POST /v1/project HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty",  # part of the headers
        head("POST", "/v1/project", {  # whole headers, a few body bytes, then silence
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Content-Length": "1000"}) + b'{"proj',
        head("POST", "/v1/project", {
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}) + b"5\r\n{\"pro\r\n",
    ]
    for i in range(SLOW):
        sock = connect(server.port)
        if starts[i % len(starts)]:
            sock.sendall(starts[i % len(starts)])
        socks.append(sock)
    return socks


def test_stalled_connections_are_closed_within_the_bound(sqlite_server: ServerProc) -> None:
    """Every stalled connection gets a 408 and is closed within the bound, while a client
    making quick requests on one keep-alive connection for longer than HEADER_SECONDS is
    served throughout (the deadline runs per request)."""
    socks = _slow_clients(sqlite_server)
    steady: list[int] = []
    stop = threading.Event()

    def keep_alive_client() -> None:
        sock = connect(sqlite_server.port, timeout=10)
        try:
            while not stop.is_set():
                sock.sendall(head("GET", "/healthz", {}))
                steady.append(read_answer(sock)[0])
                stop.wait(1)
        finally:
            sock.close()

    steady_thread = threading.Thread(target=keep_alive_client, daemon=True)
    steady_thread.start()
    try:
        bound = max(HEADER_SECONDS, BODY_IDLE_SECONDS) + MARGIN
        received: list[bytes] = []
        times = close_times(socks, bound, received)
        still_open = [i for i, t in enumerate(times) if t is None]
        assert not still_open, f"{len(still_open)} of {SLOW} stalled connections still open " \
                               f"after {bound:.0f} s (first: #{still_open[0]})"
        not_408 = [i for i, data in enumerate(received) if not data.startswith(
            b"HTTP/1.1 408 ")]
        assert not not_408, f"no 408 on #{not_408[0]}: {received[not_408[0]][:100]!r}"
        closed = [t for t in times if t is not None]
        print(f"{SLOW} stalled connections closed after {min(closed):.1f}..{max(closed):.1f} s")
    finally:
        stop.set()
        steady_thread.join(timeout=15)
        for sock in socks:
            sock.close()
    assert len(steady) >= HEADER_SECONDS and set(steady) == {200}, steady


def test_endless_headers_are_refused_while_they_arrive(sqlite_server: ServerProc) -> None:
    sock = connect(sqlite_server.port, timeout=10)
    sent = 0
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: ")
        try:
            while sent < 64 * MAX_HEADER_BYTES:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            status, _, body = read_answer(sock)
        except ConnectionResetError:
            status, body = 0, None
    finally:
        sock.close()
    assert sent < 64 * MAX_HEADER_BYTES, "the server took 4 MiB of one header"
    assert status in (431, 0), body
    with sqlite_server.client() as c:
        ok(c.get("/healthz"))
