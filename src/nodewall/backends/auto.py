"""`--backend auto`: pick nftables or iptables for this host, and say which and why.

The rule: a host where nodewall already applied keeps that backend; a host that already runs
iptables rules (legacy or nft-backed: Docker, a cloud agent) gets the iptables backend, so that
one tool shows its whole firewall; any other host where nftables works gets nftables; the rest
iptables. The choice is made once per object, on first use, from the current network namespace.

It must never change the kernel itself: it reads, then hands every call to the chosen backend.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable

from nodewall.backends.base import ApplyResult, Backend, BackendError, Status
from nodewall.backends.iptables import xtables
from nodewall.policy.model import NodePolicy

log = logging.getLogger(__name__)


def _nft_ok(*args: str) -> bool:
    if shutil.which("nft") is None:
        return False
    done = subprocess.run(["nft", *args], capture_output=True, text=True, check=False)
    return done.returncode == 0


def choose() -> tuple[str, str]:
    """The backend name for this host and the reason, in words an operator can check."""
    if _nft_ok("list", "table", "inet", "nodewall"):
        return "nftables", "nodewall's nftables table (inet nodewall) is present"
    used = xtables.variant_usage()
    variants: tuple[xtables.Variant, ...] = ("nft", "legacy")
    for variant in variants:
        if used[variant] and xtables.read_filter(variant, 4).ours():
            return "iptables", f"nodewall's iptables chains are present (iptables-{variant})"
    held = [v for v in variants if used[v]]
    if held:
        return "iptables", f"the host already runs iptables rules (iptables-{'/'.join(held)})"
    if _nft_ok("list", "tables"):
        return "nftables", "nftables is usable and no iptables rules are present"
    return "iptables", "nftables is not usable here"


class AutoBackend:
    """A `Backend` that hands every call to the backend `choose` picks (see `chosen`, `why`),
    made by `make` from its name (`nodewall.backends.registry.get_backend`)."""

    name = "auto"

    def __init__(self, make: Callable[[str], Backend]) -> None:
        self._make = make
        self._backend: Backend | None = None
        self.chosen = ""
        self.why = ""

    def backend(self) -> Backend:
        if self._backend is None:
            try:
                self.chosen, self.why = choose()
            except BackendError as exc:
                raise BackendError(f"--backend auto could not choose: {exc}") from exc
            log.info("--backend auto chose %s: %s", self.chosen, self.why)
            self._backend = self._make(self.chosen)
        return self._backend

    def render(self, policy: NodePolicy) -> str:
        return self.backend().render(policy)

    def apply(self, policy: NodePolicy) -> ApplyResult:
        return self.backend().apply(policy)

    def status(self) -> Status:
        return self.backend().status()

    def remove(self) -> bool:
        return self.backend().remove()
