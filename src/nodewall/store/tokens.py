"""The token table's queries: add a token by its hash, find an active one, list them, revoke
one. Only hashes reach this module; it never sees, logs or returns a token's text (hashing and
principals live in `nodewall.server.auth`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from nodewall.store.db import Store
from nodewall.store.models import NodeRow, TokenRow, utcnow


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of a token: never its text, never its hash."""

    id: int
    kind: str
    node: str | None
    created_at: datetime
    revoked_at: datetime | None


class RevokeRefused(Exception):
    """Revoking this token is refused (unknown id, or the last active admin token)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_token(store: Store, token_hash: str, *, node: str | None) -> int:
    """Store a token's hash (admin when `node` is None); its id."""
    with store.write_session() as session:
        row = TokenRow(token_hash=token_hash, kind="node" if node else "admin", node_name=node)
        session.add(row)
        session.flush()
        return row.id


def find_active(store: Store, token_hash: str) -> tuple[str, str | None] | None:
    """(kind, node) of the unrevoked token with this hash, or None."""
    with store.read_session() as session:
        row = session.execute(
            select(TokenRow.kind, TokenRow.node_name).where(
                TokenRow.token_hash == token_hash, TokenRow.revoked_at.is_(None))
        ).first()
    return None if row is None else (row.kind, row.node_name)


def list_tokens(store: Store, *, include_revoked: bool = False) -> list[TokenInfo]:
    """Every token (by default only the active ones), oldest first."""
    stmt = select(TokenRow.id, TokenRow.kind, TokenRow.node_name, TokenRow.created_at,
                  TokenRow.revoked_at).order_by(TokenRow.id)
    if not include_revoked:
        stmt = stmt.where(TokenRow.revoked_at.is_(None))
    with store.read_session() as session:
        return [TokenInfo(r.id, r.kind, r.node_name, r.created_at, r.revoked_at)
                for r in session.execute(stmt)]


def revoke_token(store: Store, token_id: int) -> tuple[TokenInfo, str]:
    """Mark token `token_id` revoked (again is a no-op); the token and its hash (for the
    caller's cache). Refused for an unknown id, and for the last active admin token (nobody
    could change the platform's state through the API any more: create another one first)."""
    with store.write_session() as session:
        row = session.get(TokenRow, token_id)
        if row is None:
            raise RevokeRefused(404, f"no token with id {token_id}")
        if row.revoked_at is None and row.kind == "admin":
            admins = session.execute(select(func.count()).select_from(TokenRow).where(
                TokenRow.kind == "admin", TokenRow.revoked_at.is_(None))).scalar_one()
            if admins <= 1:
                raise RevokeRefused(409, f"token {token_id} is the last active admin token; "
                                         "create another admin token first")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        info = TokenInfo(row.id, row.kind, row.node_name, row.created_at, row.revoked_at)
        return info, row.token_hash


def node_exists(store: Store, node: str) -> bool:
    """Whether a node of this name is in the store (for `token create --node`)."""
    with store.read_session() as session:
        return session.execute(select(NodeRow.id).where(NodeRow.name == node)).first() is not None
