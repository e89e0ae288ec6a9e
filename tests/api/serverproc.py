"""A `nodewall server` child process on a free loopback port, plus helpers to talk to it:
tokens, an httpx client, a restart, and a dump of every table for "nothing changed" checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from pgserver import free_port
from sqlalchemy import MetaData, create_engine, select

from nodewall.server.auth import create_token
from nodewall.store import normalise_url, open_store

ROOT = Path(__file__).resolve().parents[2]


class ServerProc:
    def __init__(self, database: str, args: tuple[str, ...] = ()) -> None:
        self.database = database
        self.args = args  # more `nodewall server` options
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"nodewall-server-{self.port}.log"
        store = open_store(database)
        try:
            self.admin = create_token(store, node=None)
        finally:
            store.dispose()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nodewall", "server", "--database", self.database,
                 "--listen", f"127.0.0.1:{self.port}", *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def token(self, node: str | None = None) -> str:
        store = open_store(self.database, migrate_schema=False)
        try:
            return create_token(store, node=node)
        finally:
            store.dispose()

    def client(self, token: str | None = "admin", timeout: float = 30) -> httpx.Client:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.admin if token == 'admin' else token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (timestamps included): equal dumps, identical store."""
        engine = create_engine(normalise_url(self.database))
        try:
            meta = MetaData()
            meta.reflect(engine)
            with engine.connect() as conn:
                return {name: sorted(map(tuple, conn.execute(select(table)).all()), key=repr)
                        for name, table in meta.tables.items()}
        finally:
            engine.dispose()
