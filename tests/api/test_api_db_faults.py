"""Database faults under real server processes: PostgreSQL stopped and started again in the
middle of a stream of changes, and a SQLite file locked by another process. Every request is
answered with success or a clear 503 (`Retry-After`, a message naming the database), never a
500 or a traceback; nothing is half-written (every stored policy equals a fresh compile of the
stored state; a refused change leaves every row as it was); the LISTEN connection comes back by
itself and a poll held across the restart on a second server process is woken by a change made
through the first."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pgserver import PgServer, running_postgres
from seed import ok, seed, version
from serverproc import ServerProc
from storecheck import all_rows, stored_equals_fresh_compile

from nodewall.store import open_store

FILTERS = (["10.20.0.0/24"], ["10.20.0.0/24", "10.60.0.0/16"])


def _unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers.get("retry-after") == "1"
    assert "The database is unavailable" in r.json()["message"], r.text


def _no_traceback(*servers: ServerProc) -> None:
    for s in servers:
        log = s.log.read_text()
        assert "Traceback" not in log and "Internal server error" not in log, log[-3000:]


def _check_store(url: str) -> None:
    store = open_store(url, migrate_schema=False)
    try:
        stored_equals_fresh_compile(store)
    finally:
        store.dispose()


@pytest.fixture
def own_postgres() -> Iterator[PgServer]:
    """A PostgreSQL server of this test's own: it is stopped and started again."""
    with running_postgres() as pg:
        yield pg


def test_postgresql_restarted_in_the_middle_of_changes(own_postgres: PgServer) -> None:
    url = own_postgres.new_database()
    first, second = ServerProc(url, ("--db-wait", "1")), ServerProc(url, ("--db-wait", "1"))
    first.start()
    second.start()
    try:
        with first.client(timeout=20) as a, second.client(timeout=70) as b:
            s = seed(a, "acme")
            node = s.prod1
            held_version = version(b, node)
            held: list[httpx.Response] = []
            poll = threading.Thread(target=lambda: held.append(b.get(
                f"/v1/node/{node}/policy", params={"version": held_version, "wait": 60})))
            poll.start()
            time.sleep(0.3)  # the poll is held on the second server

            statuses: list[int] = []
            stop_writing = threading.Event()

            def writer() -> None:
                with first.client(timeout=20) as w:
                    i = 0
                    while not stop_writing.is_set():
                        r = w.put(s.service("pg-replica"), json={
                            "user_config": {"ip_filter": FILTERS[i % 2]}})
                        statuses.append(r.status_code)
                        if r.status_code != 200:
                            _unavailable(r)
                        i += 1
                        time.sleep(0.02)

            writing = threading.Thread(target=writer)
            writing.start()
            time.sleep(0.5)
            own_postgres.stop("fast")
            down = [a.put(s.service("pg-prod"), json={"user_config": {"ip_filter": [
                "10.20.0.0/24", "10.70.0.0/16"]}}) for _ in range(2)]
            time.sleep(0.5)
            own_postgres.start()
            seen = len(statuses)
            deadline = time.monotonic() + 15
            while statuses[seen:].count(200) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            stop_writing.set()
            writing.join(timeout=30)
            for r in down:
                _unavailable(r)
            assert set(statuses) <= {200, 503}, statuses
            assert 503 in statuses and statuses[-1] == 200, statuses
            assert poll.is_alive(), "the held poll must not end with the database"

            # A change made after the restart through the first server wakes the poll held on
            # the second (its LISTEN connection came back by itself).
            r = a.put(s.service("pg-prod"), json={"user_config": {"ip_filter": [
                "10.20.0.0/24", "10.80.0.0/16"]}})
            ok(r)
            poll.join(timeout=8)
            assert not poll.is_alive(), "the held poll was not woken after the restart"
            assert held[0].status_code == 200, held[0].text
            assert held[0].json()["version"] == version(a, node) != held_version
        _check_store(url)
        _no_traceback(first, second)
    finally:
        first.stop()
        second.stop()


class _Locker:
    """Another process holding the SQLite file's write lock (`BEGIN EXCLUSIVE`) until told."""

    def __init__(self, path: Path) -> None:
        code = ("import sqlite3, sys\n"
                f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
                "c.execute('BEGIN EXCLUSIVE')\n"
                "print('locked', flush=True)\n"
                "sys.stdin.readline()\n"
                "c.execute('COMMIT')\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "locked\n"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=10)


def test_sqlite_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "server.db"
    server = ServerProc(f"sqlite:///{path}", ("--db-wait", "0.5"))
    server.start()
    try:
        with server.client(timeout=20) as c:
            s = seed(c, "acme")
            change = {"user_config": {"ip_filter": ["10.20.0.0/24", "10.60.0.0/16"]}}
            store = open_store(server.database, migrate_schema=False)
            try:
                before = all_rows(store)
                locker = _Locker(path)
                try:
                    refused = c.put(s.service("pg-prod"), json=change)
                    _unavailable(refused)
                    assert "SQLite file locked" in refused.json()["message"]
                    # Readers are not blocked by a writer's lock (WAL): reads still answer.
                    ok(c.get(s.service("pg-prod")))
                    ok(c.get(f"/v1/node/{s.prod1}/policy"))
                    assert all_rows(store) == before, "a refused change wrote something"
                finally:
                    locker.release()
                # A lock held for less than the wait: the change waits for it and succeeds.
                locker = _Locker(path)
                threading.Timer(0.2, locker.release).start()
                ok(c.put(s.service("pg-prod"), json=change))
                assert all_rows(store) != before
                stored_equals_fresh_compile(store)
            finally:
                store.dispose()
        _no_traceback(server)
    finally:
        server.stop()
