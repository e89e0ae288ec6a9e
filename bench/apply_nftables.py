"""nftables backend benchmarks, each side by side with its floor in the same run.

1. Full apply of a node with 8000 ip_filter entries and 300 peers: nodewall end to end (load
   spec, compile, build the messages, one transaction, read back and verify, conntrack cut) vs
   `nft -f` of the rendered text of the same table. Both start from a namespace without the
   table. The stage line times each step of nodewall's run.
2. One ip_filter entry added (7999 -> 8000) and removed again, in place: `apply` of the freshly
   compiled policy by a long-lived backend (the agent's case; the policy's version digest is
   computed inside, and once more with it already known, as when the control plane sends
   it), and as a command (load spec, compile, a new backend that reads the kernel first); vs
   the full apply, and vs adding the same element with libnftables (in-process handle, and
   an `nft` process), the way the backend worked before.
3. New-connection latency from an allowed client with 1 vs 8000 ip_filter entries (set lookup),
   and with 8000 entries as a linear rule chain for contrast.

Everything runs in network namespaces this script creates (prefix `nwnb`) and deletes.
Run as root: `.venv/bin/python bench/apply_nftables.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "kernel"))

from netns import entered  # noqa: E402

from nodewall.backends.nftables import nfnetlink  # noqa: E402
from nodewall.backends.nftables import wire as nftwire  # noqa: E402
from nodewall.backends.nftables.backend import NftablesBackend, render  # noqa: E402
from nodewall.compiler.node import compile_node  # noqa: E402
from nodewall.gcpause import collector_paused  # noqa: E402
from nodewall.spec.load import load_spec  # noqa: E402
from specgen import big_spec  # noqa: E402

NODE = "big-0"
CLIENT_NET = "203.0.113.0/24"
NODE_ADDR, CLIENT_ADDR, PORT = "10.128.0.1", "203.0.113.7", 14017


def sh(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@contextlib.contextmanager
def namespaces(prefix: str) -> Iterator[tuple[str, str]]:
    """A node namespace and a client namespace joined by a veth pair."""
    node, client = f"{prefix}-node", f"{prefix}-client"
    try:
        sh("ip", "netns", "add", node)
        sh("ip", "netns", "add", client)
        sh("ip", "link", "add", f"{prefix}a", "netns", node, "type", "veth", "peer", "name",
           f"{prefix}b", "netns", client)
        for ns, dev, addr in ((node, f"{prefix}a", NODE_ADDR), (client, f"{prefix}b",
                                                               CLIENT_ADDR)):
            for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", dev, "up"],
                        ["ip", "address", "add", f"{addr}/32", "dev", dev],
                        ["ip", "route", "add", "default", "dev", dev]):
                sh("ip", "netns", "exec", ns, *cmd)
        yield node, client
    finally:
        for ns in (node, client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def spec_file(entries: int, peers: int, extra: int = 0) -> Path:
    spec = big_spec(entries, peers + 1)
    spec["services"][0]["ports"] = {"pg": PORT}
    ip_filter = spec["services"][0]["user_config"]["ip_filter"]
    ip_filter[-1] = CLIENT_NET  # the latency client's network is one of the entries
    for i in range(extra):
        ip_filter.append(f"198.18.{i}.0/24")
    fd, name = tempfile.mkstemp(prefix="nwnb-spec-", suffix=".json")
    with open(fd, "w") as out:
        json.dump(spec, out)
    return Path(name)


def timed(fn: Callable[[], object], reset: Callable[[], object], repeat: int) -> float:
    """Median seconds of `fn`, each run after an untimed `reset`."""
    runs = []
    for _ in range(repeat):
        reset()
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def drop_table() -> None:
    subprocess.run(["nft", "delete", "table", "inet", "nodewall"], capture_output=True,
                   check=False)


class Stages:
    """Seconds spent in the backend's steps during one apply (wrappers around them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from nodewall.backends.nftables import backend as nftables

        originals = [(nftwire, "build"), (nfnetlink.NfSocket, "transaction"),
                     (nftwire, "read_image"), (nftables, "cut_refused_flows")]
        saved = [getattr(owner, name) for owner, name in originals]

        def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.seconds[label] = self.seconds.get(label, 0.0) + (
                        time.perf_counter() - start)
            return run

        labels = ["build", "transaction", "read_back", "conntrack_cut"]
        for (owner, name), label, fn in zip(originals, labels, saved, strict=True):
            setattr(owner, name, timed(label, fn))
        try:
            yield
        finally:
            for (owner, name), fn in zip(originals, saved, strict=True):
                setattr(owner, name, fn)
            del nftables


