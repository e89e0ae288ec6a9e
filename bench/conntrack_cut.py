"""Conntrack cut benchmark: `nodewall.backends.conntrack.cut_refused_flows` (netlink,
in-process) side by side with the subprocess implementation it replaced (`ip -j address`,
`conntrack -L` per family, `conntrack -D` per refused group), loaded from git at commit
LEGACY_COMMIT; skipped when git or the conntrack tool is missing.

Scenarios, each timed inside the node namespace (conntrack on, as under a nodewall ruleset):
1. empty: no conntrack entry;
2. admitted: N established TCP flows from clients the policy admits (nothing to cut);
3. refused: N established TCP flows from clients it refuses (all cut; rebuilt before each run).
The N flows come from S addresses of a client namespace (N/S flows each) joined to the node by a
veth pair. Both implementations must report the same number of flows cut.

Everything runs in network namespaces this script creates (prefix `nwct` + random hex) and
deletes, even on failure. Run as root:
`.venv/bin/python bench/conntrack_cut.py [--flows 1000] [--sources 20] [--repeat 15]`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import resource
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "kernel"))

from kspecs import PG_PORT, policy, public  # noqa: E402
from netns import entered  # noqa: E402

from nodewall.backends.conntrack import cut_refused_flows  # noqa: E402
from nodewall.policy.model import NodePolicy  # noqa: E402

#: The last commit whose conntrack cut ran the conntrack and ip tools.
LEGACY_COMMIT = "9145531211a588ee7bb789cddf1f4e7d11f46f44"
NODE_ADDR = "10.20.0.11"  # pg-prod-1 of kspecs.PUBLIC
ADMITTED_NET, REFUSED_NET = "100.64.0.0/16", "100.65.0.0/16"  # in ip_filter / not

Cut = Callable[[NodePolicy], int]


def source(net: str, index: int) -> str:
    """The client address number `index` of network `net`."""
    return str(ipaddress.ip_network(net)[10 + index])


def sh(*argv: str, stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


@contextlib.contextmanager
def namespaces(sources: int) -> Iterator[tuple[str, str]]:
    """A node namespace (conntrack on, listening on PG_PORT) and a client namespace holding
    `sources` admitted and `sources` refused addresses, joined by a veth pair."""
    prefix = f"nwct{secrets.token_hex(3)}"
    node, client = f"{prefix}-node", f"{prefix}-client"
    made = []
    try:
        for ns in (node, client):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", f"{prefix}a", "netns", node, "type", "veth", "peer", "name",
           f"{prefix}b", "netns", client)
        for ns, dev in ((node, f"{prefix}a"), (client, f"{prefix}b")):
            lines = ["link set lo up", f"link set {dev} up", f"route add default dev {dev}"]
            if ns == node:
                lines.append(f"address add {NODE_ADDR}/32 dev {dev}")
            else:
                lines += [f"address add {source(net, i)}/32 dev {dev}" for i in range(sources)
                          for net in (ADMITTED_NET, REFUSED_NET)]
            sh("ip", "-n", ns, "-batch", "-", stdin="\n".join(lines) + "\n")
        sh("ip", "netns", "exec", node, "nft", "-f", "-", stdin=(
            "table inet nwct {\n chain input {\n  type filter hook input priority 0;\n"
            "  ct state established accept\n }\n}\n"))
        yield node, client
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def flush(ns: str) -> None:
    """Delete every conntrack entry of namespace `ns` (ctnetlink delete without a tuple)."""
    with entered(ns):
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
    with s:
        s.bind((0, 0))
        s.send(struct.pack("=IHHII", 20, (1 << 8) | 2, 0x1 | 0x4, 1, 0) + bytes(4))
        s.recv(4096)


class Flows:
    """N established TCP flows from the client namespace to the node's listener."""

    def __init__(self, node: str, client: str, net: str, count: int, sources: int,
                 listener: socket.socket) -> None:
        self.clients: list[socket.socket] = []
        self.accepted: list[socket.socket] = []
        with entered(client):
            for i in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.clients.append(s)
                s.bind((source(net, i % sources), 0))
                s.connect((NODE_ADDR, PG_PORT))
        for _ in range(count):
            self.accepted.append(listener.accept()[0])

    def close(self) -> None:
        for s in self.clients + self.accepted:  # clients first: resets, no new entries
            s.close()


def legacy_cut() -> Cut | None:
    """The subprocess implementation, as it was at LEGACY_COMMIT; None when unavailable."""
    if shutil.which("conntrack") is None or shutil.which("git") is None:
        return None
    proc = subprocess.run(["git", "-C", str(HERE.parent), "show",
                           f"{LEGACY_COMMIT}:src/nodewall/backends/conntrack.py"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    module = types.ModuleType("nodewall_legacy_conntrack")
    sys.modules[module.__name__] = module
    exec(compile(proc.stdout, "legacy_conntrack.py", "exec"), module.__dict__)
    cut: Cut = module.cut_refused_flows
    return cut


def timed(ns: str, cut: Cut, pol: NodePolicy, expect: int) -> float:
    with entered(ns):
        start = time.perf_counter()
        got = cut(pol)
        took = time.perf_counter() - start
    if got != expect:
        raise AssertionError(f"{cut.__module__}: {got} flows cut, expected {expect}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    want = 2 * args.flows + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    pol = policy(public(ip_filter=[ADMITTED_NET]))
    impls: dict[str, Cut] = {"netlink": cut_refused_flows}
    old = legacy_cut()
    if old is not None:
        impls["subprocess"] = old
    results: dict[str, dict[str, float]] = {}
    with namespaces(args.sources) as (node, client):
        with entered(node):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with listener:
            listener.bind((NODE_ADDR, PG_PORT))
            listener.listen(4096)

            results["empty"] = {name: statistics.median(
                timed(node, cut, pol, 0) for _ in range(2 * args.repeat))
                for name, cut in impls.items()}

            flows = Flows(node, client, ADMITTED_NET, args.flows, args.sources, listener)
            try:
                results["admitted"] = {name: statistics.median(
                    timed(node, cut, pol, 0) for _ in range(args.repeat))
                    for name, cut in impls.items()}
            finally:
                flows.close()
                flush(node)

            runs: dict[str, list[float]] = {name: [] for name in impls}
            for _ in range(max(3, args.repeat // 3)):
                for name, cut in impls.items():  # interleaved: the same machine load
                    flows = Flows(node, client, REFUSED_NET, args.flows, args.sources,
                                  listener)
                    try:
                        runs[name].append(timed(node, cut, pol, args.flows))
                    finally:
                        flows.close()
                        flush(node)
            results["refused"] = {name: statistics.median(v) for name, v in runs.items()}

    buckets = Path("/proc/sys/net/netfilter/nf_conntrack_buckets").read_text().strip()
    print(f"conntrack cut, median ms ({args.flows} TCP flows from {args.sources} sources; "
          f"nf_conntrack_buckets {buckets})")
    print(f"{'scenario':<10} {'netlink':>9} {'subprocess':>11} {'ratio':>7}")
    for scenario, times in results.items():
        new = times["netlink"] * 1e3
        line = f"{scenario:<10} {new:>9.2f}"
        if "subprocess" in times:
            base = times["subprocess"] * 1e3
            line += f" {base:>11.2f} {base / new:>6.1f}x"
        else:
            line += f" {'(n/a)':>11}"
        print(line)


if __name__ == "__main__":
    main()
