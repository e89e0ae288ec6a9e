"""Two server processes over one PostgreSQL database: a change made through one wakes a
long-poll held on the other (LISTEN/NOTIFY), and concurrent writes through both stay safe."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pgserver import PgServer
from seed import ok, ports, seed, version
from serverproc import ServerProc


@pytest.fixture(scope="module")
def pair(postgres: PgServer) -> Iterator[tuple[ServerProc, ServerProc]]:
    url = postgres.new_database()
    a, b = ServerProc(url), ServerProc(url)
    b.admin = a.admin
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_a_change_through_one_wakes_a_poll_on_the_other(
        pair: tuple[ServerProc, ServerProc]) -> None:
    a, b = pair
    with a.client() as ca:
        s = seed(ca, "twin")
        old = version(ca, s.prod1)
    out: dict[str, Any] = {}

    def hold() -> None:
        with b.client(timeout=60) as cb:
            r = cb.get(f"/v1/node/{s.prod1}/policy", params={"version": old, "wait": 30})
            out["status"], out["version"] = r.status_code, r.json().get("version")

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()
    with a.client() as ca:
        changed_at = time.monotonic()
        ok(ca.put(s.service("pg-prod"), json={"user_config": {"ip_filter": ["10.20.0.0/28"]}}))
        thread.join(timeout=30)
        woke_after = time.monotonic() - changed_at
        assert out == {"status": 200, "version": version(ca, s.prod1)}
    assert out["version"] != old
    assert woke_after < 5, f"the other process woke its poll {woke_after:.2f}s after the change"
    with b.client() as cb:  # and its answer cache was refreshed too
        assert version(cb, s.prod1) == out["version"]


def test_concurrent_writes_through_both(pair: tuple[ServerProc, ServerProc]) -> None:
    a, b = pair
    with a.client() as ca:
        ok(ca.put("/v1/platform", json={"management_networks": ["198.51.100.0/28"]}))
        ok(ca.post("/v1/project", json={"project": "race"}))

    def create(job: tuple[ServerProc, str, int]) -> int:
        server, name, index = job
        with httpx.Client(base_url=server.url, timeout=60,
                          headers={"Authorization": f"Bearer {server.admin}"}) as c:
            code = c.post("/v1/project/race/service", json={
                "service_name": name, "service_type": "kafka",
                "cloud_name": "aws-eu-west-1"}).status_code
            if code == 200:
                ok(c.put(f"/v1/project/race/service/{name}/node/race-{name}",
                         json={"addresses": [f"10.1.0.{index + 1}"]}))
            return code

    jobs = [(a if i % 2 else b, f"k{i}" if i < 10 else "dup", i) for i in range(16)]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        codes = list(pool.map(create, jobs))
    assert codes[:10] == [200] * 10 and sorted(codes[10:]) == [200] + [409] * 5
    with b.client() as cb:
        for i in range(10):
            allocated = ports(cb, "race", f"k{i}")
            assert len(set(allocated.values())) == len(allocated)


def test_a_lost_listen_connection_loses_no_change(pair: tuple[ServerProc, ServerProc],
                                                  postgres: PgServer) -> None:
    """Failure injection: every LISTEN connection is killed; a change made while they
    reconnect still reaches a poll held on the other process (reconnecting wakes every poll)."""
    import psycopg

    a, b = pair
    with a.client() as ca:
        s = seed(ca, "cut")
        old = version(ca, s.prod1)
    out: dict[str, Any] = {}

    def hold() -> None:
        with b.client(timeout=60) as cb:
            r = cb.get(f"/v1/node/{s.prod1}/policy", params={"version": old, "wait": 30})
            out["version"] = r.json().get("version")

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(0.3)
    with psycopg.connect(a.database, autocommit=True) as conn:
        killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE query LIKE 'LISTEN %'").fetchone()
    assert killed is not None and killed[0] >= 2, "expected a LISTEN connection per server"
    with a.client() as ca:
        ok(ca.put(s.service("pg-prod"), json={"user_config": {"ip_filter": ["10.20.0.0/29"]}}))
        new = version(ca, s.prod1)
    thread.join(timeout=30)
    assert out.get("version") == new
    with b.client() as cb:
        assert version(cb, s.prod1) == new
