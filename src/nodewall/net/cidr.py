"""Address parsing and CIDR arithmetic for both families, fast enough for 8000-entry allow-lists.

Networks are `Net` tuples of (family, network as int, prefix length) so that sorting, containment
and intersection are integer comparisons. Parsing takes the quick `inet_pton` path and falls back
to `ipaddress` for the forms only it understands (netmasks, scoped addresses). Pure functions;
no knowledge of services or rules. The one home of address parsing (the reference evaluator
alone keeps to `ipaddress`, so that the semantics backends are tested against do not share this
module's quick paths).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from operator import itemgetter
from typing import NamedTuple

_BITS = {4: 32, 6: 128}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
#: Per family, the prefix lengths as written canonically ("0", "1", ... "32") and the host
#: mask of each length: the quick path of `parse_many`; any other spelling takes `parse`.
_PREFIXES = {family: {str(p): p for p in range(bits + 1)} for family, bits in _BITS.items()}
_HOSTMASKS = {family: tuple((1 << (bits - p)) - 1 for p in range(bits + 1))
              for family, bits in _BITS.items()}
_NETWORK = itemgetter(0)


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


def _pton_is_strict() -> bool:
    """Whether inet_pton reads only the canonical dotted quad (no leading zeros, no short
    forms), so that an address it reads is already written as `str(Net)` would write it."""
    for text in ("01.2.3.4", "1.2.3.04", "1.2.3.00", "0x1.2.3.4", "1.2.3", "1.2.3.4 ", "1.2.3.4."):
        try:
            socket.inet_pton(socket.AF_INET, text)
        except (OSError, ValueError):
            continue
        return False
    return True


_CANONICAL_V4 = _pton_is_strict()


class ParsedNetworks(NamedTuple):
    """What `parse_many` gives for a list of CIDR texts."""

    parsed: list[tuple[Net, bool]]  # each text's network and whether it had host bits set
    texts: list[str]  # str() of each network
    ipv6: int  # how many are IPv6
    host_bits: bool  # whether any had host bits set


def parse_many(texts: Iterable[str]) -> ParsedNetworks:
    """`[parse(t) for t in texts]` (same results, same ValueError), with `str()` of each
    network and a count of the IPv6 ones. The common "address/prefix" forms are read inline,
    and an IPv4 network without host bits is its own normalised text: an 8000-entry ip_filter
    is parsed in one pass."""
    parsed: list[tuple[Net, bool]] = []
    normalised: list[str] = []
    add = parsed.append
    add_text = normalised.append
    ipv6 = 0
    host_bits = False
    pton = socket.inet_pton
    ntop = socket.inet_ntop
    af_inet = socket.AF_INET
    af_inet6 = socket.AF_INET6
    from_bytes = int.from_bytes
    new = tuple.__new__
    prefixes4, prefixes6 = _PREFIXES[4], _PREFIXES[6]
    hostmasks4, hostmasks6 = _HOSTMASKS[4], _HOSTMASKS[6]
    reuse = _CANONICAL_V4
    for text in texts:
        addr, slash, plen = text.partition("/")
        if ":" in addr:
            prefix = prefixes6.get(plen) if slash else 128
            if prefix is not None and "%" not in addr:
                try:
                    packed = pton(af_inet6, addr)
                except (OSError, ValueError):
                    pass
                else:
                    value = from_bytes(packed, "big")
                    host = value & hostmasks6[prefix]
                    net = new(Net, (6, value ^ host, prefix))
                    ipv6 += 1
                    if host:
                        host_bits = True
                        add((net, True))
                        add_text(str(net))
                    else:
                        add((net, False))
                        add_text(f"{ntop(af_inet6, packed)}/{prefix}")
                    continue
        else:
            prefix = prefixes4.get(plen) if slash else 32
            if prefix is not None:
                try:
                    value = from_bytes(pton(af_inet, addr), "big")
                except (OSError, ValueError):
                    pass
                else:
                    host = value & hostmasks4[prefix]
                    net = new(Net, (4, value ^ host, prefix))
                    if host:
                        host_bits = True
                        add((net, True))
                        add_text(str(net))
                    elif reuse and type(text) is str:  # inet_pton read a canonical dotted quad
                        add((net, False))
                        add_text(text if slash else text + "/32")
                    else:
                        add((net, False))
                        add_text(str(net))
                    continue
        item = parse(text)
        add(item)
        add_text(str(item[0]))
        ipv6 += item[0].family == 6
        host_bits = host_bits or item[1]
    return ParsedNetworks(parsed, normalised, ipv6, host_bits)


#: Exactly the IPv4 addresses `ipaddress` accepts: four decimal octets 0..255, no leading zeros.
IPV4_ADDRESS = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


def parse_address(text: str) -> tuple[int, int]:
    """(family, address as int) of one address, equal for two spellings of one address;
    ValueError for anything else, a scope id or a prefix included. The common forms take the
    quick path (`inet_pton`, which reads the same forms as `ipaddress` for them)."""
    if "%" in text or "/" in text:  # a scope id is no part of a firewall address
        raise ValueError(f"{text!r} is not an address")
    family = 6 if ":" in text else 4
    if family == 6 or IPV4_ADDRESS.fullmatch(text):
        try:
            return family, int.from_bytes(socket.inet_pton(_AF[family], text), "big")
        except (OSError, ValueError):
            pass
    ip = ipaddress.ip_address(text)
    return ip.version, int(ip)


def parse_host_port(text: str) -> tuple[str, int]:
    """The address and port of `ADDRESS:PORT` (IPv6 as `[ADDRESS]:PORT`); ValueError else."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if host.startswith("[") else host
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not an ADDRESS:PORT")
    parse_address(host)
    return host, int(port)


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


def reduce_named(items: Iterable[tuple[Net, str, str]]) -> tuple[list[str], list[tuple[str, ...]]]:
    """`reduce` of (network, reason, the network's `str()`) items, for networks whose text is
    already at hand: the text of each network that stays, and its reasons, in the same order."""
    texts: list[str] = []
    reasons: list[tuple[str, ...]] = []
    add_text = texts.append
    add_reasons = reasons.append
    #: index in texts -> (network, reason) of each item merged there, the kept one first
    merged: dict[int, list[tuple[Net, str]]] = {}
    bits = _BITS
    family = end = -1
    kept = None
    # Sorted by network alone (quicker than by whole items); the reasons of a merged group,
    # equal networks included, are put in (network, reason) order at the end, as `reduce` has them.
    for net, reason, text in sorted(items, key=_NETWORK):
        fam, network, prefix = net
        if fam == family and network <= end:
            last = len(texts) - 1
            group = merged.get(last)
            if group is None:
                assert kept is not None
                merged[last] = group = [(kept, reasons[last][0])]
            group.append((net, reason))
        else:
            family = fam
            end = network | ((1 << (bits[fam] - prefix)) - 1)
            kept = net
            add_text(text)
            add_reasons((reason,))
    for index, group in merged.items():
        reasons[index] = tuple(reason for _, reason in sorted(group))
    return texts, reasons


def intersect(net: Net, bounds: Iterable[Net]) -> list[Net]:
    """The parts of `net` inside any of `bounds` (each the smaller of a nested pair)."""
    parts = []
    for b in bounds:
        if b.contains(net):
            parts.append(net)
        elif net.contains(b):
            parts.append(b)
    return parts
