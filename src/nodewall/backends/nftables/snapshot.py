"""The nftables table `inet nodewall` as it was, and putting it back exactly (for the rollback
of `nodewall apply --confirm`).

A snapshot is the table as the kernel dumps it, object by object (the table, its sets, their
elements, its chains, its rules, each as the attributes the kernel answered), plus its image
(`nftwire.Image`, what the backend compares). Restoring sends those same objects back in one
transaction, `add table; delete table;` then table, sets, elements, chains and rules (handles,
use counts and positions left out, rules appended in the order dumped); or deletes the table
when there was none. The kernel's own bytes go back, so the restored table reads back equal to
the snapshot's image, which is checked (`BackendError` otherwise). Text would not do: `nft -f`
of a listing turns `reject with icmpx port-unreachable` after an `ip daddr` match into an
ICMP (not ICMPX) reject, so a listing cannot give back the bytecode nodewall sends.

It must never write outside table `inet nodewall`: every object it sends was dumped from that
table (`nftables.dump` filters every dump to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nodewall.backends import applylock, netlink
from nodewall.backends.base import BackendError
from nodewall.backends.nftables import dump as nftdump
from nodewall.backends.nftables import nfnetlink as nl
from nodewall.backends.nftables import wire as nftwire
from nodewall.backends.nftables.render import TABLE
from nodewall.backends.nftables.wire import Image

#: Attributes kept when an object is sent back (the rest are the kernel's bookkeeping:
#: handles, use counts, positions, chain counters, ids).
_KEEP = {
    nl.NEWTABLE: (1, 2, 6),  # name, flags, userdata
    nl.NEWSET: (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 17, 18),
    nl.NEWCHAIN: (1, 3, 4, 5, 7, 10, 12),  # table, name, hook, policy, type, flags, udata
    nl.NEWRULE: (1, 2, 4, 5, 7),  # table, chain, expressions, compat, userdata
}
_NLM_F_APPEND = 0x800
_READS = 3  # a chain skipped by a dump that another tool's commit disturbed: read again


@dataclass(frozen=True)
class NftSnapshot:
    batch: tuple[nl.Message, ...] | None  # None: there was no table inet nodewall
    image: Image | None


def _socket() -> nl.NfSocket:
    try:
        return nl.NfSocket()
    except OSError as exc:
        raise BackendError(f"nf_tables netlink is not available: {exc}") from exc


def _body(kind: int, attrs: dict[int, bytes]) -> bytes:
    return b"".join(netlink.attr(k, attrs[k]) for k in _KEEP[kind] if k in attrs)


def _objects(sock: nl.NfSocket) -> tuple[list[nl.Message], set[str]] | None:
    """The batch re-creating the table as dumped now, and the chain names in it."""
    table = nftdump.one(sock, nl.GETTABLE, b"")
    if table is None:
        return None
    t = netlink.string(1, TABLE)
    batch = [nl.Message(nl.NEWTABLE, nftwire.NFPROTO_INET, t, "add table"),
             nl.Message(nl.DELTABLE, nftwire.NFPROTO_INET, t, "delete table", flags=0),
             nl.Message(nl.NEWTABLE, nftwire.NFPROTO_INET, _body(nl.NEWTABLE, table),
                        "create table")]
    elements: list[nl.Message] = []
    for index, s in enumerate(nftdump.ours(sock, nl.GETSET), start=1):
        name = netlink.text(s[2])
        batch.append(nl.Message(nl.NEWSET, nftwire.NFPROTO_INET,
                                _body(nl.NEWSET, s) + netlink.u32(10, index), f"add set {name}"))
        items = netlink.split_attrs(nftwire.read_elements(sock, name))
        if items:
            elements += nftwire.element_messages(name, items, set_id=index)
    batch += elements
    chains = nftdump.ours(sock, nl.GETCHAIN)
    batch += [nl.Message(nl.NEWCHAIN, nftwire.NFPROTO_INET, _body(nl.NEWCHAIN, c),
                         f"add chain {netlink.text(c[3])}") for c in chains]
    names = {netlink.text(c[3]) for c in chains}
    for r in nftdump.ours(sock, nl.GETRULE):
        chain = netlink.text(r.get(2, b""))
        names.add(chain)
        batch.append(nl.Message(nl.NEWRULE, nftwire.NFPROTO_INET, _body(nl.NEWRULE, r),
                                f"add rule to chain {chain}",
                                flags=netlink.NLM_F_CREATE | _NLM_F_APPEND))
    return batch, names


def _image(sock: nl.NfSocket) -> Image | None:
    try:
        return nftwire.read_image(sock)
    except OSError as exc:
        raise BackendError(f"reading table inet nodewall failed: {exc}") from exc


def take() -> NftSnapshot:
    """What table `inet nodewall` holds now (under the apply lock, so no apply is half-way)."""
    with applylock.held():
        sock = _socket()
        try:
            for _ in range(_READS):
                image = _image(sock)
                found = _objects(sock)
                if image is None and found is None:
                    return NftSnapshot(None, None)
                if image is not None and found is not None \
                        and found[1] == set(image.chains) and _image(sock) == image:
                    return NftSnapshot(tuple(found[0]), image)
        except OSError as exc:
            raise BackendError(f"reading table inet nodewall failed: {exc}") from exc
        finally:
            sock.close()
    raise BackendError("table inet nodewall kept changing while it was read; no snapshot")


def holds(snapshot: NftSnapshot) -> bool:
    """True when the kernel holds the snapshot's table (or, for None, no table)."""
    sock = _socket()
    try:
        return _image(sock) == snapshot.image
    finally:
        sock.close()


def restore(snapshot: NftSnapshot) -> None:
    """Put table `inet nodewall` back as the snapshot holds it, in one transaction."""
    with applylock.held():
        sock = _socket()
        try:
            batch: Sequence[nl.Message]
            if snapshot.batch is not None:
                batch = snapshot.batch
            elif _image(sock) is not None:
                batch = [nl.Message(nl.DELTABLE, nftwire.NFPROTO_INET,
                                    netlink.string(1, TABLE), "delete table", flags=0)]
            else:
                batch = []
            try:
                sock.transaction(batch)
            except netlink.NetlinkError as exc:
                what = batch[exc.index].what if 0 <= exc.index < len(batch) else "the batch"
                raise BackendError(f"nftables rollback refused; the kernel keeps the new "
                                   f"ruleset:\n{what}: {exc.strerror}") from exc
            if _image(sock) != snapshot.image:
                raise BackendError("nftables rollback: table inet nodewall read back differs "
                                   "from the ruleset held before the apply")
        finally:
            sock.close()
