"""Verdict probes and connect latency between a `Pair`'s client and node namespaces.

`verdicts` opens listeners on the node's management, pg and pgbouncer ports and tries a
handful of TCP connections from the client namespace's source addresses (allowed client,
refused client, cluster peer, management host; IPv4 and IPv6), each classified `open`,
`reset` (a TCP reset came back), `unreachable` (an ICMP error came back) or `timeout`
(dropped). What came back is read from a packet socket in the client namespace, since a
TCP connect fails with "connection refused" for a reset and for ICMP port-unreachable
alike. The same probes on two rulesets giving the same outcomes is what makes their
timings comparable. `connect_latency` is the median TCP handshake time from the allowed
client, whose network is the ip_filter's last entry.

Traffic stays on the pair's veth link; sockets are moved into a namespace per thread
(`netns.entered`), never the process.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from netns import entered

from .node import CLIENT_V4, NODE_V4, NODE_V6, NodeFacts


@dataclass(frozen=True)
class Probe:
    label: str
    source: str
    port: int


def probes(facts: NodeFacts) -> list[Probe]:
    pg, bouncer = facts.client_ports[0], facts.client_ports[-1]
    ssh, mgmt = facts.mgmt_ports[0], facts.mgmt_ports[-1]
    return [
        Probe("allowed client -> pg", CLIENT_V4, pg),
        Probe("allowed client -> pgbouncer", CLIENT_V4, bouncer),
        Probe("allowed client -> ssh", CLIENT_V4, ssh),
        Probe("refused client -> pg", "192.0.2.99", pg),
        Probe("refused client -> management", "192.0.2.99", mgmt),
        Probe("peer -> pg", "10.128.0.2", pg),
        Probe("management -> ssh", "198.51.100.5", ssh),
        Probe("management -> pg", "198.51.100.5", pg),
        Probe("v6 refused -> pg", "2001:db8:bad::99", pg),
        Probe("v6 peer -> pgbouncer", "fd00:be::2", bouncer),
        Probe("v6 management -> management", "2001:db8:ff::5", mgmt),
        Probe("v6 refused -> ssh", "2001:db8:bad::99", ssh),
    ]


@contextlib.contextmanager
def listening(node_ns: str, ports: list[int]) -> Iterator[None]:
    """Dual-stack TCP listeners in the node namespace that accept and close at once."""
    socks = []
    with entered(node_ns):
        for port in ports:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::", port))
            s.listen(1024)
            s.settimeout(0.1)
            socks.append(s)
    stop = threading.Event()

    def serve(s: socket.socket) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = s.accept()
                conn.close()

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in socks:
            s.close()


def _client_socket(client_ns: str, source: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    with entered(client_ns):
        s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.bind((source, 0))
    return s


def attempt(client_ns: str, source: str, port: int, timeout: float = 1.0) -> str:
    target = NODE_V6 if ":" in source else NODE_V4
    s = _client_socket(client_ns, source)
    s.settimeout(timeout)
    try:
        s.connect((target, port))
        return "open"
    except ConnectionRefusedError:
        return "reset"
    except TimeoutError:
        return "timeout"
    except OSError as e:
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
            return "unreachable"
        raise
    finally:
        s.close()


def answers(capture: socket.socket) -> set[str]:
    """What arrived on the capture socket since it was last drained: `reset`, `unreachable`."""
    seen: set[str] = set()
    while True:
        try:
            frame, address = capture.recvfrom(65535)
        except BlockingIOError:
            return seen
        if address[2] == socket.PACKET_OUTGOING or len(frame) < 14:
            continue
        ethertype = int.from_bytes(frame[12:14], "big")
        if ethertype == 0x0800 and len(frame) >= 34:
            header = 14 + (frame[14] & 0x0F) * 4
            proto, icmp_error = frame[23], 3
        elif ethertype == 0x86DD and len(frame) >= 54:
            header, proto, icmp_error = 54, frame[20], 1
        else:
            continue
        if proto == 6 and len(frame) > header + 13 and frame[header + 13] & 0x04:
            seen.add("reset")
        elif proto in (1, 58) and len(frame) > header and frame[header] == icmp_error:
            seen.add("unreachable")


def verdicts(node_ns: str, client_ns: str, facts: NodeFacts, timeout: float = 1.0
             ) -> dict[str, str]:
    """Outcome of every probe against whatever ruleset the node namespace holds now."""
    checks = probes(facts)
    with entered(client_ns):
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    capture.setblocking(False)
    out: dict[str, str] = {}
    try:
        with listening(node_ns, sorted({p.port for p in checks})):
            for p in checks:
                answers(capture)
                outcome = attempt(client_ns, p.source, p.port, timeout)
                if outcome != "open":
                    time.sleep(0.01)
                    seen = answers(capture)
                    outcome = ("unreachable" if "unreachable" in seen else
                               "reset" if "reset" in seen else outcome)
                out[p.label] = outcome
    finally:
        capture.close()
    return out


def differences(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """One line per probe whose outcome differs: what was expected, what was found."""
    return [f"{label}: expected {want}, found {found.get(label, 'no probe')}"
            for label, want in expected.items() if found.get(label) != want]


def connect_latency(node_ns: str, client_ns: str, port: int, count: int) -> float:
    """Median seconds for a TCP handshake from the allowed client to `port`."""
    runs = []
    with listening(node_ns, [port]):
        for _ in range(count):
            s = _client_socket(client_ns, CLIENT_V4)
            start = time.perf_counter()
            s.connect((NODE_V4, port))
            runs.append(time.perf_counter() - start)
            s.close()
    return statistics.median(runs)
