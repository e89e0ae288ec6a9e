"""Opening the store: engine from a URL (SQLite file by default, PostgreSQL for a fleet),
schema migration to the newest revision, and write transactions that never interleave. A
SQLite file (and its -wal and -shm files) is readable by its owner only.

Every write goes through `write_session`, which serialises writers: a process-wide lock (SQLite
has one writer anyway) and, on PostgreSQL, a row lock on the platform row taken first, so
concurrent writers in several server processes queue instead of compiling policies from each
other's half-seen state. This module knows nothing of services or policies.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker

from nodewall.store.models import PlatformRow

DEFAULT_SQLITE_PATH = "/var/lib/nodewall/server.db"
#: An arbitrary constant key for the PostgreSQL advisory lock held while migrating.
_MIGRATION_LOCK = 0x6E6F6465


def default_url() -> str:
    """NODEWALL_DATABASE, else a SQLite file: /var/lib/nodewall when writable, else ~/.local."""
    env = os.environ.get("NODEWALL_DATABASE")
    if env:
        return env
    path = Path(DEFAULT_SQLITE_PATH)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.access(path.parent, os.W_OK):
            return f"sqlite:///{path}"
    except OSError:
        pass
    home = Path.home() / ".local" / "share" / "nodewall"
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'server.db'}"


def normalise_url(url: str) -> str:
    """Accept the URL forms people type: postgresql://, postgres://, a bare SQLite path."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{Path(url).absolute()}"
    return url


@dataclass
class Store:
    """An open store: the engine, a session factory and the in-process writer lock."""

    engine: Engine
    url: str
    sessions: sessionmaker[Session]
    _write_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """One serialised write transaction: committed on success, rolled back on error."""
        with self._write_lock, self.sessions() as session, session.begin():
            stmt = select(PlatformRow).where(PlatformRow.id == 1)
            if self.is_postgres:
                stmt = stmt.with_for_update()
            session.execute(stmt)
            yield session

    def release_idle(self) -> None:
        """Close the pooled connections nobody is using (new ones open when needed): a
        connection keeps buffers as large as the largest statement it ever sent. Not for an
        in-memory SQLite database, which lives only as long as its connection."""
        if self.engine.url.database not in (None, "", ":memory:"):
            self.engine.dispose(close=True)

    def dispose(self) -> None:
        self.engine.dispose()


#: How long a statement waits for the database (a locked SQLite file, a PostgreSQL connection)
#: before it fails; the server then answers 503 (`nodewall.server.unavailable`).
DEFAULT_WAIT_SECONDS = 10.0


def _sqlite_pragmas(wait_seconds: float) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(wait_seconds * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return on_connect


def _private_sqlite_file(path: Path) -> None:
    """Create the SQLite file 0600 (in a 0700 directory when that is new) before SQLite opens
    it, and take group and other access off an existing one and its -wal and -shm files:
    the store holds customers' allow-lists and token hashes. SQLite gives the -wal and -shm
    files it creates the main file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_RDONLY | os.O_CLOEXEC, 0o600))
    for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = part.stat().st_mode & 0o777
            if mode & 0o077:
                part.chmod(mode & 0o700)
        except FileNotFoundError:
            pass


def open_store(url: str | None = None, *, migrate_schema: bool = True,
               pool_size: int = 10, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> Store:
    """Open (and by default migrate) the store at `url` (default: `default_url()`).
    `wait_seconds`: how long a statement waits for a locked SQLite file, or for a PostgreSQL
    connection (from the pool, or a new one), before it fails."""
    full = normalise_url(url or default_url())
    if full.startswith("sqlite"):
        db_path = full.split(":///", 1)[1] if ":///" in full else ""
        if db_path and db_path != ":memory:":
            _private_sqlite_file(Path(db_path.split("?", 1)[0]))
        # No statement cache: a cached SQLite statement keeps a copy of its last bound values
        # (a 33 MB user_config) per pooled connection for as long as the process lives.
        engine = create_engine(full, connect_args={"check_same_thread": False,
                                                 "timeout": wait_seconds,
                                                 "cached_statements": 0})
        event.listen(engine, "connect", _sqlite_pragmas(wait_seconds))
    else:
        engine = create_engine(full, pool_size=pool_size, max_overflow=pool_size,
                               pool_pre_ping=True, pool_timeout=wait_seconds,
                               connect_args={"connect_timeout": max(1, round(wait_seconds))})
    store = Store(engine, full, sessionmaker(engine, expire_on_commit=False))
    if migrate_schema:
        migrate(store)
    return store


def migrate(store: Store) -> None:
    """Bring the schema to the newest revision; safe when several processes start at once."""
    from alembic import command
    from alembic.config import Config

    pkg = resources.files("nodewall.store")
    cfg = Config(str(pkg.joinpath("alembic.ini")))
    cfg.set_main_option("script_location", str(pkg.joinpath("migrations")))
    with store.engine.begin() as conn:
        if store.is_postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        # "heads": revisions made on parallel branches (each revising the same parent) are all
        # applied, in either order, until a merge revision joins them.
        command.upgrade(cfg, "heads")
