"""Bearer tokens: creating them (stored as SHA-256 hashes, the text shown once), revoking them,
and deciding who a request is. An admin token may change state and read every policy; a node
token reads only its own node's policy and reports only its own status.

A verified token is trusted for at most `CACHE_SECONDS` without asking the database again, so
a token revoked through any server process (or `nodewall token revoke` on the store) is refused
by every process within that time; the process that revokes forgets it at once.

Never log or store a token's text; only its hash reaches the database.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from nodewall.store import Store
from nodewall.store.tokens import TokenInfo, add_token, find_active, revoke_token

TOKEN_PREFIX = "nw_"
#: How long a verified token is trusted without asking the database again: under the one
#: second within which a revocation must reach every server process, query time included.
CACHE_SECONDS = 0.5


@dataclass(frozen=True)
class Principal:
    kind: str  # "admin" | "node"
    node: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    def may_act_for(self, node: str) -> bool:
        return self.is_admin or self.node == node


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(store: Store, *, node: str | None) -> str:
    """A new token (admin when `node` is None), stored hashed; returns its text."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    add_token(store, hash_token(token), node=node)
    return token


class TokenVerifier:
    """Resolves bearer tokens to principals, with a short positive cache."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The principal of a recently verified token, without asking the database."""
        with self._lock:
            hit = self._cache.get(hash_token(token))
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def verify(self, token: str) -> Principal | None:
        """Ask the database (blocking) and remember a positive answer for CACHE_SECONDS."""
        digest = hash_token(token)
        now = time.monotonic()
        found = find_active(self._store, digest)
        if found is None:
            with self._lock:
                self._cache.pop(digest, None)
            return None
        principal = Principal(*found)
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[digest] = (now + CACHE_SECONDS, principal)
        return principal

    def revoke(self, token_id: int) -> TokenInfo:
        """Revoke a token in the store and forget it here at once (blocking)."""
        info, digest = revoke_token(self._store, token_id)
        with self._lock:
            self._cache.pop(digest, None)
        return info
