"""Address parsing and CIDR arithmetic for both families, fast enough for 8000-entry allow-lists.

Networks are `Net` tuples of (family, network as int, prefix length) so that sorting, containment
and intersection are integer comparisons. Pure functions; no knowledge of services or rules. The
one home of address parsing (the reference evaluator alone keeps to `ipaddress`, so that the
semantics backends are tested against do not share this module's quick paths).

Every address and CIDR has one written form, and only that form is read (`NotCanonical`, which
says how to write it, for any other spelling of a network): IPv4 as a dotted quad without
leading zeros; IPv6 as RFC 5952 text (lower case, leading zeros of each group dropped, the
longest run of two or more zero groups written `::`, never dotted); a prefix as a decimal
length without leading zeros (no netmask or hostmask); no IPv4-mapped IPv6 (`::ffff:a.b.c.d`
is the IPv4 address, and the kernel never sees it on the wire as IPv6). Then text equality is
address equality, so a duplicate cannot hide behind a second spelling. The quick path is
`inet_pton` plus a comparison with `inet_ntop`, whose text is the canonical form but for the
few addresses glibc writes dotted; those take the slow path.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from operator import itemgetter
from typing import NamedTuple

from nodewall.net.family import AF as _AF
from nodewall.net.family import BITS as _BITS

#: Per family, the prefix lengths as written canonically ("0", "1", ... "32") and the host
#: mask of each length: the quick path of `parse_many`; any other spelling takes `parse`.
_PREFIXES = {family: {str(p): p for p in range(bits + 1)} for family, bits in _BITS.items()}
_HOSTMASKS = {family: tuple((1 << (bits - p)) - 1 for p in range(bits + 1))
              for family, bits in _BITS.items()}
_NETWORK = itemgetter(0)


class NotCanonical(ValueError):
    """A CIDR or address that names a network but is written otherwise than its one form;
    `canonical` is how to write it."""

    def __init__(self, text: str, canonical: str, why: str = "") -> None:
        self.text = text
        self.canonical = canonical
        self.why = why
        super().__init__(f"{text!r} is not in canonical form{why}; write {canonical!r}")


def _hex6(value: int) -> str:
    """RFC 5952 text of an IPv6 address, always in hex groups."""
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best, best_len, i = -1, 1, 0
    while i < 8:
        if groups[i]:
            i += 1
            continue
        j = i
        while j < 8 and not groups[j]:
            j += 1
        if j - i > best_len:
            best, best_len = i, j - i
        i = j
    parts = [f"{g:x}" for g in groups]
    if best < 0:
        return ":".join(parts)
    return ":".join(parts[:best]) + "::" + ":".join(parts[best + best_len:])


def address_text(family: int, value: int) -> str:
    """The canonical text of an address."""
    text = socket.inet_ntop(_AF[family], value.to_bytes(_BITS[family] // 8, "big"))
    return _hex6(value) if family == 6 and "." in text else text


class Net(NamedTuple):
    family: int
    network: int
    prefix: int

    @property
    def last(self) -> int:
        return self.network | ((1 << (_BITS[self.family] - self.prefix)) - 1)

    def __str__(self) -> str:
        return f"{address_text(self.family, self.network)}/{self.prefix}"

    def contains(self, other: Net) -> bool:
        return (self.family == other.family and self.prefix <= other.prefix
                and self.network <= other.network <= self.last)


_PADDED_V4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_MAPPED = 0xFFFF  # the upper 96 bits of an IPv4-mapped IPv6 address (::ffff:0:0/96)


def _read_address(addr: str, family: int) -> int:
    """The address `addr` names, in any spelling inet_pton reads or with zero-padded IPv4
    octets (so that the error can show the canonical form); ValueError for anything else."""
    try:
        return int.from_bytes(socket.inet_pton(_AF[family], addr), "big")
    except (OSError, ValueError):
        pass
    if family == 4 and _PADDED_V4.fullmatch(addr):
        octets = [int(part) for part in addr.split(".")]
        if max(octets) <= 255:
            return int.from_bytes(bytes(octets), "big")
    raise ValueError(f"{addr!r} is not an IP address")


def _read(text: str, with_prefix: bool = True) -> tuple[int, int, int]:
    """(family, address, prefix) of a canonically written CIDR or address (prefix: the
    family's width when none is written); NotCanonical for another spelling of one, ValueError
    for what is none. The slow path of `parse` and `parse_address`."""
    if "%" in text:  # IPv6 scope ids are no part of a firewall address
        raise ValueError(f"{text!r} has a scope id")
    addr, slash, plen = text.partition("/")
    if slash and not with_prefix:
        raise ValueError(f"{text!r} is not an address")
    family = 6 if ":" in addr else 4
    bits = _BITS[family]
    value = _read_address(addr, family)
    if not slash:
        prefix = bits
    elif plen.isascii() and plen.isdigit():
        prefix = int(plen)
    elif family == 4 and "." in plen:  # a netmask or a hostmask
        try:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{plen}").prefixlen
        except ValueError:
            raise ValueError(f"{text!r} is not a CIDR") from None
    else:
        raise ValueError(f"{text!r} is not a CIDR")
    if prefix > bits:
        raise ValueError(f"{text!r}: prefix longer than {bits}")
    if family == 6 and value >> 32 == _MAPPED and prefix >= 96:
        v4 = address_text(4, value & 0xFFFFFFFF) + (f"/{prefix - 96}" if slash else "")
        raise NotCanonical(text, v4, " (an IPv4-mapped IPv6 address is the IPv4 address)")
    canonical = address_text(family, value) + (f"/{prefix}" if slash else "")
    if canonical != text:
        raise NotCanonical(text, canonical)
    return family, value, prefix


def parse(text: str) -> tuple[Net, bool]:
    """The network a CIDR (or single address) names, and whether host bits were set;
    NotCanonical when it is not written in its one form, ValueError when it is no CIDR."""
    addr, slash, plen = text.partition("/")
    family = 6 if ":" in addr else 4
    prefix = _PREFIXES[family].get(plen) if slash else _BITS[family]
    value = None
    if prefix is not None and (family == 4 or "." not in addr):  # else glibc writes it dotted
        try:
            packed = socket.inet_pton(_AF[family], addr)
        except (OSError, ValueError):
            pass
        else:
            if (family == 4 and _CANONICAL_V4) or socket.inet_ntop(_AF[family], packed) == addr:
                value = int.from_bytes(packed, "big")
    if value is None or prefix is None:  # not the quick canonical form: say why, or read it
        family, value, prefix = _read(text)
    hostmask = _HOSTMASKS[family][prefix]
    return Net(family, value & ~hostmask, prefix), bool(value & hostmask)


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
    and a canonical network without host bits is its own normalised text: an 8000-entry
    ip_filter is parsed in one pass."""
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
            if prefix is not None and "." not in addr:
                try:
                    packed = pton(af_inet6, addr)
                    if ntop(af_inet6, packed) != addr:  # another spelling: `parse` says so
                        raise ValueError(addr)
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
                        add_text(text if slash else text + "/128")
                    continue
        else:
            prefix = prefixes4.get(plen) if slash else 32
            if prefix is not None:
                try:
                    packed = pton(af_inet, addr)
                    if not reuse and ntop(af_inet, packed) != addr:
                        raise ValueError(addr)
                    value = from_bytes(packed, "big")
                except (OSError, ValueError):
                    pass
                else:
                    host = value & hostmasks4[prefix]
                    net = new(Net, (4, value ^ host, prefix))
                    if host:
                        host_bits = True
                        add((net, True))
                        add_text(str(net))
                    else:  # canonical (inet_pton reads only that, or ntop agreed)
                        add((net, False))
                        add_text(text if slash else text + "/32")
                    continue
        item = parse(text)
        add(item)
        add_text(str(item[0]))
        ipv6 += item[0].family == 6
        host_bits = host_bits or item[1]
    return ParsedNetworks(parsed, normalised, ipv6, host_bits)


#: Exactly the canonical IPv4 addresses: four decimal octets 0..255, no leading zeros.
IPV4_ADDRESS = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


def parse_address(text: str) -> tuple[int, int]:
    """(family, address as int) of one canonically written address; NotCanonical for another
    spelling of one, ValueError for anything else (a scope id or a prefix included)."""
    if "/" in text:
        raise ValueError(f"{text!r} is not an address")
    if ":" in text:
        if "." not in text and "%" not in text:
            try:
                packed = socket.inet_pton(socket.AF_INET6, text)
            except (OSError, ValueError):
                pass
            else:
                if socket.inet_ntop(socket.AF_INET6, packed) == text:
                    return 6, int.from_bytes(packed, "big")
    elif IPV4_ADDRESS.fullmatch(text):
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    family, value, _ = _read(text, with_prefix=False)
    return family, value


_V4_NOT_HOSTS = (  # (network, prefix, why), most specific first
    (0, 32, "the unspecified address"),
    (0, 8, "in 0.0.0.0/8 (this network)"),
    (127 << 24, 8, "a loopback address"),
    (0xA9FEA9FE, 32, "the metadata address"),
    (0xA9FE0000, 16, "a link-local address"),
    (0xE0000000, 4, "a multicast address"),
    (0xFFFFFFFF, 32, "the broadcast address"),
    (0xF0000000, 4, "in 240.0.0.0/4 (reserved)"),
)
_V6_NOT_HOSTS = (
    (0, 128, "the unspecified address"),
    (1, 128, "a loopback address"),
    (0xFF << 120, 8, "a multicast address"),
    (0xFE80 << 112, 10, "a link-local address"),
    (_MAPPED << 32, 96, "an IPv4-mapped address"),
)


def not_a_host(family: int, value: int) -> str | None:
    """Why an address cannot be a node's own unicast address (unspecified, loopback,
    link-local, the metadata address, multicast, broadcast, reserved), or None when it can."""
    bits = _BITS[family]
    for network, prefix, why in _V4_NOT_HOSTS if family == 4 else _V6_NOT_HOSTS:
        if value >> (bits - prefix) == network >> (bits - prefix):
            return why
    return None


_PORT = re.compile(r"[1-9][0-9]{0,4}")


def parse_host_port(text: str) -> tuple[str, int]:
    """The address and port of `ADDRESS:PORT` (IPv6 as `[ADDRESS]:PORT`), written canonically;
    NotCanonical for another spelling, ValueError for anything else."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    address = host[1:-1] if bracketed else host
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not an ADDRESS:PORT")
    try:
        family, value = parse_address(address)
        why = ""
    except NotCanonical as exc:
        family, value = parse_address(exc.canonical)
        why = "not canonical"
    if (why or not _PORT.fullmatch(port) or bracketed != (family == 6)):
        shown = address_text(family, value)
        canonical = f"[{shown}]:{int(port)}" if family == 6 else f"{shown}:{int(port)}"
        raise NotCanonical(text, canonical)
    return address, int(port)


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
