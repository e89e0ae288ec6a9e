"""Helpers of the hardening tests (tests/api/test_api_hardening*.py): raw HTTP over a socket
(for what httpx will not send: half a request, a lying Content-Length, a body that stalls), and
the resident memory of a server process read from /proc."""

from __future__ import annotations

import json
import selectors
import socket
import time
from typing import Any


def rss_mib(pid: int) -> float:
    """The process's resident set size (VmRSS), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def connect(port: int, timeout: float = 30) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in
                                                                headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of one answer (the connection may close after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data[:200]!r}")
        data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    body = json.loads(rest[:length]) if length else None
    return int(status_line.split()[1]), headers, body


def close_times(socks: list[socket.socket], bound: float,
                received: list[bytes] | None = None) -> list[float | None]:
    """Per socket, seconds from now until the server closed it, or None when still open after
    `bound` seconds; what each received before is added to `received`."""
    start = time.monotonic()
    times: list[float | None] = [None] * len(socks)
    got = [b""] * len(socks)
    sel = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, i)
    try:
        while any(t is None for t in times):
            left = bound - (time.monotonic() - start)
            if left <= 0:
                break
            for key, _ in sel.select(timeout=left):
                sock, i = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                    got[i] += data
                    gone = data == b""
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    gone = True
                if gone:
                    times[i] = time.monotonic() - start
                    sel.unregister(sock)
    finally:
        sel.close()
    if received is not None:
        received += got
    return times
