"""The ipsets of the iptables backend: names, restore text, read-back.

A policy's `AddressSet` becomes one ipset, `hash:net` for networks, `hash:ip` for hosts-only
sets (cluster peers, integration nodes). Kernel names are `nodewall-<set>` or, in the second
slot, `nodewall-<set>-b`: a full apply fills the slot the running rules do not use, so old rules
keep matching old sets until the new chains replace them in one transaction; a set-only update
fills the other slot as a temporary set and swaps it in (`ipset swap` is atomic), so no packet
ever meets a half-filled set.

This module only writes text for `ipset restore` and parses `ipset save`; it must never touch a
set whose name does not start with `nodewall-`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nodewall.backends.base import BackendError
from nodewall.backends.iptables import xtables
from nodewall.net.family import IPSET
from nodewall.policy.model import AddressSet

PREFIX = "nodewall-"
_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
                   r"(/(3[0-2]|[12]?\d))?")
SLOT_B = "-b"


@dataclass(frozen=True)
class KernelSet:
    name: str
    type: str  # "hash:net" | "hash:ip"
    family: str  # "inet" | "inet6"
    members: frozenset[str]  # normalised networks, "10.0.0.1/32"

    @property
    def digest(self) -> str:
        return content_digest(self.type, self.family, self.members)


def kernel_name(set_name: str, slot: str) -> str:
    return PREFIX + set_name + (SLOT_B if slot == "b" else "")


def other_slot(slot: str) -> str:
    return "a" if slot == "b" else "b"


def other_name(name: str) -> str:
    """The kernel name of the same set in the other slot."""
    return name[: -len(SLOT_B)] if name.endswith(SLOT_B) else name + SLOT_B


def set_type(s: AddressSet) -> str:
    return "hash:ip" if s.hosts_only else "hash:net"


def set_family(s: AddressSet) -> str:
    return IPSET[s.family]


def members(s: AddressSet) -> frozenset[str]:
    """What the kernel set holds for a policy set. hash:net cannot hold a /0, so a default
    route is stored as its two /1 halves (the same addresses)."""
    return _members(s.networks, s.hosts_only)


@functools.lru_cache(maxsize=128)
def _members(networks: tuple[str, ...], hosts_only: bool) -> frozenset[str]:
    out: set[str] = set()
    for network in networks:
        if network.endswith("/0"):
            net = ipaddress.ip_network(network)
            out.update(str(half) for half in net.subnets(prefixlen_diff=1))
            continue
        member = _canonical(network)
        if hosts_only and not member.endswith(("/32", "/128")):
            raise ValueError(f"a hosts-only set cannot hold the network {network}")
        out.add(member)
    return frozenset(out)


def _canonical(member: str) -> str:
    """One network in the form both sides are compared in, for policy text and `ipset save`
    text alike. IPv4 text is taken as it is (the policy holds normalised CIDRs, ipset prints
    them the same way, a host without /32); IPv6 text goes through ipaddress, whose spelling
    and inet_ntop's can differ."""
    if ":" in member or not _IPV4.fullmatch(member):  # ipaddress also refuses anything odd
        return str(ipaddress.ip_network(member, strict=False))
    return member if "/" in member else member + "/32"


def initval(set_name: str) -> str:
    """The hash seed of a set, fixed by its policy name: a set refilled or recreated (either
    slot) reads back byte-identical. Its elements come from the policy, never from packets,
    so a predictable seed gives an outsider nothing to collide."""
    return "0x" + hashlib.sha256(set_name.encode()).hexdigest()[:8]


def content_digest(type_: str, family: str, nets: Iterable[str]) -> str:
    blob = "\n".join([type_, family, *sorted(nets)]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def policy_digest(s: AddressSet) -> str:
    return content_digest(set_type(s), set_family(s), members(s))


def create_lines(name: str, s: AddressSet) -> list[str]:
    """`ipset restore` lines creating and filling one set."""
    nets = sorted(members(s))
    size = max(1024, 1 << (max(len(nets), 1) - 1).bit_length())
    maxelem = max(65536, 2 * len(nets))
    lines = [f"create {name} {set_type(s)} family {set_family(s)} "
             f"hashsize {size} maxelem {maxelem} initval {initval(s.name)}"]
    lines.extend(f"add {name} {_member_text(n)}" for n in nets)
    return lines


def _member_text(network: str) -> str:
    """A host without its prefix length, as ipset prints it (and as hash:ip needs it)."""
    for host in ("/32", "/128"):
        if network.endswith(host):
            return network[: -len(host)]
    return network


def restore(lines: list[str]) -> None:
    if lines:
        text = "\n".join(lines) + "\n"
        try:
            xtables.run(["ipset", "restore"], text)
        except BackendError as exc:
            raise BackendError(xtables.with_offending_line(str(exc), text)) from exc


def read_sets(only: Sequence[str] | None = None) -> dict[str, KernelSet]:
    """nodewall's sets in this network namespace, by kernel name (`only`: just these; one
    `ipset save` each, cheaper than saving every set when they are few)."""
    if only is None or len(only) > 3:
        text = xtables.run(["ipset", "save"])
    else:
        texts = []
        for name in only:
            with contextlib.suppress(BackendError):  # absent: left out of the answer
                texts.append(xtables.run(["ipset", "save", name]))
        text = "".join(texts)
    found: dict[str, tuple[str, str, set[str]]] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        name, _, rest = rest.partition(" ")
        if not name.startswith(PREFIX) or (only is not None and name not in only):
            continue
        if kind == "add" and name in found:
            found[name][2].add(_canonical(rest.partition(" ")[0]))
        elif kind == "create":
            parts = rest.split()
            family = parts[parts.index("family") + 1] if "family" in parts else "inet"
            found[name] = (parts[0], family, set())
    return {
        name: KernelSet(name, t, fam, frozenset(m)) for name, (t, fam, m) in found.items()
    }
