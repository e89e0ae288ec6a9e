"""Dumps of nodewall's own nf_tables table: what the kernel answers, cut down to the objects of
table `inet nodewall`, whatever else it sends.

The kernel does not keep every dump to the table a request names. A chain dump answers every
chain of the family, of every table (the table attribute of the request is not looked at);
object and flowtable dumps filter by table late; rule, set and element dumps honour the table
named. Kernels differ, and a neighbour's `inet` table (firewalld's dozens of chains, another
tool's chain named `input`) must never read as part of nodewall's. So every answer of every
dump is kept here only if its family is inet and its table attribute (attribute 1 of every
nf_tables object) is nodewall's table, for every kind alike, whether or not the kernel filtered
it already.

Dumps and other tools' commits. A dump comes in parts, and the kernel resumes each part at a
position counted from the start. Rule, set and element dumps count inside nodewall's table,
which only nodewall changes, so another tool's commits between parts cannot disturb them. Chain,
object and flowtable dumps count the objects of the other tables before nodewall's too: a
neighbour adding or deleting chains between two parts shifts the position, and one object at
the part boundary can be repeated or skipped. A repeat is harmless (read by name); a skipped
chain is made up for by `nftwire.read_image`, which asks for the header of every chain the rule
dump names by its exact name. What is left is an empty chain, object or flowtable that someone
else put inside nodewall's table missed by one read while a neighbour changes its own table;
none of them can change a verdict without a rule of nodewall's table naming it, and every rule
is read exactly. (Redoing an interrupted dump instead does not converge beside a neighbour that
commits in a tight loop.)

Never: send anything but GET requests, or return an object of another table or family.
"""

from __future__ import annotations

from nodewall.backends import netlink
from nodewall.backends.nftables import nfnetlink as nl
from nodewall.backends.nftables.render import TABLE

NFPROTO_INET = 1
_TABLE_ATTR = 1  # NFTA_{CHAIN,RULE,SET,SET_ELEM_LIST,OBJ,FLOWTABLE}_TABLE
_OBJECT_TYPES = {1: "counter", 2: "quota", 3: "ct helper", 4: "limit", 5: "connlimit",
                 6: "tunnel", 7: "ct timeout", 8: "secmark", 9: "ct expectation",
                 10: "synproxy"}


def table_attr() -> bytes:
    """The attribute naming nodewall's table, first in every request about it."""
    return netlink.string(_TABLE_ATTR, TABLE)


def ours(sock: nl.NfSocket, kind: int, extra: bytes = b"") -> list[dict[int, bytes]]:
    """The attributes of each object a dump of `kind` (asked about nodewall's table, plus the
    attributes `extra`) answers that belongs to table `inet nodewall`, in the kernel's order."""
    wanted = TABLE.encode()
    found = []
    for family, payload in sock.dump(kind, NFPROTO_INET, table_attr() + extra):
        attrs = netlink.parse_attrs(payload)
        if family == NFPROTO_INET and attrs.get(_TABLE_ATTR, b"").rstrip(b"\0") == wanted:
            found.append(attrs)
    return found


def one(sock: nl.NfSocket, kind: int, extra: bytes) -> dict[int, bytes] | None:
    """The attributes of the one object of nodewall's table a GET of `kind` names (by the
    attributes `extra`), or None when there is none."""
    for payload in sock.request(kind, NFPROTO_INET, table_attr() + extra, dump=False):
        attrs = netlink.parse_attrs(payload)
        if attrs.get(_TABLE_ATTR, b"").rstrip(b"\0") == TABLE.encode():
            return attrs
    return None


def extras(sock: nl.NfSocket) -> tuple[str, ...]:
    """Stateful objects and flowtables in nodewall's table (nodewall makes none), as
    `counter NAME`, `flowtable NAME`, sorted."""
    found = [f"{_OBJECT_TYPES.get(netlink.be32(a.get(3, b'')), 'object')} "
             f"{netlink.text(a.get(2, b''))}" for a in ours(sock, nl.GETOBJ)]
    found += [f"flowtable {netlink.text(a.get(2, b''))}" for a in ours(sock, nl.GETFLOWTABLE)]
    return tuple(sorted(found))
