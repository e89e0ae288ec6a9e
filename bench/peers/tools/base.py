"""What every benchmarked tool provides: its Debian packages, the script that applies the
node's policy from nothing, the script that applies one changed ip_filter entry, and any
private directories or daemon it needs while it runs.

A tool's config is written (untimed) into the run's work directory; only the script is timed.
Nothing here runs a command: `runner` does, through `sandbox.run_script`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..node import NodeFacts


@dataclass(frozen=True)
class Case:
    """One policy size: the spec files and facts before and after the one-entry change."""

    entries: int
    peers: int
    spec: Path
    spec_changed: Path
    facts: NodeFacts
    facts_changed: NodeFacts
    nft_text: str
    iptables_text: str


@dataclass(frozen=True)
class Script:
    text: str
    binds: Mapping[str, Path] | None = None
    env: Mapping[str, str] | None = None


class Tool:
    """Base: no packages, no daemon, no private directories."""

    name = "tool"
    #: (command, the Debian package providing it)
    commands: tuple[tuple[str, str], ...] = ()
    #: a floor is what the other figures are divided by
    floor_of: str | None = None

    @contextlib.contextmanager
    def session(self, ns: str, work: Path) -> Iterator[None]:
        """Whatever must run beside the scripts in `ns` (a daemon); stopped afterwards."""
        yield

    def apply(self, case: Case, work: Path) -> Script:
        raise NotImplementedError

    def change(self, case: Case, work: Path) -> Script:
        raise NotImplementedError

    def daemon_rss_kb(self) -> int:
        """Peak RSS of a daemon doing the work beside the script (0: none)."""
        return 0
