"""The contract every kernel backend keeps.

A backend renders a `NodePolicy` into the exact text it would load, applies it to the kernel of
the current network namespace atomically (never a moment with the firewall half-built or
absent), reads it back to verify, cuts the conntrack flows the new policy refuses, reports
drift, and removes its own objects and nothing else. It must never touch another tool's tables,
chains or sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from nodewall.policy.model import NodePolicy


class BackendError(RuntimeError):
    """An apply, read-back or removal that failed; the kernel holds what it held before."""


@dataclass(frozen=True)
class ApplyResult:
    backend: str
    version: str
    changed: bool  # False: the kernel already held this policy, nothing was sent
    incremental: bool  # True: only set elements were updated
    flows_cut: int = 0  # conntrack entries of refused flows deleted
    #: the node's own sockets of refused flows destroyed; None: the kernel cannot destroy sockets
    sockets_closed: int | None = 0


@dataclass(frozen=True)
class Status:
    backend: str
    present: bool
    version: str | None  # the applied policy's version, read from the kernel
    drift: tuple[str, ...] = field(default_factory=tuple)  # empty: the kernel holds it exactly


class Backend(Protocol):
    name: str

    def render(self, policy: NodePolicy) -> str: ...

    def apply(self, policy: NodePolicy) -> ApplyResult: ...

    def status(self) -> Status: ...

    def remove(self) -> bool: ...
