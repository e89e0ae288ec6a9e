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

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from nodewall.backends import xtables
from nodewall.policy import AddressSet

PREFIX = "nodewall-"
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


def set_type(s: AddressSet) -> str:
    return "hash:ip" if s.hosts_only else "hash:net"


def set_family(s: AddressSet) -> str:
    return "inet" if s.family == 4 else "inet6"


def members(s: AddressSet) -> frozenset[str]:
    """What the kernel set holds for a policy set. hash:net cannot hold a /0, so a default
    route is stored as its two /1 halves (the same addresses)."""
    out: set[str] = set()
    for network in s.networks:
        net = ipaddress.ip_network(network, strict=False)
        if net.prefixlen == 0:
            out.update(str(half) for half in net.subnets(prefixlen_diff=1))
        elif s.hosts_only:
            out.update(f"{a}/{net.max_prefixlen}" for a in (net if net.num_addresses > 1 else [
                net.network_address]))
        else:
            out.add(str(net))
    return frozenset(out)


def content_digest(type_: str, family: str, nets: Iterable[str]) -> str:
    blob = "\n".join([type_, family, *sorted(nets)]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def policy_digest(s: AddressSet) -> str:
    return content_digest(set_type(s), set_family(s), members(s))


def _member_text(type_: str, network: str) -> str:
    net = ipaddress.ip_network(network)
    if type_ == "hash:ip" or net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def create_lines(name: str, s: AddressSet) -> list[str]:
    """`ipset restore` lines creating and filling one set."""
    nets = sorted(members(s), key=_sort_key)
    size = max(1024, 1 << (max(len(nets), 1) - 1).bit_length())
    maxelem = max(65536, 2 * len(nets))
    lines = [f"create {name} {set_type(s)} family {set_family(s)} "
             f"hashsize {size} maxelem {maxelem}"]
    lines.extend(f"add {name} {_member_text(set_type(s), n)}" for n in nets)
    return lines


def kernel_create_lines(name: str, ks: KernelSet) -> list[str]:
    """`ipset restore` lines recreating a set read back from the kernel (for rollback)."""
    maxelem = max(65536, 2 * len(ks.members))
    lines = [f"create {name} {ks.type} family {ks.family} maxelem {maxelem}"]
    lines.extend(f"add {name} {_member_text(ks.type, n)}"
                 for n in sorted(ks.members, key=_sort_key))
    return lines


def _sort_key(network: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(network)
    return (net.version, int(net.network_address), net.prefixlen)


def restore(lines: list[str]) -> None:
    if lines:
        xtables.run(["ipset", "restore"], "\n".join(lines) + "\n")


def read_sets() -> dict[str, KernelSet]:
    """nodewall's sets in this network namespace, by kernel name."""
    text = xtables.run(["ipset", "save"])
    found: dict[str, tuple[str, str, set[str]]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[1].startswith(PREFIX):
            continue
        if parts[0] == "create":
            family = parts[parts.index("family") + 1] if "family" in parts else "inet"
            found[parts[1]] = (parts[2], family, set())
        elif parts[0] == "add" and parts[1] in found:
            found[parts[1]][2].add(str(ipaddress.ip_network(parts[2], strict=False)))
    return {
        name: KernelSet(name, t, fam, frozenset(m)) for name, (t, fam, m) in found.items()
    }
