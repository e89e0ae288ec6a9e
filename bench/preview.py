"""Change-preview benchmark: `PUT .../service/S?dry_run=true` of an ip_filter edit on a service
of `--nodes` nodes (default 1000), answered by a real `nodewall server` process on loopback, on
a SQLite file and on a throwaway PostgreSQL server (tests/store/pgserver.py); beside it the same
edit for real. The preview runs the change in the real change's transaction and rolls back, so
it costs what the change costs up to the commit, plus the diff.

    .venv/bin/python bench/preview.py                       # both backends, 1000 nodes
    .venv/bin/python bench/preview.py --backend sqlite --nodes 100 --repeat 5

Seeding adds the nodes before the platform settings exist (nothing is compiled then), and sets
them last, so every policy is compiled once. Everything is on 127.0.0.1; servers are stopped at
the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "api"))
sys.path.insert(0, str(ROOT / "tests" / "store"))

from pgserver import running_postgres  # noqa: E402
from serverproc import ServerProc  # noqa: E402

PROJECT = "bench"
SERVICE = "pg-big"
PATH = f"/v1/project/{PROJECT}/service/{SERVICE}"


def seed(server: ServerProc, nodes: int) -> None:
    with server.client(timeout=1200) as c:
        c.post("/v1/project", json={"project": PROJECT}).raise_for_status()
        c.post(f"/v1/project/{PROJECT}/service", json={
            "service_name": SERVICE, "service_type": "pg", "cloud_name": "aws-eu-west-1",
            "user_config": {"ip_filter": ["10.0.0.0/8"]}}).raise_for_status()
        for i in range(nodes):
            c.put(f"{PATH}/node/pb-{i}", json={"addresses": [
                f"10.{i // 250}.{i % 250}.1", f"fd00:be::{i + 1:x}"]}).raise_for_status()
        c.put("/v1/platform", json={"management_networks": ["198.51.100.0/28"]}
              ).raise_for_status()


def measure(server: ServerProc, nodes: int, repeat: int) -> dict[str, Any]:
    edit = {"user_config": {"ip_filter": ["10.0.0.0/9", "192.0.2.0/24",
                                          {"network": "203.0.113.0/24", "description": "hq"}]}}
    times = []
    size = 0
    changed = 0
    with server.client(timeout=1200) as c:
        for _ in range(repeat):
            started = time.perf_counter()
            r = c.put(PATH, params={"dry_run": "true"}, json=edit)
            times.append(time.perf_counter() - started)
            r.raise_for_status()
            size, changed = len(r.content), len(r.json()["nodes"])
        started = time.perf_counter()
        c.put(PATH, json=edit).raise_for_status()
        real = time.perf_counter() - started
    assert changed == nodes, f"the preview named {changed} nodes, not {nodes}"
    return {"median": statistics.median(times), "min": min(times), "real": real,
            "size": size, "nodes": changed}


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
    else:
        with running_postgres() as pg:
            yield pg.new_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print("| backend | nodes | preview median | preview min | real change | preview size |")
    print("|---|---|---|---|---|---|")
    for backend in backends:
        with database(backend) as url:
            server = ServerProc(url)
            server.start()
            try:
                started = time.perf_counter()
                seed(server, args.nodes)
                print(f"(seeded {backend} in {time.perf_counter() - started:.0f} s)",
                      file=sys.stderr)
                m = measure(server, args.nodes, args.repeat)
            finally:
                server.stop()
        print(f"| {backend} | {m['nodes']} | {m['median']:.2f} s | {m['min']:.2f} s | "
              f"{m['real']:.2f} s | {m['size'] / 1000:.0f} kB |", flush=True)


if __name__ == "__main__":
    main()
