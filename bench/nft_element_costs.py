"""Benchmark: what one set-element change costs through an in-process libnftables handle,
depending on what else the table holds. The design input for a 5 ms incremental update.

Run as root: `.venv/bin/python bench/nft_element_costs.py`. It makes its own network namespace
(`nwcost<suffix>`) and deletes it. Three tables are measured, each with 8000 /24 networks:
- `interval`: the networks in one interval set (nodewall's layout today);
- `hash`: the same networks as addresses in a hash set matched with `ip saddr & mask`
  (a set per prefix length), plus a small interval set, as the management sets are;
- for each: one element added then deleted, the same add batched with a version-rule rewrite,
  and a `get element` read-back of one element (medians of 9).
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

COUNT = 8000
BASE = int(ipaddress.IPv4Address("100.64.0.0"))


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    name = f"nwcost{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def network(i: int) -> str:
    return str(ipaddress.IPv4Address(BASE + i * 512))  # not adjacent: no range merging


def timed(fn: Callable[[], object], runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(nft: Any, layout: str) -> dict[str, float]:
    def cmd(text: str) -> None:
        rc, _, err = nft.cmd(text)
        if rc:
            raise RuntimeError(err)

    cmd("flush ruleset")
    cmd("add table inet t")
    cmd("add set inet t small { type ipv4_addr; flags interval; "
        "elements = { 198.51.100.0/28, 127.0.0.0/8 } }")
    if layout == "interval":
        cmd("add set inet t big { type ipv4_addr; flags interval; }")
        items = [f"{network(i)}/24" for i in range(COUNT)]
        extra = f"{network(COUNT + 1)}/24"
    else:
        cmd("add set inet t big { type ipv4_addr; }")
        items = [network(i) for i in range(COUNT)]
        extra = network(COUNT + 1)
    for i in range(0, COUNT, 1000):
        cmd("add element inet t big { " + ", ".join(items[i:i + 1000]) + " }")
    cmd("add chain inet t version")
    cmd('add rule inet t version return comment "v0"')
    cmd(f"get element inet t big {{ {items[5]} }}")  # warm the handle's cache
    add = f"add element inet t big {{ {extra} }}"
    delete = f"delete element inet t big {{ {extra} }}"
    batch = (f'{add}; flush chain inet t version; add rule inet t version return comment "v1"')
    return {
        "one element added, then deleted (2 transactions)": timed(lambda: (cmd(add), cmd(delete))),
        "element added with the version rule rewritten, then deleted (2 transactions)": timed(
            lambda: (cmd(batch), cmd(delete))),
        "get element (read one back)": timed(
            lambda: cmd(f"get element inet t big {{ {items[5]} }}")),
    }


def inside() -> None:
    """Runs in the benchmark's namespace: measure both layouts, print the table."""
    import nftables  # type: ignore[import-untyped]

    nft = nftables.Nftables()
    results = {layout: measure(nft, layout) for layout in ("interval", "hash")}
    nft.cmd("flush ruleset")
    print(f"| operation ({COUNT} entries in the big set) | interval set (ms) | hash set (ms) |")
    print("|---|---|---|")
    for op in results["interval"]:
        print(f"| {op} | {results['interval'][op]:.2f} | {results['hash'][op]:.2f} |")


def main() -> None:
    if sys.argv[1:] == ["--inside"]:
        inside()
        return
    with namespace() as name:
        subprocess.run(["ip", "netns", "exec", name, sys.executable, __file__, "--inside"],
                       check=True)


if __name__ == "__main__":
    main()
