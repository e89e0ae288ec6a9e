"""Benchmark: whole-process time of the `nodewall` commands people run by hand or from scripts.

Run: `.venv/bin/python bench/startup.py [--runs 15] [--before REV] [--no-apply]` (the apply rows
need root; they make namespaces `nwsu<hex>` of their own and delete them).

- `validate`, `plan --format json`, `plan` (text) and `explain` of a small example spec
  (examples/pg-public.yaml), beside `python -c pass` (the interpreter alone);
- one-shot `nodewall apply` of a big node (8000 non-adjacent /24s, 300 peers: 301 nodes) into a
  fresh, empty namespace, for the nftables and the iptables backend, beside the floors of the
  same run: `nft -f` of nodewall's own rendered text, and `ipset restore` +
  `ip6tables-restore --noflush` + `iptables-restore --noflush` of the three parts of its
  iptables render. Each apply runs as `ip netns exec NS ...`, the floors too.

Every command is a new process, timed from spawn to exit; the rows are interleaved run by run,
so a slow phase of the machine touches them alike. `--before REV` also runs every nodewall row
with the source tree of git revision REV (extracted to a temporary directory and put first on
PYTHONPATH, same interpreter and packages), side by side. Both trees are byte-compiled first, so
no row pays for compiling modules (the environment may set PYTHONDONTWRITEBYTECODE).
Prints median and p90 per row (ms) and the ratios to the floors.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SMALL = ROOT / "examples" / "pg-public.yaml"
NODE = "big-0"


def big_node_spec(path: Path, entries: int = 8000, peers: int = 300) -> Path:
    """One pg service whose ip_filter is `entries` /24s with a /24 gap between each two (none
    merges with its neighbour), and `peers` + 1 nodes."""
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    nets = [f"{ipaddress.IPv4Address(base + i * 512)}/24" for i in range(entries)]
    node_base = int(ipaddress.IPv4Address("10.128.0.1"))
    spec = {
        "platform": {"management_networks": ["198.51.100.0/28", "2001:db8:ff::/64"]},
        "project": {"name": "bench", "base_port": 14000},
        "services": [{
            "name": "big", "type": "pg", "cloud": "aws-eu-west-1",
            "user_config": {"ip_filter": nets},
            "nodes": [{"name": f"big-{i}", "addresses": [
                str(ipaddress.IPv4Address(node_base + i)), f"fd00:be::{i + 1:x}"]}
                for i in range(peers + 1)],
        }],
    }
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    """A fresh network namespace with loopback up, deleted afterwards whatever happens."""
    name = f"nwsu{secrets.token_hex(3)}"
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def timed(argv: list[str], env: dict[str, str], expect: int = 0) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != expect:
        raise SystemExit(f"{argv}: exit {done.returncode}\n{done.stderr.decode()[-2000:]}")
    return elapsed * 1e3


def tree_env(src: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def compile_tree(src: Path) -> None:
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(src)], check=True,
                   capture_output=True, env=tree_env(None))


def extract(rev: str, into: Path) -> Path:
    """The `src` directory of git revision `rev`, written under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def command_rows(spec: Path) -> dict[str, list[str]]:
    nodewall = [PYTHON, "-c", "from nodewall.cli.main import main; main()"]
    return {
        "validate": [*nodewall, "validate", str(SMALL)],
        "plan --format json": [*nodewall, "plan", str(SMALL), "--node", "pg-prod-1",
                               "--format", "json"],
        "plan (text)": [*nodewall, "plan", str(SMALL), "--node", "pg-prod-1"],
        "explain": [*nodewall, "explain", str(SMALL), "--node", "pg-prod-1", "--src",
                    "203.0.113.9", "--proto", "tcp", "--dport", "5432"],
    }


def stats(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90


def floors(work: Path, spec: Path, env: dict[str, str]) -> dict[str, Path]:
    """nodewall's own renders of the big node, as the floors load them."""
    render = [PYTHON, "-c", "from nodewall.cli.main import main; main()", "render", str(spec),
              "--node", NODE, "--backend"]
    nft = subprocess.run([*render, "nftables"], env=env, check=True, capture_output=True,
                         text=True).stdout
    (work / "ruleset.nft").write_text(nft, encoding="utf-8")
    text = subprocess.run([*render, "iptables"], env=env, check=True, capture_output=True,
                          text=True).stdout
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        for key in ("ipset", "ip6tables", "iptables"):
            if line.startswith(f"# {key}-restore" if key != "ipset" else "# ipset restore"):
                current = parts.setdefault(key, [])
                break
        else:
            if current is not None and not line.startswith("#"):
                current.append(line)
    for key, lines in parts.items():
        (work / f"{key}.rules").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"nft": work / "ruleset.nft"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", help="git revision to time beside the working tree")
    parser.add_argument("--no-apply", action="store_true", help="skip the apply rows (no root)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nwsu-") as tmp:
        work = Path(tmp)
        trees: dict[str, Path | None] = {"now": None}
        compile_tree(ROOT / "src")
        if args.before:
            before = extract(args.before, work)
            compile_tree(before)
            trees = {"before": before, "now": None}
        spec = big_node_spec(work / "big.json")
        rows: dict[str, list[float]] = {}
        plain = tree_env(None)
        do_apply = not args.no_apply and os.geteuid() == 0
        if do_apply:
            floors(work, spec, plain)
        for _ in range(args.runs):
            rows.setdefault("python -c pass", []).append(timed([PYTHON, "-c", "pass"], plain))
            for label, src in trees.items():
                env = tree_env(src)
                for name, argv in command_rows(spec).items():
                    rows.setdefault(f"{name} [{label}]", []).append(timed(argv, env))
            if not do_apply:
                continue
            with namespace() as ns:
                rows.setdefault("nft -f (floor)", []).append(
                    timed(["ip", "netns", "exec", ns, "nft", "-f", str(work / "ruleset.nft")],
                          plain))
            with namespace() as ns:
                script = (f"set -e; ipset restore < {work}/ipset.rules; "
                          f"ip6tables-restore --noflush < {work}/ip6tables.rules; "
                          f"iptables-restore --noflush < {work}/iptables.rules")
                rows.setdefault("iptables restore (floor)", []).append(
                    timed(["ip", "netns", "exec", ns, "sh", "-c", script], plain))
            for label, src in trees.items():
                for backend in ("nftables", "iptables"):
                    with namespace() as ns:
                        argv = ["ip", "netns", "exec", ns, PYTHON, "-c",
                                "from nodewall.cli.main import main; main()", "apply",
                                str(spec), "--node", NODE, "--backend", backend]
                        rows.setdefault(f"apply --backend {backend} [{label}]", []).append(
                            timed(argv, tree_env(src)))
    print(f"{args.runs} runs each, interleaved; whole process, ms")
    print("| command | median | p90 | ratio to floor (median) |")
    print("|---|---|---|---|")
    medians = {name: stats(values)[0] for name, values in rows.items()}
    for name, values in rows.items():
        median, p90 = stats(values)
        floor = None
        if "--backend nftables" in name:
            floor = medians.get("nft -f (floor)")
        elif "--backend iptables" in name:
            floor = medians.get("iptables restore (floor)")
        ratio = f"{median / floor:.2f}x" if floor else ""
        print(f"| {name} | {median:.0f} | {p90:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
