"""CIDR arithmetic for both families, fast enough for 8000-entry allow-lists.

Networks are `Net` tuples of (family, network as int, prefix length) so that sorting, containment
and intersection are integer comparisons. Parsing takes the quick `inet_pton` path and falls back
to `ipaddress` for the forms only it understands (netmasks, scoped addresses). Pure functions;
no knowledge of services or rules.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import NamedTuple

_BITS = {4: 32, 6: 128}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


class Net(NamedTuple):
    family: int
    network: int
    prefix: int

    @property
    def last(self) -> int:
        return self.network | ((1 << (_BITS[self.family] - self.prefix)) - 1)

    def __str__(self) -> str:
        packed = self.network.to_bytes(_BITS[self.family] // 8, "big")
        return f"{socket.inet_ntop(_AF[self.family], packed)}/{self.prefix}"

    def contains(self, other: Net) -> bool:
        return (self.family == other.family and self.prefix <= other.prefix
                and self.network <= other.network <= self.last)


def parse(text: str) -> tuple[Net, bool]:
    """The network a CIDR (or single address) names, and whether host bits were set."""
    addr, _, plen = text.partition("/")
    try:
        family = 6 if ":" in addr else 4
        value = int.from_bytes(socket.inet_pton(_AF[family], addr), "big")
        bits = _BITS[family]
        if plen and not plen.isdigit():
            raise ValueError(text)
        prefix = int(plen) if plen else bits
        if prefix > bits:
            raise ValueError(text)
    except (OSError, ValueError):
        if "%" in text:  # ipaddress takes IPv6 scope ids; they are no part of a network
            raise ValueError(f"{text!r} has a scope id") from None
        net = ipaddress.ip_network(text, strict=False)
        host_bits = "/" in text and ipaddress.ip_interface(text).ip != net.network_address
        return Net(net.version, int(net.network_address), net.prefixlen), host_bits
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
    return Net(family, value & mask, prefix), bool(value & ~mask)


def host(address: str) -> Net:
    """A single address as a /32 or /128."""
    net, _ = parse(address.partition("/")[0])
    return net


def reduce(items: Iterable[tuple[Net, str]]) -> list[tuple[Net, tuple[str, ...]]]:
    """Drop networks contained in (or equal to) others, keeping every reason on the one that
    stays; sorted by address. CIDR blocks are nested or disjoint, so one sweep does it."""
    kept: list[tuple[Net, list[str]]] = []
    family = end = -1
    for net, reason in sorted(items):  # by family, network, then the wider prefix first
        if net[0] == family and net[1] <= end:
            kept[-1][1].append(reason)
        else:
            family = net[0]
            end = net[1] | ((1 << (_BITS[family] - net[2])) - 1)
            kept.append((net, [reason]))
    return [(net, tuple(reasons)) for net, reasons in kept]


def intersect(net: Net, bounds: Iterable[Net]) -> list[Net]:
    """The parts of `net` inside any of `bounds` (each the smaller of a nested pair)."""
    parts = []
    for b in bounds:
        if b.contains(net):
            parts.append(net)
        elif net.contains(b):
            parts.append(b)
    return parts
