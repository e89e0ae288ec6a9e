"""A throwaway PostgreSQL server for tests: initdb in a fresh temp dir, postgres on a free
loopback port (and a private unix socket dir), stopped and removed afterwards even when tests
fail. Runs the server as the `postgres` user when the tests run as root (postgres refuses root).

`require_postgres()` skips when the binaries are missing, or fails when CI is set, so that CI
never silently skips the PostgreSQL tests.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def pg_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def require_postgres() -> Path:
    bindir = pg_bindir()
    if bindir is None:
        message = ("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                   "apt-get install postgresql")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return bindir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    port: int
    base: Path
    bindir: Path | None = None
    options: str = ""

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: clients are disconnected; `immediate`: as a crash)."""
        assert self.bindir is not None
        subprocess.run(_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"),
                                     "-m", mode, "-w", "stop"]), check=True, capture_output=True)

    def start(self) -> None:
        assert self.bindir is not None
        subprocess.run(_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"),
                                     "-o", self.options, "-l", str(self.base / "postgres.log"),
                                     "-w", "-t", "60", "start"]), check=True, capture_output=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def running_postgres() -> Iterator[PgServer]:
    bindir = require_postgres()
    base = Path(tempfile.mkdtemp(prefix="nodewall-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data, sock, logfile = base / "data", base / "sock", base / "postgres.log"
    port = free_port()
    started = False
    try:
        subprocess.run(_as_postgres(["mkdir", "-p", str(sock)]), check=True)
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True)
        options = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=400")
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
                                     "-l", str(logfile), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True)
        started = True
        yield PgServer(port, base, bindir, options)
    finally:
        if started:
            subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m",
                                         "immediate", "-w", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
