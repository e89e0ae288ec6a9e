"""Network namespaces for the lab: a switch namespace with a bridge, one namespace per host wired
to it by a veth pair, addresses and on-link default routes; a thread's entry into a namespace.

Every link is made inside the lab's own namespaces (`ip -n`): the root namespace's links,
addresses and firewall are never touched. Names carry the run's prefix.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

PREFIX = "nwlab"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class LabError(RuntimeError):
    """Something the lab needs failed; the message says what."""


def sh(*args: str, ns: str | None = None, check: bool = True) -> str:
    """Run a command (no shell), inside namespace `ns` when given; its stdout."""
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns {what}: {os.strerror(err)}")


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """Run the body with the calling thread (only) inside namespace `ns`; sockets made there
    stay there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target, ns)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home, "back home")
    finally:
        os.close(home)


def existing(prefix: str = PREFIX) -> list[str]:
    """The namespaces whose names start with `prefix` (the lab's, of this run or a killed one)."""
    out = sh("ip", "netns", "list", check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def pids_in(ns: str) -> list[int]:
    out = sh("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


class Segment:
    """One L2 segment: a bridge in namespace `<prefix>-sw` and hosts attached to it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.switch = f"{prefix}-sw"

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def open(self) -> None:
        sh("ip", "netns", "add", self.switch)
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, host: str, addresses: tuple[str, ...]) -> str:
        """A namespace for `host`, wired to the bridge, holding `addresses`; its name."""
        ns = self.ns(host)
        sh("ip", "netns", "add", ns)
        port = f"s-{host}"[:15]  # the switch side of the host's veth
        sh("ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        sh("ip", "-n", self.switch, "link", "set", port, "master", "br0", "up")
        for cmd in (["link", "set", "lo", "up"], ["link", "set", "eth0", "up"]):
            sh("ip", "-n", ns, *cmd)
        for address in addresses:
            self.add_address(host, address)
        sh("ip", "-n", ns, "route", "add", "default", "dev", "eth0")
        sh("ip", "-n", ns, "-6", "route", "add", "default", "dev", "eth0")
        # ICMP error rate limits are the host's business; off here so every probe is answered.
        sh("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
           "net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=10000", ns=ns)
        return ns

    def add_address(self, host: str, address: str) -> None:
        v6 = ":" in address
        sh("ip", "-n", self.ns(host), "address", "add", f"{address}/{128 if v6 else 32}",
           "dev", "eth0", *(["nodad"] if v6 else []))

    def remove_host(self, host: str) -> None:
        remove_namespace(self.ns(host))


def remove_namespace(ns: str) -> None:
    """Kill what still runs in `ns`, then delete it (its veth goes with it)."""
    import signal

    for pid in pids_in(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
