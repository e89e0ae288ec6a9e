"""Alembic environment of the nodewall store: runs migrations on the connection that
`nodewall.store.db.migrate` hands over (or, by hand, on the URL of alembic.ini). It must never
configure logging of its own: the server owns its log setup."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from nodewall.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
