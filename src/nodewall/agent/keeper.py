"""The kernel keeper: one long-lived backend object that applies, verifies and repairs.

Only the agent's main thread calls it (backends are not thread-safe, and their netlink sockets
belong to the namespace of the thread that opened them). Keeping one object for the agent's
life is what lets a set-only change take the backend's in-place path and lets the nftables
backend check a no-change cheaply (from the ruleset generation it last verified at).

Verify is a re-apply of the held policy: the backend reads the kernel back (or vouches for it by
the generation) and sends only what differs, so a clean kernel costs no write and a drifted one
is repaired in the same step; `changed` in the result means there was drift. Any failure of a
backend is a `BackendError`: the kernel then keeps what it held. It never removes rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from nodewall.agent import metrics
from nodewall.agent.answer import PolicyAnswer
from nodewall.backends.base import ApplyResult, Backend, BackendError
from nodewall.backends.registry import get_backend

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Held:
    """A policy the kernel was verified to hold, and where it came from."""

    answer: PolicyAnswer
    source: str  # server, cache, fail-safe, spec

    @property
    def version(self) -> str:
        return self.answer.version


class Keeper:
    def __init__(self, backend_name: str) -> None:
        self.requested = backend_name
        self._backend: Backend = get_backend(backend_name)
        self.held: Held | None = None

    @property
    def backend_name(self) -> str:
        """The concrete backend (after `auto` chose), or the requested name before."""
        chosen = getattr(self._backend, "chosen", "")
        return str(chosen) if chosen else self._backend.name

    def resolve(self) -> str:
        """Settle `auto` on a concrete backend now; the reason `auto` gave, or ''."""
        from nodewall.backends.auto import AutoBackend

        if isinstance(self._backend, AutoBackend):
            auto = self._backend
            self._backend = self._call(auto.backend)
            why: str = auto.why
            return why
        return ""

    def apply(self, answer: PolicyAnswer, source: str) -> tuple[ApplyResult, float]:
        """Apply and verify; the result and its duration in seconds. BackendError: refused,
        the kernel keeps what it held (and `held` is unchanged)."""
        started = time.perf_counter()
        result: ApplyResult = self._call(self._backend.apply, answer.policy)
        took = time.perf_counter() - started
        if result.changed:
            metrics.APPLY_SECONDS.labels("in-place" if result.incremental else "full").observe(
                took)
        self.held = Held(answer, source)
        metrics.POLICY.info({"version": answer.version, "backend": result.backend,
                             "source": source})
        return result, took

    def verify(self) -> ApplyResult | None:
        """Re-apply the held policy: None when the kernel held it exactly, else the repair's
        result. BackendError when the repair failed."""
        if self.held is None:
            return None
        result: ApplyResult = self._call(self._backend.apply, self.held.answer.policy)
        return result if result.changed else None

    def rejected_packets(self) -> dict[tuple[str, str], int] | None:
        """The backend's reject counters, or None when it keeps none or reading failed."""
        read = getattr(self._backend, "rejected_packets", None)
        if read is None or self.held is None:
            return None
        try:
            counts: dict[tuple[str, str], int] = read()
        except Exception:  # a counter read must never disturb the keeper
            return None
        return counts

    @staticmethod
    def _call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call into the backend; anything it raises becomes a BackendError."""
        try:
            return function(*args, **kwargs)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
