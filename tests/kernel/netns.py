"""Real-kernel test fixtures: network namespaces on one L2 segment, listeners, probes.

A `Topology` is a switch namespace holding a bridge and one namespace per host (the node under
test, a cluster peer, an allowed office, an internet host, a management host, a VPC peer), each
wired to the bridge by a veth pair, with IPv4 and IPv6 addresses and an on-link default route
(every address is reachable on the segment). Every name carries a per-run prefix (`nwn` + a
random suffix) and everything is deleted on `close()`, even after a failure. Traffic never
leaves these namespaces. Probes classify an attempt as `open`, `refused` (RST or ICMP
unreachable) or `timeout`.

Threads: `entered(ns)` moves only the calling thread into a namespace (setns), and back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

# one way to run a command in a namespace and to enter one: the lab's (its errors are
# RuntimeErrors)
from nodewall.lab.netns import entered, sh

_libc = ctypes.CDLL("libc.so.6", use_errno=True)

#: host role -> (IPv4, IPv6) address; all private or documentation addresses.
HOSTS: dict[str, tuple[str, str]] = {
    "node": ("10.20.0.11", "2001:db8:20::11"),
    "peer": ("10.20.0.12", "2001:db8:20::12"),
    "office": ("203.0.113.10", "2001:db8:1::10"),
    "internet": ("192.0.2.99", "2001:db8:bad::99"),
    "mgmt": ("198.51.100.5", "2001:db8:ff::5"),
    "vpc": ("10.50.0.7", "2001:db8:50::7"),
    "metadata": ("169.254.169.254", "2001:db8:a9::254"),
}


def kernel_ready() -> str | None:
    """None when namespaces and nftables can be used here, else why not."""
    if os.geteuid() != 0:
        return "kernel tests need root"
    probe = f"nwn{secrets.token_hex(3)}"
    try:
        sh("ip", "netns", "add", probe)
        sh("nft", "list", "ruleset", ns=probe)
    except (RuntimeError, FileNotFoundError) as exc:
        return f"network namespaces or nft unusable: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@dataclass
class Topology:
    prefix: str = field(default_factory=lambda: f"nwn{secrets.token_hex(2)}")
    namespaces: list[str] = field(default_factory=list)
    #: role -> (IPv4, IPv6) of each host namespace on the segment (default: `HOSTS`)
    hosts: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(HOSTS))

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def open(self) -> Topology:
        switch = self.ns("sw")
        self._add_ns(switch)
        sh("ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0", ns=switch)
        sh("ip", "link", "set", "br0", "up", ns=switch)
        for index, (role, (v4, v6)) in enumerate(self.hosts.items()):
            host = self.ns(role)
            self._add_ns(host)
            outer, inner = f"{self.prefix}s{index}", f"{self.prefix}h{index}"
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", outer, "netns", switch)
            sh("ip", "link", "set", inner, "netns", host)
            sh("ip", "link", "set", outer, "master", "br0", "up", ns=switch)
            for cmd in (
                ["ip", "link", "set", inner, "name", "eth0"],
                ["ip", "link", "set", "eth0", "up"],
                ["ip", "link", "set", "lo", "up"],
                ["ip", "address", "add", f"{v4}/32", "dev", "eth0"],
                ["ip", "address", "add", f"{v6}/128", "dev", "eth0", "nodad"],
                ["ip", "route", "add", "default", "dev", "eth0"],
                ["ip", "-6", "route", "add", "default", "dev", "eth0"],
                # ICMP error rate limits are the host's setting; off here so probes are exact.
                ["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
                 "net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=10000"],
            ):
                sh(*cmd, ns=host)
        return self

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)

    def add_address(self, role: str, address: str) -> None:
        """Give host `role` one more address (idempotent)."""
        plen = "32" if ":" not in address else "128"
        extra = [] if plen == "32" else ["nodad"]
        proc = subprocess.run(["ip", "netns", "exec", self.ns(role), "ip", "address", "add",
                               f"{address}/{plen}", "dev", "eth0", *extra],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 and "File exists" not in proc.stderr:
            raise RuntimeError(f"adding {address} to {role}: {proc.stderr.strip()}")

    def close(self) -> None:
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.namespaces.clear()


class Listeners:
    """TCP echo and UDP echo servers on given ports (IPv4 and IPv6) inside one namespace."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.ports: dict[tuple[str, int], socket.socket] = {}
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def ensure(self, tcp: set[int] | tuple[int, ...] = (),
               udp: set[int] | tuple[int, ...] = ()) -> None:
        with entered(self.ns), self.lock:
            for proto, ports in (("tcp", tcp), ("udp", udp)):
                for port in ports:
                    if (proto, port) in self.ports:
                        continue
                    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
                    s = socket.socket(socket.AF_INET6, kind)
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("::", port))
                    if proto == "tcp":
                        s.listen(512)
                    s.setblocking(False)
                    self.ports[(proto, port)] = s
                    self.sel.register(s, selectors.EVENT_READ, proto)

    def ensure_udp_at(self, addresses: set[str] | tuple[str, ...],
                      ports: set[int] | tuple[int, ...]) -> None:
        """UDP echo on each address:port, one socket bound to each, so a reply leaves from the
        address the request went to (a wildcard socket answers from the host's primary address,
        which a client of one of its other addresses ignores)."""
        with entered(self.ns), self.lock:
            for address in addresses:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                for port in ports:
                    key = (f"udp@{address}", port)
                    if key in self.ports:
                        continue
                    s = socket.socket(family, socket.SOCK_DGRAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((address, port))
                    s.setblocking(False)
                    self.ports[key] = s
                    self.sel.register(s, selectors.EVENT_READ, "udp")

    def _serve(self) -> None:
        while not self.stop:
            with self.lock:
                events = self.sel.select(timeout=0) if self.sel.get_map() else []
            if not events:
                threading.Event().wait(0.002)
                continue
            for key, _ in events:
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                with contextlib.suppress(OSError):
                    if key.data == "udp":
                        data, peer = sock.recvfrom(2048)
                        sock.sendto(data, peer)
                    elif key.data == "tcp":
                        conn, _ = sock.accept()
                        conn.setblocking(False)
                        with self.lock:
                            self.sel.register(conn, selectors.EVENT_READ, "conn")
                    else:
                        data = sock.recv(2048)
                        if data:
                            sock.sendall(data)
                        else:
                            with self.lock:
                                self.sel.unregister(sock)
                            sock.close()

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=2)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


