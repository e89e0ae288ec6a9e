"""A stand-in server for a component the lab does not run for real: `python -m
nodewall.lab.listener NAME PORT...` listens on every address of its namespace (IPv4 and IPv6)
on each TCP port, answers each connection with one line (`NAME PORT`) and closes it.

It is run inside a node's namespace by the lab; it is never given customer text.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys


def serve(name: str, ports: list[int]) -> None:
    selector = selectors.DefaultSelector()
    for port in ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.listen(128)
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ, port)
    print(f"listening on {' '.join(map(str, ports))}", flush=True)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                continue
            with conn:
                conn.setblocking(True)
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    conn.sendall(f"{name} {key.data}\n".encode())


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not all(a.isdigit() for a in argv[1:]):
        print("usage: python -m nodewall.lab.listener NAME PORT...", file=sys.stderr)
        return 2
    try:
        serve(argv[0], [int(p) for p in argv[1:]])
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
