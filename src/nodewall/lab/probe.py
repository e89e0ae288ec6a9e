"""Real connections, classified: `open` (the handshake completed), `refused` (a reset or an ICMP
error came back) or `timeout` (nothing came back). From a chosen namespace and source address;
a PostgreSQL port is also asked by the real client (`pg_isready`), and an `ece` node's way out
through its SOCKS5 proxy by a SOCKS5 handshake (RFC 1928) and a request through it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import subprocess
from collections.abc import Callable

from nodewall.lab.netns import entered

OPEN, REFUSED, TIMEOUT = "open", "refused", "timeout"
_REFUSED = {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH,
            errno.EACCES, errno.EPERM, errno.EHOSTDOWN}


def _socket(ns: str, src: str, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    with entered(ns):
        s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # no TIME_WAIT
    if family == socket.AF_INET:
        s.setsockopt(socket.SOL_IP, 11, 1)  # IP_RECVERR: every ICMP error is reported
    else:
        s.setsockopt(socket.IPPROTO_IPV6, 25, 1)  # IPV6_RECVERR
    s.bind((src, 0))
    return s


def _classified(ns: str, src: str, timeout: float,
                attempt: Callable[[socket.socket], str]) -> str:
    """Run `attempt` on a fresh socket: its answer, or the refusal or timeout it met."""
    s = _socket(ns, src, timeout)
    try:
        return attempt(s)
    except TimeoutError:
        return TIMEOUT
    except OSError as exc:
        if exc.errno in _REFUSED:
            return REFUSED
        raise
    finally:
        s.close()


def tcp(ns: str, src: str, dst: str, port: int, timeout: float = 1.0) -> str:
    """One new TCP connection src -> dst:port from namespace `ns`."""
    def connect(s: socket.socket) -> str:
        s.connect((dst, port))
        return OPEN

    return _classified(ns, src, timeout, connect)


def pg_isready(ns: str, dst: str, port: int) -> bool:
    """Does a real PostgreSQL server answer `pg_isready` at dst:port (from namespace `ns`)?"""
    proc = subprocess.run(["ip", "netns", "exec", ns, "pg_isready", "-q", "-h", dst, "-p",
                           str(port), "-t", "2"], capture_output=True, check=False)
    return proc.returncode == 0


def through_socks5(ns: str, src: str, proxy: tuple[str, int], dst: tuple[str, int],
                   timeout: float = 2.0) -> str:
    """Connect to the proxy and ask it for dst (no authentication); `open` when the proxy
    reports success and the far side's first line arrives."""
    def ask(s: socket.socket) -> str:
        s.connect(proxy)
        s.sendall(b"\x05\x01\x00")
        if s.recv(2) != b"\x05\x00":
            return REFUSED
        address = ipaddress.ip_address(dst[0])
        kind = b"\x01" if address.version == 4 else b"\x04"
        s.sendall(b"\x05\x01\x00" + kind + address.packed + struct.pack("!H", dst[1]))
        reply = s.recv(4)
        if len(reply) < 4 or reply[1] != 0:
            return REFUSED
        s.recv(4 + 2 if reply[3:4] == b"\x01" else 16 + 2)  # the bound address and port
        return OPEN if s.recv(64) else REFUSED

    return _classified(ns, src, timeout, ask)
