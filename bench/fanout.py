"""Fan-out benchmark of the control plane: simulated agents long-poll their node's policy, one
ip_filter change is made, and we time until every agent holds the new version; then requests
per second of the plain policy endpoint. Runs a real `nodewall server` process on loopback, on
a SQLite file and on a throwaway PostgreSQL server (tests/store/pgserver.py).

    .venv/bin/python bench/fanout.py                      # both backends, defaults below
    .venv/bin/python bench/fanout.py --backend sqlite --agents 1000 --nodes 1000

Agents run in several client processes (asyncio, a minimal HTTP/1.1 client each) and read only
the status, ETag and length of each answer, so the client side stays cheap; timestamps are
wall-clock on one machine. Bounded: every wait has a timeout, everything is on 127.0.0.1, and
the servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "api"))
sys.path.insert(0, str(ROOT / "tests" / "store"))

from pgserver import running_postgres  # noqa: E402
from serverproc import ServerProc  # noqa: E402

PROJECT = "bench"
SERVICE = "kafka-big"


# --- agents (run in child processes) -------------------------------------------------------

class Conn:
    """One keep-alive HTTP/1.1 connection doing GETs, reading only status, ETag and the body's
    length: a minimal client, so that the client side does not dominate what is measured
    (httpx's pool slows down with a thousand connections in one process)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, str]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write((f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                           f"Authorization: Bearer {self.token}\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
        await self.reader.readexactly(int(fields.get("content-length", "0")))
        return status, fields.get("etag", "").strip('"')

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _split(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port)


async def _agents(url: str, token: str, nodes: list[str], ready: Any, out: Any,
                  timeout: float) -> None:
    host, port = _split(url)
    conns = [Conn(host, port, token) for _ in nodes]

    async def first(conn: Conn, node: str) -> str:
        status, etag = await conn.get(f"/v1/node/{node}/policy")
        assert status == 200, status
        return etag

    versions = await asyncio.gather(*(first(c, n) for c, n in zip(conns, nodes, strict=True)))

    async def hold(conn: Conn, node: str, version: str) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, etag = await conn.get(f"/v1/node/{node}/policy?version={version}&wait=60")
            assert status == 200, status
            if etag != version:
                return time.time()
        return float("nan")

    tasks = [asyncio.create_task(hold(c, n, v))
             for c, n, v in zip(conns, nodes, versions, strict=True)]
    await asyncio.sleep(1.0)  # every poll is held by now
    ready.set()
    out.put(await asyncio.gather(*tasks))
    for c in conns:
        c.close()


def _agent_process(url: str, token: str, nodes: list[str], ready: Any, out: Any,
                   timeout: float) -> None:
    asyncio.run(_agents(url, token, nodes, ready, out, timeout))


async def _hammer(url: str, token: str, nodes: list[str], seconds: float, out: Any) -> None:
    host, port = _split(url)
    count = 0
    deadline = time.monotonic() + seconds

    async def worker(i: int) -> None:
        nonlocal count
        conn = Conn(host, port, token)
        while time.monotonic() < deadline:
            status, _ = await conn.get(f"/v1/node/{nodes[i % len(nodes)]}/policy")
            assert status == 200, status
            count += 1
        conn.close()

    await asyncio.gather(*(worker(i) for i in range(16)))
    out.put(count)


def _hammer_process(url: str, token: str, nodes: list[str], seconds: float, out: Any) -> None:
    asyncio.run(_hammer(url, token, nodes, seconds, out))


# --- the benchmark --------------------------------------------------------------------------

def seed(server: ServerProc, nodes: int) -> list[str]:
    """A kafka service with `nodes` nodes; the platform is set last, so the policies are
    compiled once, not once per added node."""
    names = [f"kb-{i}" for i in range(nodes)]
    with server.client(timeout=600) as c:
        c.post("/v1/project", json={"project": PROJECT}).raise_for_status()
        c.post(f"/v1/project/{PROJECT}/service", json={
            "service_name": SERVICE, "service_type": "kafka", "cloud_name": "aws-eu-west-1",
            "user_config": {"ip_filter": ["10.0.0.0/8"]}}).raise_for_status()
        for i, name in enumerate(names):
            c.put(f"/v1/project/{PROJECT}/service/{SERVICE}/node/{name}",
                  json={"addresses": [f"10.{i // 250}.{i % 250}.1"]}).raise_for_status()
        c.put("/v1/platform", json={"management_networks": ["198.51.100.0/28"]}
              ).raise_for_status()
    return names


def fanout(server: ServerProc, names: list[str], agents: int, procs: int,
           timeout: float, samples: bool = False) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    per_agent = [names[i % len(names)] for i in range(agents)]
    chunks = [per_agent[i::procs] for i in range(procs)]
    out = ctx.Queue()
    readies = [ctx.Event() for _ in chunks]
    workers = [ctx.Process(target=_agent_process,
                           args=(server.url, server.admin, chunk, ready, out, timeout))
               for chunk, ready in zip(chunks, readies, strict=True)]
    for w in workers:
        w.start()
    for ready in readies:
        if not ready.wait(timeout=300):
            raise RuntimeError("agents did not get ready")
    with server.client(timeout=600) as c:
        t0 = time.time()
        c.put(f"/v1/project/{PROJECT}/service/{SERVICE}",
              json={"user_config": {"ip_filter": ["10.0.0.0/9"]}}).raise_for_status()
        answered = time.time() - t0
    got: list[float] = []
    for _ in workers:
        got += out.get(timeout=timeout + 60)
    for w in workers:
        w.join(timeout=30)
    delays = sorted(t - t0 for t in got)
    missing = sum(1 for d in delays if d != d)
    delays = [d for d in delays if d == d]
    result: dict[str, Any] = {
        "agents": agents, "nodes": len(names), "missed": missing,
        "change_answered_s": round(answered, 3),
        "p50_s": round(statistics.median(delays), 3),
        "p99_s": round(delays[max(0, int(len(delays) * 0.99) - 1)], 3),
        "max_s": round(delays[-1], 3),
    }
    if samples:  # every agent's delay, for a distribution plot (bench/run.py)
        result["delays_s"] = [round(d, 4) for d in delays]
    return result


def rps(server: ServerProc, names: list[str], procs: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_hammer_process,
                           args=(server.url, server.admin, names, seconds, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    total = sum(out.get(timeout=seconds + 120) for _ in workers)
    for w in workers:
        w.join(timeout=30)
    return round(total / seconds, 1)


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="nodewall-bench-") as tmp:
            yield f"sqlite:///{tmp}/server.db"
    else:
        with running_postgres() as pg:
            yield pg.new_database()


def run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with database(backend) as url:
        server = ServerProc(url)
        server.start()
        try:
            started = time.monotonic()
            names = seed(server, args.nodes)
            seeded = time.monotonic() - started
            result: dict[str, Any] = {"backend": backend, "seed_s": round(seeded, 1)}
            result.update(fanout(server, names, args.agents, args.procs, args.timeout,
                                 args.samples))
            result["policy_rps"] = rps(server, names, args.procs, args.seconds)
            result["policy_bytes"] = len(httpx.get(
                f"{server.url}/v1/node/{names[0]}/policy",
                headers={"Authorization": f"Bearer {server.admin}"}).content)
            return result
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100,
                        help="nodes of the changed service; agents are spread over them")
    parser.add_argument("--procs", type=int, default=4, help="agent client processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the rps run")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--samples", action="store_true",
                        help="also print every agent's delay (delays_s)")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(json.dumps(run(backend, args)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
