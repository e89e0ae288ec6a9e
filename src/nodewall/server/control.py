"""Running one state change: a serialised write transaction, then waking the agents whose
policy changed: this process's hub directly after commit, and on PostgreSQL every process
through the NOTIFY sent inside the transaction. The one place where store writes and
notification meet; no HTTP here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from nodewall.server import metrics
from nodewall.server.errors import ApiError
from nodewall.server.hub import PolicyHub, publish_in_transaction
from nodewall.server.ops import Outcome
from nodewall.store import Store

P = ParamSpec("P")


class Control:
    def __init__(self, store: Store, hub: PolicyHub) -> None:
        self.store = store
        self.hub = hub

    def change(self, op: Callable[Concatenate[Session, P], Outcome], *args: P.args,
               **kwargs: P.kwargs) -> dict[str, Any]:
        try:
            with self.store.write_session() as session:
                outcome = op(session, *args, **kwargs)
                session.flush()
                if outcome.changed and self.store.is_postgres:
                    publish_in_transaction(session, outcome.changed)
        except IntegrityError:
            raise ApiError(409, "The change conflicts with the stored state (already exists or "
                                "still in use)") from None
        except DataError:  # a value the database cannot hold that validation let through
            raise ApiError(400, "Invalid input: a value cannot be stored (too long or "
                                "not representable)") from None
        if outcome.changed:
            metrics.POLICY_CHANGES.inc(len(outcome.changed))
            # This process at once (its cache must not answer stale after the write returns);
            # on PostgreSQL the other processes hear the NOTIFY sent with the commit.
            self.hub.notify_threadsafe(outcome.changed)
        return outcome.body
