"""Snapshots of what one backend holds, for putting the previous ruleset back exactly.

`take(backend)` reads nodewall's objects of that backend (nftables: table `inet nodewall`;
iptables: the NODEWALL- chains, their jumps and the nodewall- sets), `restore(snapshot)` puts
them back as they were, or removes nodewall's objects when there were none, and verifies by
reading the kernel back (`BackendError` when it differs). The previous ruleset is restored as
the kernel held it, not recompiled from a policy: whatever was applied before (by the agent, by
an older nodewall, or drifted by hand) comes back byte for byte.

It knows nothing of confirmation windows or timers (`nodewall.cli.confirm` has those) and must
never touch objects of other tools.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodewall.backends.base import Backend, BackendError
from nodewall.backends.iptables import snapshot as ipt
from nodewall.backends.iptables.backend import IptablesBackend
from nodewall.backends.nftables import snapshot as nft


@dataclass(frozen=True)
class Snapshot:
    backend: str
    held: nft.NftSnapshot | ipt.IptSnapshot

    @property
    def empty(self) -> bool:
        """True when nodewall held nothing in this backend."""
        if isinstance(self.held, nft.NftSnapshot):
            return self.held.batch is None
        return not any(self.held.chains.values()) and not self.held.sets


def take(backend: Backend) -> Snapshot:
    """What `backend` (a concrete one: nftables or iptables) holds of nodewall's now."""
    if backend.name == "nftables":
        return Snapshot("nftables", nft.take())
    if isinstance(backend, IptablesBackend):
        return Snapshot("iptables", ipt.take(backend.variant()))
    raise BackendError(f"backend {backend.name} cannot be snapshotted")


def holds(snapshot: Snapshot) -> bool:
    """True when the kernel holds exactly what the snapshot does."""
    if isinstance(snapshot.held, nft.NftSnapshot):
        return nft.holds(snapshot.held)
    return ipt.holds(snapshot.held)


def restore(snapshot: Snapshot) -> None:
    """Put the snapshot back; `BackendError` when the kernel, read back, differs."""
    if isinstance(snapshot.held, nft.NftSnapshot):
        nft.restore(snapshot.held)
    else:
        ipt.restore(snapshot.held)
