"""Dumps of nodewall's own nf_tables table: what the kernel answers, cut down to the objects of
table `inet nodewall`, whatever else it sends.

The kernel does not keep every dump to the table a request names. A chain dump answers every
chain of the family, of every table (the table attribute of the request is not looked at);
object and flowtable dumps filter by table but count other tables' objects in the position a
dump resumes from; rule, set and element dumps honour the table named. Kernels differ, and a
neighbour's `inet` table (firewalld's dozens of chains, another tool's chain named `input`)
must never read as part of nodewall's. So every answer of every dump is kept here only if its
family is inet and its table attribute (attribute 1 of every nf_tables object) is nodewall's
table, for every kind alike, whether or not the kernel filtered it already.

A dump comes in parts; when anyone commits between two parts, the kernel flags the later ones
(NLM_F_DUMP_INTR). Where the position a dump resumes from counts objects of other tables
(chains, objects, flowtables), such a commit, even in another tool's table, can make it skip or
repeat one of nodewall's: an interrupted dump of those kinds is redone. Rule, set and element
dumps resume at a position inside nodewall's table, which only nodewall changes, so another
tool's commits cannot disturb them; their flag is not a reason to read again.

Never: send anything but GET requests, or return an object of another table or family.
"""

from __future__ import annotations

import errno

from nodewall.backends import netlink
from nodewall.backends import nfnetlink as nl
from nodewall.backends.nftrender import TABLE

NFPROTO_INET = 1
_TABLE_ATTR = 1  # NFTA_{CHAIN,RULE,SET,SET_ELEM_LIST,OBJ,FLOWTABLE}_TABLE
_SHARED_POSITION = {nl.GETCHAIN, nl.GETOBJ, nl.GETFLOWTABLE}
_TRIES = 8
_OBJECT_TYPES = {1: "counter", 2: "quota", 3: "ct helper", 4: "limit", 5: "connlimit",
                 6: "tunnel", 7: "ct timeout", 8: "secmark", 9: "ct expectation",
                 10: "synproxy"}


def table_attr() -> bytes:
    """The attribute naming nodewall's table, first in every request about it."""
    return netlink.string(_TABLE_ATTR, TABLE)


def ours(sock: nl.NfSocket, kind: int, extra: bytes = b"") -> list[dict[int, bytes]]:
    """The attributes of each object a dump of `kind` (asked about nodewall's table, plus the
    attributes `extra`) answers that belongs to table `inet nodewall`, in the kernel's order."""
    for _ in range(_TRIES):
        dumped = sock.dump(kind, NFPROTO_INET, table_attr() + extra)
        if not dumped.interrupted or kind not in _SHARED_POSITION:
            break
    else:
        raise OSError(errno.EAGAIN, f"nf_tables dump {kind} interrupted {_TRIES} times in a "
                      "row by other commits")
    wanted = TABLE.encode()
    found = []
    for family, payload in dumped.answers:
        attrs = netlink.parse_attrs(payload)
        if family == NFPROTO_INET and attrs.get(_TABLE_ATTR, b"").rstrip(b"\0") == wanted:
            found.append(attrs)
    return found


def extras(sock: nl.NfSocket) -> tuple[str, ...]:
    """Stateful objects and flowtables in nodewall's table (nodewall makes none), as
    `counter NAME`, `flowtable NAME`, sorted."""
    found = [f"{_OBJECT_TYPES.get(netlink.be32(a.get(3, b'')), 'object')} "
             f"{netlink.text(a.get(2, b''))}" for a in ours(sock, nl.GETOBJ)]
    found += [f"flowtable {netlink.text(a.get(2, b''))}" for a in ours(sock, nl.GETFLOWTABLE)]
    return tuple(sorted(found))
