"""The reference semantics of a `NodePolicy`: packet in, verdict and deciding rule out.

This is what the kernel backends are checked against, so it stays small enough to trust: a
linear walk over the rules of the packet's direction, first match wins, each condition read
exactly as `nodewall.policy` documents it. It must never grow backend knowledge or shortcuts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nodewall.policy.model import (
    ICMP_TYPES,
    Action,
    CtState,
    Direction,
    Family,
    Interface,
    NodePolicy,
    Protocol,
    Rule,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Packet:
    """A packet as the firewall sees it. `src`/`dst` fix the family; `dport` is for tcp/udp,
    `icmp_type` (a name of `ICMP_TYPES`) for icmp; `uid` is the sending socket's owner, for
    egress."""

    src: str
    dst: str
    protocol: Protocol
    dport: int | None = None
    direction: Direction = "in"
    icmp_type: str | None = None
    uid: int | None = None
    interface: Interface = "not-loopback"
    ct_state: CtState = "new"

    @property
    def family(self) -> Family:
        return 4 if ipaddress.ip_address(self.src).version == 4 else 6


@dataclass(frozen=True)
class Verdict:
    action: Action
    rule: Rule
    rule_index: int  # position in policy.rules
    matched: tuple[str, ...] = ()  # reasons of the set elements that matched

    @property
    def reason(self) -> str:
        if not self.matched:
            return self.rule.reason
        return f"{self.rule.reason} ({'; '.join(self.matched)})"


def evaluate(policy: NodePolicy, packet: Packet) -> Verdict:
    """The verdict of the first rule of the packet's direction that matches it."""
    src = ipaddress.ip_address(packet.src)
    dst = ipaddress.ip_address(packet.dst)
    if src.version != dst.version:
        raise ValueError(f"source {packet.src} and destination {packet.dst} differ in family")
    if packet.icmp_type is not None and packet.icmp_type not in ICMP_TYPES[src.version]:
        raise ValueError(f"unknown ICMPv{src.version} type {packet.icmp_type!r}")
    for index, rule in enumerate(policy.rules):
        if rule.direction != packet.direction:
            continue
        matched = _match(policy, rule, packet, src, dst)
        if matched is not None:
            return Verdict(rule.action, rule, index, matched)
    raise ValueError(f"policy of {policy.node} has no rule matching {packet}")


def _match(
    policy: NodePolicy, rule: Rule, packet: Packet, src: IPAddress, dst: IPAddress
) -> tuple[str, ...] | None:
    """The matched element reasons when the rule matches the packet, else None."""
    if rule.family is not None and rule.family != src.version:
        return None
    if rule.interface is not None and rule.interface != packet.interface:
        return None
    if rule.ct_states and packet.ct_state not in rule.ct_states:
        return None
    if rule.protocol is not None and rule.protocol != packet.protocol:
        return None
    if rule.dports and packet.dport not in rule.dports:
        return None
    if rule.icmp_types and packet.icmp_type not in rule.icmp_types:
        return None
    if rule.uid is not None and packet.uid != rule.uid:
        return None
    reasons: list[str] = []
    for set_name, address in ((rule.src_set, src), (rule.dst_set, dst)):
        if set_name is None:
            continue
        hits = _set_hits(policy, set_name, address)
        if hits is None:
            return None
        reasons.extend(hits)
    return tuple(reasons)


def _set_hits(policy: NodePolicy, set_name: str, address: IPAddress) -> tuple[str, ...] | None:
    found: list[str] = []
    hit = False
    for element in policy.set(set_name).elements:
        if address in ipaddress.ip_network(element.network):
            hit = True
            found.extend(element.reasons)
    return tuple(found) if hit else None