#: The probe outcome each verdict of the reference evaluator (`nodewall.policy.evaluator`) means.
OUTCOME = {"accept": "open", "reject": "refused", "drop": "timeout"}

REFUSED = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES,
           errno.EPERM, errno.ECONNRESET}


@contextlib.contextmanager
def socket_owner(uid: int | None) -> Iterator[None]:
    """Sockets the calling thread creates in the body belong to `uid` (what an owner match,
    `meta skuid` or `-m owner`, sees: the creator's filesystem uid). Only the calling thread's
    fsuid changes (setfsuid is per thread), and it is restored. None: no change."""
    if uid is None:
        yield
        return
    old = _libc.setfsuid(uid)
    try:
        if _libc.setfsuid(-1) != uid:  # setfsuid reports failure only by not changing it
            raise OSError(errno.EPERM, f"setfsuid({uid}) failed")
        yield
    finally:
        _libc.setfsuid(old)


def probe(ns: str, src: str, dst: str, proto: str, port: int, timeout: float = 0.5,
          why: list[str] | None = None, uid: int | None = None) -> str:
    """Try one new connection from `src` (an address of namespace `ns`) to dst:port. `why`
    collects the errno name of a refusal; `uid` owns the socket (see `socket_owner`)."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with entered(ns), socket_owner(uid):
        s = socket.socket(family, kind)
    try:
        s.settimeout(timeout)
        if kind == socket.SOCK_STREAM:  # close with a reset: no TIME_WAIT, ports are reused
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if family == socket.AF_INET:
            s.setsockopt(socket.SOL_IP, 11, 1)  # IP_RECVERR: report every ICMP error
        else:
            s.setsockopt(socket.IPPROTO_IPV6, 25, 1)  # IPV6_RECVERR
        s.bind((src, 0))
        s.connect((dst, port))
        if proto == "tcp":
            return "open"
        s.send(b"probe")
        s.recv(64)
        return "open"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        if exc.errno in REFUSED:
            if why is not None:
                why.append(errno.errorcode.get(exc.errno or 0, str(exc.errno)))
            return "refused"
        raise
    finally:
        s.close()


_PROBE_AS = """
import errno, socket, sys
proto, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(0.5)
if family == socket.AF_INET:
    s.setsockopt(socket.SOL_IP, 11, 1)
else:
    s.setsockopt(socket.IPPROTO_IPV6, 25, 1)
try:
    s.connect((dst, port))
    if proto == "udp":
        s.send(b"x"); s.recv(9)
    print("open")
except TimeoutError:
    print("timeout")
except OSError as exc:
    print("refused", errno.errorcode.get(exc.errno or 0, exc.errno))