def full_apply(spec: Path, repeat: int) -> dict[str, float]:
    policy = compile_node(load_spec(spec), NODE)
    batch = "add table inet nodewall\ndelete table inet nodewall\n" + render(policy)
    with tempfile.NamedTemporaryFile("w", prefix="nwnb-", suffix=".nft") as f:
        f.write(batch)
        f.flush()

        def nodewall() -> None:  # what `nodewall apply --backend nftables` does
            with collector_paused():
                NftablesBackend().apply(compile_node(load_spec(spec), NODE))

        def floor() -> None:
            sh("nft", "-f", f.name)

        results: dict[str, list[float]] = {"nodewall": [], "floor": [], "load_spec": [],
                                           "compile": [], "build": [], "transaction": [],
                                           "read_back": [], "conntrack_cut": []}
        for _ in range(repeat):  # interleaved, so both see the same machine load
            results["nodewall"].append(timed(nodewall, drop_table, 1))
            results["floor"].append(timed(floor, drop_table, 1))
            drop_table()  # where the end-to-end time goes, stage by stage
            stages = Stages()
            with collector_paused(), stages.installed():
                marks = [time.perf_counter()]
                loaded = load_spec(spec)
                marks.append(time.perf_counter())
                compiled = compile_node(loaded, NODE)
                marks.append(time.perf_counter())
                NftablesBackend().apply(compiled)
            results["load_spec"].append(marks[1] - marks[0])
            results["compile"].append(marks[2] - marks[1])
            for key in ("build", "transaction", "read_back", "conntrack_cut"):
                results[key].append(stages.seconds.get(key, 0.0))  # 0: not run (no cut
                # after an apply that only widens, as the first one does)
    return {k: statistics.median(v) for k, v in results.items()}


def incremental(spec: Path, spec_plus: Path, repeat: int) -> dict[str, float]:
    """One entry added and removed again, in place, `repeat` times each way: by a long-lived
    backend (the agent's case), and by a fresh one (a `nodewall apply` command)."""
    backend = NftablesBackend()
    backend.apply(compile_node(load_spec(spec), NODE))
    loaded = {p: load_spec(p) for p in (spec, spec_plus)}
    out: dict[str, list[float]] = {"add": [], "remove": [], "add_ready": [], "oneshot_add": [],
                                   "full": [], "lib_add": [], "nft_add": []}
    for _ in range(repeat):
        for key, path in (("add", spec_plus), ("remove", spec)):
            fresh = compile_node(loaded[path], NODE)  # a new policy object, version unknown
            start = time.perf_counter()
            result = backend.apply(fresh)
            out[key].append(time.perf_counter() - start)
            assert result.incremental and result.changed, result
        ready = compile_node(loaded[spec_plus], NODE)
        _ = ready.version  # its digest already known, as when the control plane sends it
        start = time.perf_counter()
        assert backend.apply(ready).incremental
        out["add_ready"].append(time.perf_counter() - start)
        backend.apply(compile_node(loaded[spec], NODE))
    for _ in range(repeat):  # as a command: load, compile, a new backend that reads the kernel
        start = time.perf_counter()
        with collector_paused():
            result = NftablesBackend().apply(compile_node(load_spec(spec_plus), NODE))
        out["oneshot_add"].append(time.perf_counter() - start)
        assert result.incremental, result
        backend = NftablesBackend()
        backend.apply(compile_node(loaded[spec], NODE))
    big = compile_node(loaded[spec_plus], NODE)
    for _ in range(repeat):
        drop_table()
        start = time.perf_counter()
        NftablesBackend().apply(big)
        out["full"].append(time.perf_counter() - start)
    drop_table()
    NftablesBackend().apply(compile_node(loaded[spec], NODE))
    import nftables

    handle = nftables.Nftables()
    element = "{ 198.19.0.0/24 }"
    for _ in range(repeat):  # the previous way: libnftables on the same interval set
        start = time.perf_counter()
        rc, _, err = handle.cmd(f"add element inet nodewall clients_v4 {element}")
        out["lib_add"].append(time.perf_counter() - start)
        assert rc == 0, err
        handle.cmd(f"delete element inet nodewall clients_v4 {element}")
        start = time.perf_counter()
        sh("nft", "add", "element", "inet", "nodewall", "clients_v4", element)
        out["nft_add"].append(time.perf_counter() - start)
        sh("nft", "delete", "element", "inet", "nodewall", "clients_v4", element)
    return {k: statistics.median(v) for k, v in out.items()}


