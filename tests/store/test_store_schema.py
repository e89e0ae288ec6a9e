"""The store's schema on a real SQLite file and a real PostgreSQL server: the migrations build
exactly what the models describe, migrating again is a no-op, several processes may migrate at
once, and the database itself refuses two components of one service on one port."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pgserver import PgServer
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from nodewall.store import Store, open_store
from nodewall.store.models import Base, ProjectRow, ServicePortRow, ServiceRow


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_migrating_again_changes_nothing(store_url: str, store: Store) -> None:
    query = text("SELECT version_num FROM alembic_version ORDER BY version_num")
    with store.engine.connect() as conn:
        before = conn.execute(query).scalars().all()
    again = open_store(store_url)
    with again.engine.connect() as conn:
        assert conn.execute(query).scalars().all() == before
        assert conn.execute(text("SELECT count(*) FROM platform")).scalar_one() == 1
    again.dispose()


def test_processes_may_migrate_at_once(postgres: PgServer) -> None:
    store_url = postgres.new_database()
    code = f"from nodewall.store import open_store; open_store({store_url!r}).dispose()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
             for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]


def test_one_service_never_holds_one_port_twice(store: Store) -> None:
    with store.write_session() as s:
        project = ProjectRow(name="acme", base_port=None)
        s.add(project)
        s.flush()
        svc = ServiceRow(project_id=project.id, name="pg", service_type="pg",
                         cloud_name="aws-eu-west-1", environment="standard", user_config={})
        s.add(svc)
        s.flush()
        s.add(ServicePortRow(service_id=svc.id, component="pg", port=20000))
        service_id = svc.id
    with pytest.raises(IntegrityError), store.write_session() as s:
        s.add(ServicePortRow(service_id=service_id, component="pgbouncer", port=20000))