"""


def probe_as(ns: str, uid: int, proto: str, dst: str, port: int,
             why: list[str] | None = None) -> str:
    """One new connection from namespace `ns` to dst:port by a process of its own running as
    `uid` (setpriv: real, effective and filesystem uid, no groups), as a real program of that
    user makes it. `open` or `timeout` as `probe` says them; `refused` on any error, whose errno
    name `why` collects."""
    out = sh("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable,
             "-c", _PROBE_AS, proto, dst, str(port), ns=ns).split()
    if out[0] == "refused" and why is not None:
        why.append(out[1])
    return out[0]


def probe_raw(ns: str, src: str, dst: str, protocol: int = 50, timeout: float = 0.5) -> str:
    """Send one raw IP packet of `protocol` (ESP: 50). `open` when it reached the node's stack
    (which, holding no IPsec state, answers protocol-unreachable), `refused` on an
    administratively-prohibited answer from the firewall, else `timeout`."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with entered(ns):
        s = socket.socket(family, socket.SOCK_RAW, protocol)
    try:
        s.settimeout(timeout)
        if family == socket.AF_INET:
            s.setsockopt(socket.SOL_IP, 11, 1)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, 25, 1)
        s.bind((src, 0))
        s.connect((dst, 0))
        s.send(b"\x00\x00\x10\x01\x00\x00\x00\x01" + b"\x00" * 24)
        s.recv(64)
        return "open"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EPROTO):  # v4 and v6 "unknown protocol"
            return "open"
        if exc.errno in REFUSED:
            return "refused"
        raise
    finally:
        s.close()


def _checksum(data: bytes) -> int:
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2))
    if len(data) % 2:
        total += data[-1] << 8
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def stray_ack(ns: str, src: str, dst: str, port: int, timeout: float = 0.5) -> str:
    """A bare TCP ACK from src (IPv4) to dst:port that belongs to no connection: `reset` when a
    RST comes back (the node's stack saw it), `timeout` when nothing does (dropped on the way;
    with the namespace's `nf_conntrack_tcp_loose` at 0 such a packet is `ct state invalid`)."""
    sport = 40000 + secrets.randbelow(20000)
    seq, ack = secrets.randbits(32), secrets.randbits(32)
    header = struct.pack("!HHIIBBHHH", sport, port, seq, ack, 5 << 4, 0x10, 1024, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6,
                                                                         len(header))
    header = header[:16] + _checksum(pseudo + header).to_bytes(2, "big") + header[18:]
    with entered(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    try:
        s.bind((src, 0))
        s.sendto(header, (dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, (peer, _) = s.recvfrom(2048)
            except TimeoutError:
                break
            tcp = data[(data[0] & 0x0F) * 4:]
            fields = struct.unpack("!HH", tcp[:4])
            if peer == dst and fields == (port, sport) and tcp[13] & 0x04:
                return "reset"
        return "timeout"
    finally:
        s.close()


def ping(ns: str, src: str, dst: str, timeout: float = 1.0, refused: bool = False) -> str:
    """One ICMP(v6) echo request: `open` when the echo reply comes back in time. With
    `refused`, a destination-unreachable (a reject) quoting this request gives `refused`;
    without, such an answer is ignored (and the ping times out)."""
    v6 = ":" in dst
    family, proto = ((socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6
                     else (socket.AF_INET, socket.IPPROTO_ICMP))
    request, reply = (128, 129) if v6 else (8, 0)
    ident = secrets.randbelow(0xFFFF)
    header = bytes([request, 0, 0, 0]) + ident.to_bytes(2, "big") + b"\x00\x01"
    packet = header + b"nodewall-ping"
    if not v6:  # the kernel computes the ICMPv6 checksum itself
        packet = packet[:2] + _checksum(packet).to_bytes(2, "big") + packet[4:]
    with entered(ns):
        s = socket.socket(family, socket.SOCK_RAW, proto)
    try:
        s.settimeout(timeout)
        s.bind((src, 0))
        s.sendto(packet, (dst, 0))
        while True:
            data = s.recv(2048)
            icmp = data if v6 else data[(data[0] & 0x0F) * 4 :]
            if icmp[0] == reply and int.from_bytes(icmp[4:6], "big") == ident:
                return "open"
            if refused and icmp[0] == (1 if v6 else 3):
                # the quoted packet: IPv6 header (40 bytes) or IPv4 header, then our request
                inner = icmp[8:]
                quoted = inner[40:] if v6 else inner[(inner[0] & 0x0F) * 4 :]
                if quoted[:1] == bytes([request]) and quoted[4:6] == ident.to_bytes(2, "big"):
                    return "refused"
    except TimeoutError:
        return "timeout"
    finally:
        s.close()
