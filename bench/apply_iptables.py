"""Benchmark of the iptables + ipset backend, each number beside its baseline, as a ratio.

Run as root: `.venv/bin/python bench/apply_iptables.py [--variant nft|legacy|both]
[--entries 8000] [--peers 300] [--repeat 5] [--connects 2000]`. Everything happens in network
namespaces this script creates (`nwib<suffix>`) and deletes at the end.

Rows:
- full apply of a policy with `--entries` ip_filter entries and `--peers` cluster peers, from an
  empty kernel: `IptablesBackend.apply` (read, sets, two transactions, read-back, verify,
  conntrack cut) vs the floor: `ipset restore` + `ip6tables-restore` + `iptables-restore` of
  the very text `render` prints, nothing else;
- incremental update (1% of the entries replaced): `apply` (temporary set, swap, META update,
  verify) vs the floor: `ipset restore` of the same create/fill/swap/destroy text;
- connect latency (TCP connect + close, client matching the last entry), the entries held in an
  ipset and matched by one rule vs the same entries as a linear chain of one rule each.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nodewall.backends.iptables import ipset, xtables
from nodewall.backends.iptables.backend import FAMILIES, IptablesBackend, render
from nodewall.compiler.node import compile_node
from nodewall.policy.model import AddressSet, NodePolicy, SetElement
from nodewall.spec.load import parse_spec
from specgen import big_spec

_libc = ctypes.CDLL(None, use_errno=True)
CLIENT, NODE, PORT = "10.99.0.5", "10.99.0.1", 15555


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                          check=True).stdout


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(target, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        yield
    finally:
        _libc.setns(home, 0x40000000)
        os.close(home)
        os.close(target)


def timed(fn: Callable[[], object], repeat: int, reset: Callable[[], object]) -> float:
    """Median milliseconds of `fn`, `reset` run (untimed) before each try."""
    times = []
    for _ in range(repeat):
        reset()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def big_policy(entries: int, peers: int) -> NodePolicy:
    spec = big_spec(entries - 1, peers + 1)
    spec["services"][0]["user_config"]["ip_filter"].append(f"{CLIENT.rsplit('.', 1)[0]}.0/24")
    spec["services"][0]["ports"] = {"pg": PORT}
    return compile_node(parse_spec(spec), "big-0")


def sections(text: str) -> tuple[str, dict[int, str]]:
    """The rendered text split into its `ipset restore` and per-family restore inputs."""
    parts = text.split("# ")
    sets = next(p for p in parts if p.startswith("ipset restore"))
    six = next(p for p in parts if p.startswith("ip6tables-restore"))
    four = next(p for p in parts if p.startswith("iptables-restore"))
    return (sets.split("\n", 1)[1], {6: six.split("\n", 1)[1], 4: four.split("\n", 1)[1]})


def bench_apply(variant: xtables.Variant, policy: NodePolicy, repeat: int) -> dict[str, float]:
    backend = IptablesBackend(variant)
    sets_text, family_text = sections(render(policy))

    def floor() -> None:
        sh("ipset", "restore", stdin=sets_text)
        for family in FAMILIES:
            sh(xtables.tool(variant, family, "restore"), "--noflush", stdin=family_text[family])

    full = timed(lambda: backend.apply(policy), repeat, backend.remove)
    full_floor = timed(floor, repeat, backend.remove)

    changed = policy_with_changed_entries(policy, 0.01)
    state = [policy]

    def flip() -> None:  # the next apply is a set-only change, whichever way round
        state[0] = changed if state[0] is policy else policy

    backend.remove()
    backend.apply(policy)
    incr = timed(lambda: backend.apply(state[0]), repeat, flip)
    target = changed.set("clients_v4")
    swap_text = "\n".join([*ipset.create_lines("nodewall-clients_v4-b", target),
                           "swap nodewall-clients_v4 nodewall-clients_v4-b",
                           "destroy nodewall-clients_v4-b"]) + "\n"
    incr_floor = timed(lambda: sh("ipset", "restore", stdin=swap_text), repeat, lambda: None)
    backend.remove()
    return {"full": full, "full_floor": full_floor, "incr": incr, "incr_floor": incr_floor}


def policy_with_changed_entries(policy: NodePolicy, share: float) -> NodePolicy:
    def change(s: AddressSet) -> AddressSet:
        if s.name != "clients_v4":
            return s
        n = max(1, int(len(s.elements) * share))
        fresh = tuple(SetElement(f"100.127.{i // 256}.{i % 256}/32") for i in range(n))
        return dataclasses.replace(s, elements=s.elements[n:] + fresh)

    return dataclasses.replace(policy, sets=tuple(change(s) for s in policy.sets))


def connect_latency(node_ns: str, client_ns: str, count: int) -> tuple[float, float]:
    """Median and 99th percentile microseconds of connect + close from the client."""
    samples: list[float] = []
    with inside(client_ns):
        for i in range(count + count // 10):  # the first tenth warms up, untimed
            if i == count // 10:
                samples.clear()
            s = socket.socket()
            s.bind((CLIENT, 0))
            start = time.perf_counter()
            s.connect((NODE, PORT))
            samples.append((time.perf_counter() - start) * 1e6)
            s.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def linear_text(policy: NodePolicy) -> str:
    """The client rule as one rule per network, the client's own network last."""
    mine = f"{CLIENT.rsplit('.', 1)[0]}.0/24"
    nets = [n for n in policy.set("clients_v4").networks if n != mine] + [mine]
    lines = ["*filter", ":NODEWALL-INPUT - [0:0]", "-I INPUT 1 -j NODEWALL-INPUT",
             "-A NODEWALL-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    lines += [f"-A NODEWALL-INPUT -s {n} -p tcp -m tcp --dport {PORT} -j ACCEPT" for n in nets]
    lines += ["-A NODEWALL-INPUT -p tcp -j REJECT --reject-with tcp-reset", "COMMIT"]
    return "\n".join(lines) + "\n"


def bench_latency(variant: xtables.Variant, policy: NodePolicy, node_ns: str, client_ns: str,
                  count: int) -> dict[str, float]:
    backend = IptablesBackend(variant)
    out: dict[str, float] = {}
    with inside(node_ns):
        backend.remove()
    out["none"], out["none_p99"] = connect_latency(node_ns, client_ns, count)
    with inside(node_ns):
        backend.apply(policy)
    out["ipset"], out["ipset_p99"] = connect_latency(node_ns, client_ns, count)
    with inside(node_ns):
        backend.remove()
        sh(xtables.tool(variant, 4, "restore"), "--noflush", stdin=linear_text(policy))
    out["linear"], out["linear_p99"] = connect_latency(node_ns, client_ns, count)
    with inside(node_ns):
        sh(xtables.tool(variant, 4, "restore"), "--noflush", stdin=(
            "*filter\n:NODEWALL-INPUT - [0:0]\n-D INPUT -j NODEWALL-INPUT\n"
            "-X NODEWALL-INPUT\nCOMMIT\n"))
    return out


SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""


def serve(node_ns: str) -> subprocess.Popen[str]:
    """A TCP server in the node namespace, its own process (no GIL shared with the client)."""
    proc = subprocess.Popen(["ip", "netns", "exec", node_ns, sys.executable, "-c", SERVER,
                             NODE, str(PORT)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--variant", choices=["nft", "legacy", "both"], default="both")
    parser.add_argument("--entries", type=int, default=8000)
    parser.add_argument("--peers", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--connects", type=int, default=2000)
    args = parser.parse_args()
    policy = big_policy(args.entries, args.peers)
    sfx = secrets.token_hex(3)
    node_ns, client_ns = f"nwib{sfx}n", f"nwib{sfx}c"
    variants: list[xtables.Variant] = ["nft", "legacy"] if args.variant == "both" else [
        args.variant]
    rows: dict[str, dict[str, float]] = {}
    server: subprocess.Popen[str] | None = None
    try:
        for ns in (node_ns, client_ns):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"nwib{sfx}a", "netns", node_ns, "type", "veth", "peer", "name",
           f"nwib{sfx}b", "netns", client_ns)
        sh("ip", "-n", node_ns, "addr", "add", f"{NODE}/24", "dev", f"nwib{sfx}a")
        sh("ip", "-n", client_ns, "addr", "add", f"{CLIENT}/24", "dev", f"nwib{sfx}b")
        sh("ip", "-n", node_ns, "link", "set", f"nwib{sfx}a", "up")
        sh("ip", "-n", client_ns, "link", "set", f"nwib{sfx}b", "up")
        server = serve(node_ns)
        for variant in variants:
            with inside(node_ns):
                rows[variant] = bench_apply(variant, policy, args.repeat)
            rows[variant] |= bench_latency(variant, policy, node_ns, client_ns, args.connects)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for ns in (node_ns, client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    v4 = len(policy.set("clients_v4").elements)
    print(f"policy: {v4} ip_filter networks in clients_v4, "
          f"{len(policy.set('peers_v4').elements)} peers (v4) + "
          f"{len(policy.set('peers_v6').elements)} (v6); median of {args.repeat} runs; "
          f"{args.connects} connects per latency row\n")
    print("| measurement | variant | nodewall iptables | baseline | ratio |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| full apply | iptables-{name} | {r['full']:.0f} ms | "
              f"{r['full_floor']:.0f} ms (restore of the same text) | "
              f"{r['full'] / r['full_floor']:.2f} |")
        print(f"| incremental (1% of entries) | iptables-{name} | {r['incr']:.0f} ms | "
              f"{r['incr_floor']:.0f} ms (ipset restore of the swap) | "
              f"{r['incr'] / r['incr_floor']:.2f} |")
        print(f"| connect latency, median (p99) | iptables-{name} | ipset: "
              f"{r['ipset']:.0f} µs ({r['ipset_p99']:.0f}) | linear chain: {r['linear']:.0f} µs "
              f"({r['linear_p99']:.0f}); no firewall: {r['none']:.0f} µs | "
              f"{r['ipset'] / r['linear']:.2f} |")


if __name__ == "__main__":
    main()
