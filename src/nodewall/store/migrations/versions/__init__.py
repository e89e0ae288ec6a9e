"""One module per store revision, applied in order by alembic."""
