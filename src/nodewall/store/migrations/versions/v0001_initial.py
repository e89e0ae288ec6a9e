"""Initial control-plane schema: platform, project, vpc, service, service_port, node,
integration, node_policy, node_status, token.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "platform",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("management_networks", sa.JSON, nullable=True),
    )
    op.execute("INSERT INTO platform (id, management_networks) VALUES (1, NULL)")
    op.create_table(
        "project",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("base_port", sa.Integer, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "vpc",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_vpc_id", sa.String(63), nullable=False, unique=True),
        sa.Column("project_id", sa.Integer,
                  sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("cloud_name", sa.String(255), nullable=False),
        sa.Column("network_cidr", sa.String(64), nullable=False),
        sa.Column("peer_cidrs", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "service",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer,
                  sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("service_type", sa.String(63), nullable=False),
        sa.Column("cloud_name", sa.String(255), nullable=False),
        sa.Column("vpc_id", sa.Integer, sa.ForeignKey("vpc.id"), nullable=True),
        sa.Column("environment", sa.String(16), nullable=False),
        sa.Column("socks5_proxy", sa.String(64), nullable=True),
        sa.Column("user_config", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_table(
        "service_port",
        sa.Column("service_id", sa.Integer,
                  sa.ForeignKey("service.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("component", sa.String(63), primary_key=True),
        sa.Column("port", sa.Integer, nullable=False),
        sa.UniqueConstraint("service_id", "port"),
    )
    op.create_table(
        "node",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("service_id", sa.Integer,
                  sa.ForeignKey("service.id", ondelete="CASCADE"), nullable=False),
        sa.Column("addresses", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_node_service_id", "node", ["service_id"])
    op.create_table(
        "integration",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer,
                  sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("integration_type", sa.String(63), nullable=False),
        sa.Column("source_service_id", sa.Integer,
                  sa.ForeignKey("service.id", ondelete="CASCADE"), nullable=False),
        sa.Column("dest_service_id", sa.Integer,
                  sa.ForeignKey("service.id", ondelete="CASCADE"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "node_policy",
        sa.Column("node_name", sa.String(63), primary_key=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "node_status",
        sa.Column("node_name", sa.String(63), primary_key=True),
        sa.Column("applied_version", sa.String(64), nullable=True),
        sa.Column("backend", sa.String(32), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("reported_at", TS, nullable=False),
    )
    op.create_table(
        "token",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("node_name", sa.String(63), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("token", "node_status", "node_policy", "integration", "node",
                  "service_port", "service", "vpc", "project", "platform"):
        op.drop_table(table)
