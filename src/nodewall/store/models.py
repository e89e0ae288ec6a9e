"""The control plane's tables: platform settings, projects, VPCs, services with their stored
ports, nodes, integrations, compiled node policies, node status reports, access tokens, and the
audit trail of accepted changes.

Plain SQLAlchemy 2 declarative models and nothing else: no queries, no policy logic. The schema
itself is created and changed only by the alembic migrations in `nodewall.store.migrations`;
a change here without a new migration is a bug.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class PlatformRow(Base):
    """The one row (id 1) of platform settings; every write locks it (see `store.db`)."""

    __tablename__ = "platform"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    management_networks: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)


class ProjectRow(Base):
    __tablename__ = "project"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    base_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VpcRow(Base):
    __tablename__ = "vpc"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_vpc_id: Mapped[str] = mapped_column(String(63), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    cloud_name: Mapped[str] = mapped_column(String(255))
    network_cidr: Mapped[str] = mapped_column(String(64))
    peer_cidrs: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServiceRow(Base):
    __tablename__ = "service"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    service_type: Mapped[str] = mapped_column(String(63))
    cloud_name: Mapped[str] = mapped_column(String(255))
    vpc_id: Mapped[int | None] = mapped_column(ForeignKey("vpc.id"), nullable=True)
    environment: Mapped[str] = mapped_column(String(16))
    socks5_proxy: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServicePortRow(Base):
    """A port given to a component of a service: written once at creation, never updated."""

    __tablename__ = "service_port"
    __table_args__ = (UniqueConstraint("service_id", "port"),)
    service_id: Mapped[int] = mapped_column(
        ForeignKey("service.id", ondelete="CASCADE"), primary_key=True
    )
    component: Mapped[str] = mapped_column(String(63), primary_key=True)
    port: Mapped[int] = mapped_column(Integer)


class NodeRow(Base):
    __tablename__ = "node"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id", ondelete="CASCADE"),
                                            index=True)
    addresses: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IntegrationRow(Base):
    __tablename__ = "integration"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    integration_type: Mapped[str] = mapped_column(String(63))
    source_service_id: Mapped[int] = mapped_column(ForeignKey("service.id", ondelete="CASCADE"))
    dest_service_id: Mapped[int | None] = mapped_column(
        ForeignKey("service.id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NodePolicyRow(Base):
    """A node's compiled policy: `policy` is NodePolicy.to_json(), `version` its version;
    `updated_at` is when that version was first made (served as `changed_at`)."""

    __tablename__ = "node_policy"
    node_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class NodeStatusRow(Base):
    """What a node's agent last reported the kernel holds."""

    __tablename__ = "node_status"
    node_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    applied_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    backend: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)


class TokenRow(Base):
    """An access token, stored as the SHA-256 of its text (tokens are 256 random bits, so a
    fast hash is enough); `node_name` is set for node tokens, None for admin ones. A revoked
    token keeps its row (its id stays taken, so an id in a log names one token for ever) with
    `revoked_at` set."""

    __tablename__ = "token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # "admin" | "node"
    node_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class EventRow(Base):
    """One accepted change of the platform's state (the audit trail): when, by which token (its
    id, never its text or hash), the route, a summary made of nodewall's own words and the
    objects' names and networks (never an ip_filter description), and the resulting policy
    version of every node it changed (null: the node's policy was removed). `project` is the
    project's name (kept after the project is deleted); null for platform-wide changes."""

    __tablename__ = "event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    project: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
