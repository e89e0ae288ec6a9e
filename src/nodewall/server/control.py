"""Running one state change: a serialised write transaction, then waking the agents whose
policy changed: this process's hub directly after commit, and on PostgreSQL every process
through the NOTIFY sent inside the transaction. The one place where store writes and
notification meet; no HTTP here.

A change with an `Origin` is recorded in the audit trail inside its own transaction. A dry run
(`How.dry_run`) runs the very same change in the same kind of transaction, computes what it did
to the nodes' policies (`server.preview`) and rolls back instead of committing: the preview and
the real change agree by construction, and nothing is written, notified or recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from nodewall.server import audit, metrics, preview
from nodewall.server.audit import Origin
from nodewall.server.errors import ApiError
from nodewall.server.hub import PolicyHub, publish_in_transaction
from nodewall.server.ops import Outcome
from nodewall.server.policies import tracked
from nodewall.store import Store

P = ParamSpec("P")


@dataclass(frozen=True)
class How:
    """How to run a change: for real or as a preview, and where it came from (for the audit
    trail; None: not recorded, e.g. an agent's status report)."""

    dry_run: bool = False
    origin: Origin | None = None


class _RolledBack(Exception):
    """Leaves a dry run's transaction so that it rolls back, carrying the preview out."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.answer = answer


class Control:
    def __init__(self, store: Store, hub: PolicyHub) -> None:
        self.store = store
        self.hub = hub

    def change(self, op: Callable[Concatenate[Session, P], Outcome], *args: P.args,
               **kwargs: P.kwargs) -> dict[str, Any]:
        """Run `op` for real, unrecorded (tests, tools)."""
        return self.submit(How(), op, *args, **kwargs)

    def submit(self, how: How, op: Callable[Concatenate[Session, P], Outcome], *args: P.args,
               **kwargs: P.kwargs) -> dict[str, Any]:
        try:
            with self.store.write_session() as session:
                outcome = op(session, *args, **kwargs)
                session.flush()
                changes = tracked(session)
                if how.dry_run:
                    raise _RolledBack({"dry_run": True, "result": outcome.body,
                                       "summary": outcome.summary,
                                       "nodes": preview.diffs(changes)})
                if how.origin is not None and outcome.summary:
                    audit.record(session, how.origin, outcome.project, outcome.summary,
                                 preview.versions(changes))
                if outcome.changed and self.store.is_postgres:
                    publish_in_transaction(session, outcome.changed)
        except _RolledBack as done:
            metrics.CHANGES.labels("previewed").inc()
            return done.answer
        except IntegrityError:
            raise ApiError(409, "The change conflicts with the stored state (already exists or "
                                "still in use)") from None
        except DataError:  # a value the database cannot hold that validation let through
            raise ApiError(400, "Invalid input: a value cannot be stored (too long or "
                                "not representable)") from None
        metrics.CHANGES.labels("applied").inc()
        if outcome.changed:
            metrics.POLICY_CHANGES.inc(len(outcome.changed))
            # This process at once (its cache must not answer stale after the write returns);
            # on PostgreSQL the other processes hear the NOTIFY sent with the commit.
            self.hub.notify_threadsafe(outcome.changed)
        return outcome.body