def connect_latency(node: str, client: str, count: int) -> float:
    """Median seconds for a TCP handshake (connect returns) from the client to the node."""
    with entered(node):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((NODE_ADDR, PORT))
    server.listen(1024)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    runs = []
    try:
        for _ in range(count):
            with entered(client):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            start = time.perf_counter()
            s.connect((NODE_ADDR, PORT))
            runs.append(time.perf_counter() - start)
            s.close()
    finally:
        stop.set()
        thread.join()
        server.close()
    return statistics.median(runs)


def linear_ruleset(entries: list[str]) -> str:
    rules = "\n".join(f"\t\tip saddr {net} tcp dport {PORT} accept" for net in entries)
    return (f"table inet nwnb_linear {{\n\tchain input {{\n\t\ttype filter hook input priority "
            f"filter; policy accept;\n\t\tct state established,related accept\n{rules}\n"
            f"\t\tmeta l4proto tcp reject with tcp reset\n\t}}\n}}\n")


def latency(node: str, client: str, spec_big: Path, spec_one: Path, count: int
            ) -> dict[str, float]:
    out = {}
    with entered(node):
        backend = NftablesBackend()
        for label, path in (("set_1", spec_one), ("set_8000", spec_big)):
            backend.apply(compile_node(load_spec(path), NODE))
            out[label] = connect_latency(node, client, count)
        backend.remove()
        entries = [e if isinstance(e, str) else e["network"]
                   for e in json.loads(spec_big.read_text())["services"][0]["user_config"][
                       "ip_filter"]]
        sh("nft", "-f", "-", stdin=linear_ruleset(entries))
        out["linear_8000"] = connect_latency(node, client, count)
        sh("nft", "delete", "table", "inet", "nwnb_linear")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=8000)
    parser.add_argument("--peers", type=int, default=300)
    args = parser.parse_args()
    prefix = f"nwnb{secrets.token_hex(2)}"
    # ip_filter holds at most 8000 entries: the incremental step goes from 7999 to 8000
    specs = [spec_file(args.entries, args.peers), spec_file(args.entries - 1, args.peers),
             spec_file(args.entries - 1, args.peers, extra=1), spec_file(1, args.peers)]
    report: dict[str, Any] = {"entries": args.entries, "peers": args.peers}
    try:
        with namespaces(prefix) as (node, client), entered(node):
            report["full"] = full_apply(specs[0], args.repeat)
            report["incremental"] = incremental(specs[1], specs[2], args.repeat)
            drop_table()
        with namespaces(prefix) as (node, client):
            report["latency"] = latency(node, client, specs[0], specs[3], args.connects)
    finally:
        for path in specs:
            path.unlink(missing_ok=True)
    full, inc, lat = report["full"], report["incremental"], report["latency"]
    ms = 1000.0
    print(json.dumps(report, indent=2))
    print(f"full apply: nodewall {full['nodewall'] * ms:.1f} ms, nft -f {full['floor'] * ms:.1f}"
          f" ms, ratio {full['nodewall'] / full['floor']:.2f}x")
    print("  stages: " + ", ".join(f"{k} {full[k] * ms:.1f} ms" for k in
                                   ("load_spec", "compile", "build", "transaction", "read_back",
                                    "conntrack_cut")))
    print(f"one entry, long-lived backend: added {inc['add'] * ms:.2f} ms, removed "
          f"{inc['remove'] * ms:.2f} ms, added with the policy digest known "
          f"{inc['add_ready'] * ms:.2f} ms")
    print(f"one entry added as a command (load, compile, read kernel, apply): "
          f"{inc['oneshot_add'] * ms:.1f} ms; full apply of the same policy "
          f"{inc['full'] * ms:.1f} ms; libnftables add element {inc['lib_add'] * ms:.1f} ms "
          f"in-process, {inc['nft_add'] * ms:.1f} ms as a process")
    print(f"connect latency: set of 1 {lat['set_1'] * 1e6:.0f} us, set of {args.entries} "
          f"{lat['set_8000'] * 1e6:.0f} us, linear chain of {args.entries} "
          f"{lat['linear_8000'] * 1e6:.0f} us")


if __name__ == "__main__":
    main()
