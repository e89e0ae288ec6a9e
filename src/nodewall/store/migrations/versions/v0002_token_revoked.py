"""Token revocation: `token.revoked_at`, set when a token is revoked (the row stays, so a
token id is never given twice).

Revision ID: 0002_token_revoked
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_token_revoked"
down_revision = "0002_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("token", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("token") as batch:
        batch.drop_column("revoked_at")
