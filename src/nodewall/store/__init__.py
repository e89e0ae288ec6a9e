"""The control plane's store: SQLAlchemy models, alembic migrations packaged with nodewall so an
installed nodewall can migrate, and `open_store` to get a migrated database (SQLite file by
default, PostgreSQL by URL). It holds state; it never compiles policies or serves HTTP."""

from nodewall.store.db import Store, default_url, normalise_url, open_store

__all__ = ["Store", "default_url", "normalise_url", "open_store"]
