"""Benchmark: compile time of one node's policy, and the whole-process time of `validate`.

Run: `.venv/bin/python bench/compile.py`. Prints a markdown table for docs/benchmarks.md.

Compile: nodewall's compiler (spec already validated) for 1 / 100 / 8000 ip_filter entries x
3 / 30 / 300 nodes, beside a baseline that only parses and merges the same ip_filter with the
standard library (`ipaddress.ip_network` + `collapse_addresses`), the floor of a stdlib compiler.
Validate: `nodewall validate` on a small example beside `python -c pass` and
`python -c "import pydantic"` (the interpreter and the model library alone).
Load and compile: `load_spec` of an 8000-entry x 301-node spec written as JSON (a pinned port),
then the first `compile_node` of each freshly loaded spec; medians of 15 fresh loads.
`--load-compile` prints only that table.
"""

from __future__ import annotations

import ipaddress
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nodewall.compiler.node import compile_node
from nodewall.spec.load import load_spec, parse_spec
from specgen import big_spec

ROOT = Path(__file__).resolve().parent.parent


def best_of(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def stdlib_baseline(networks: list[str]) -> None:
    parsed = [ipaddress.ip_network(n, strict=False) for n in networks]
    v4 = [n for n in parsed if n.version == 4]
    list(ipaddress.collapse_addresses(v4))  # type: ignore[type-var]


def compile_table() -> list[str]:
    rows = ["| ip_filter entries | nodes | nodewall compile (ms) | stdlib parse+merge (ms) "
            "| ratio |", "|---|---|---|---|---|"]
    for entries in (1, 100, 8000):
        for nodes in (3, 30, 300):
            spec = parse_spec(big_spec(entries, nodes))
            nets = [e.network for e in spec.services[0].user_config.ip_filter]
            runs = 5 if entries == 8000 else 20
            ours = best_of(lambda spec=spec: compile_node(spec, "big-0"), runs)
            base = best_of(lambda nets=nets: stdlib_baseline(nets), runs)
            rows.append(f"| {entries} | {nodes} | {ours * 1e3:.2f} | {base * 1e3:.2f} | "
                        f"{ours / base:.2f} |")
    return rows


def load_compile_table(runs: int = 15) -> list[str]:
    doc = big_spec(8000, 301)
    doc["services"][0]["ports"] = {"pg": 14017}
    loads: list[float] = []
    compiles: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        for _ in range(runs):
            start = time.perf_counter()
            spec = load_spec(path)
            loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            compile_node(spec, "big-0")
            compiles.append(time.perf_counter() - start)
            del spec
    rows = ["| 8000 ip_filter entries x 301 nodes | median (ms) | min (ms) |", "|---|---|---|"]
    for label, times in (("`load_spec` (JSON file)", loads),
                         ("`compile_node` (first, fresh spec)", compiles)):
        rows.append(f"| {label} | {statistics.median(times) * 1e3:.1f} | {min(times) * 1e3:.1f} |")
    return rows


def process_time(cmd: list[str], runs: int = 15) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def validate_table() -> list[str]:
    python = sys.executable
    nodewall = str(Path(python).with_name("nodewall"))
    example = str(ROOT / "examples" / "pg-public.yaml")
    rows = ["| process | min (ms) | median (ms) |", "|---|---|---|"]
    for label, cmd in (
        ("`python -c pass`", [python, "-c", "pass"]),
        ("`python -c 'import pydantic'`", [python, "-c", "import pydantic"]),
        ("`nodewall validate examples/pg-public.yaml`", [nodewall, "validate", example]),
        ("`nodewall plan examples/pg-public.yaml --node pg-prod-1 --format json`",
         [nodewall, "plan", example, "--node", "pg-prod-1", "--format", "json"]),
    ):
        low, mid = process_time(cmd)
        rows.append(f"| {label} | {low * 1e3:.0f} | {mid * 1e3:.0f} |")
    return rows


if __name__ == "__main__":
    print("\n".join(load_compile_table()))
    if "--load-compile" in sys.argv[1:]:
        sys.exit(0)
    print()
    print("\n".join(compile_table()))
    print()
    print("\n".join(validate_table()))
