"""API fixtures: a real `nodewall server` process on a loopback port, over a real SQLite file or
a real PostgreSQL server (started by the test session, see tests/store/pgserver.py), with an
admin token. Servers are stopped at the end of each test even when it fails."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "store"))

from pgserver import PgServer, running_postgres
from serverproc import ServerProc


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    with running_postgres() as server:
        yield server


def _database(request: pytest.FixtureRequest, base: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{base / f'server-{uuid.uuid4().hex[:8]}.db'}"
    pg: PgServer = request.getfixturevalue("postgres")
    return pg.new_database()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One server per backend for the session; tests keep apart by project (see `project`)."""
    proc = ServerProc(_database(request, tmp_path_factory.mktemp("server")))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend, for tests that run their own servers."""
    return _database(request, tmp_path)


@pytest.fixture
def fresh_server(database: str) -> Iterator[ServerProc]:
    proc = ServerProc(database)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def project() -> str:
    """A project name no other test uses (node names are global, so seed prefixes them)."""
    return "p" + uuid.uuid4().hex[:10]


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[ServerProc]:
    """A fresh server on SQLite alone, for tests whose subject does not depend on the backend."""
    proc = ServerProc(f"sqlite:///{tmp_path / 'server.db'}")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def shared_sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One SQLite server for the session, for tests that only send requests it must refuse or
    that use names of their own (a server start costs about 2 s)."""
    proc = ServerProc(f"sqlite:///{tmp_path_factory.mktemp('shared') / 'server.db'}")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
