"""Alembic migrations of the store (`nodewall.store`): `env.py` and one module per revision."""
