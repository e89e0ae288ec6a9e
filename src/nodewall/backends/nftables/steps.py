"""A policy rule as nft rule lines, each a list of steps: the one description of a rule's shape.

A `Rule` of the policy becomes one or more `Line`s (a protocol-less reject needs three: TCP
reset, UDP port-unreachable, admin-prohibited for the rest), each an ordered tuple of steps
(`iifname "lo"`, `ip saddr @set`, `ct state established,related`, `tcp dport { 22, 80 }`,
`counter`, `reject with tcp reset`, ...) and the comment the line carries. The steps are written
once, here, in the order `nft list` prints them; two renderers walk them: the text renderer
(`render.line_text`, what `nodewall render` prints) and the bytecode renderer
(`expr.line_parts`, the nf_tables expressions the backend sends). What the steps hold is already
normalised (ports sorted and distinct, ICMP types in code order, ct states in bit order), so
that neither renderer decides anything about the rule, only about its own notation (the
bytecode renderer adds the dependencies nft adds: `meta nfproto` before an address,
`meta l4proto` before a port).

Pure: a rule in, lines out. Never: customer text (a policy holds none; the comment is a
nodewall-made reason, sanitised by `comment` anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nodewall.backends.comments import safe_comment
from nodewall.policy.model import ICMP_TYPES, CtState, Family, Rule

COMMENT_MAX = 128
CT_ORDER: tuple[CtState, ...] = ("invalid", "established", "related", "new")  # bit order
L4Name = Literal["tcp", "udp", "esp", "icmp", "ipv6-icmp"]  # as nft names them
RejectWith = Literal["tcp reset", "icmpx port-unreachable", "icmpx admin-prohibited"]
ICMP_L4: dict[int, L4Name] = {4: "icmp", 6: "ipv6-icmp"}  # ICMP, ICMPv6 by family


def comment(text: str) -> str:
    """A nodewall-made text as an nft comment: a safe character set only, at most 128 bytes."""
    return safe_comment(text, COMMENT_MAX)


@dataclass(frozen=True)
class Iface:
    """`iifname "lo"` (input) or `oifname != "lo"` (output, negated)."""

    output: bool
    name: str
    negate: bool


@dataclass(frozen=True)
class NfProto:
    """`meta nfproto ipv4`: the packet's family."""

    family: Family


@dataclass(frozen=True)
class AddrInSet:
    """`ip saddr @name` / `ip6 daddr @name`: the source (or destination) address in a set."""

    family: Family
    source: bool
    set_name: str


@dataclass(frozen=True)
class CtStates:
    """`ct state established,related`: the conntrack state is one of these (in bit order)."""

    states: tuple[CtState, ...]


@dataclass(frozen=True)
class L4Proto:
    """`meta l4proto tcp` or `meta l4proto { icmp, ipv6-icmp }`."""

    protocols: tuple[L4Name, ...]


@dataclass(frozen=True)
class Dport:
    """`tcp dport 22` or `udp dport { 53, 123 }` (ports sorted, distinct, at least one)."""

    protocol: Literal["tcp", "udp"]
    ports: tuple[int, ...]


@dataclass(frozen=True)
class IcmpType:
    """`icmp type echo-request` or `icmpv6 type { ... }` (names in the order of their codes)."""

    family: Family
    names: tuple[str, ...]


@dataclass(frozen=True)
class SkUid:
    """`meta skuid 105`: the sending socket's owner."""

    uid: int


@dataclass(frozen=True)
class Limit:
    """`limit rate 10/second`."""

    per_second: int


@dataclass(frozen=True)
class Counter:
    """`counter`: packets and bytes counted."""


@dataclass(frozen=True)
class Reject:
    """`reject with tcp reset` (or an ICMPx code): the packet refused with an answer."""

    with_: RejectWith


@dataclass(frozen=True)
class Verdict:
    """`accept`, `drop` or `return`."""

    verdict: Literal["accept", "drop", "return"]


Step = (Iface | NfProto | AddrInSet | CtStates | L4Proto | Dport | IcmpType | SkUid | Limit
        | Counter | Reject | Verdict)


@dataclass(frozen=True)
class Line:
    """One nft rule line: its steps in order, and its comment ("" for none)."""

    steps: tuple[Step, ...]
    comment: str = ""


_REJECT_BY_PROTOCOL: dict[str | None, RejectWith] = {
    "tcp": "tcp reset", "udp": "icmpx port-unreachable"}


def rule_steps(rule: Rule) -> list[Line]:
    """One policy rule as its nft rule lines (a protocol-less reject needs three)."""
    reason = comment(rule.reason)
    if rule.action == "reject" and rule.protocol is None:
        return [
            Line(_steps(rule, (L4Proto(("tcp",)),), "tcp reset"), reason),
            Line(_steps(rule, (L4Proto(("udp",)),), "icmpx port-unreachable"), reason),
            Line(_steps(rule, (), "icmpx admin-prohibited"), reason),
        ]
    reject = _REJECT_BY_PROTOCOL.get(rule.protocol, "icmpx admin-prohibited")
    return [Line(_steps(rule, _protocol_steps(rule), reject), reason)]


def version_line(marker: str) -> Line:
    """The one rule of the version chain: `return comment "<marker>"` (the marker is made by
    the backend from the version and digests, not sanitised: it must come back as written)."""
    return Line((Verdict("return"),), marker)


def _protocol_steps(rule: Rule) -> tuple[Step, ...]:
    if rule.protocol in ("tcp", "udp"):
        ports = tuple(sorted(set(rule.dports)))
        if not ports:
            return (L4Proto((rule.protocol,)),)
        return (Dport(rule.protocol, ports),)
    if rule.protocol == "esp":
        return (L4Proto(("esp",)),)
    if rule.protocol == "icmp":
        if rule.family is None:
            return (L4Proto(("icmp", "ipv6-icmp")),)
        if not rule.icmp_types:
            return (L4Proto((ICMP_L4[rule.family],)),)
        codes = ICMP_TYPES[rule.family]
        return (IcmpType(rule.family, tuple(sorted(set(rule.icmp_types), key=codes.__getitem__))),)
    return ()


def _steps(rule: Rule, protocol: tuple[Step, ...], reject: RejectWith) -> tuple[Step, ...]:
    steps: list[Step] = []
    if rule.interface is not None:
        steps.append(Iface(rule.direction == "out", "lo", rule.interface == "not-loopback"))
    implied = rule.src_set or rule.dst_set or rule.protocol == "icmp"
    if rule.family is not None and not implied:
        steps.append(NfProto(rule.family))
    if rule.src_set:
        steps.append(AddrInSet(rule.family or 4, True, rule.src_set))
    if rule.dst_set:
        steps.append(AddrInSet(rule.family or 4, False, rule.dst_set))
    if rule.ct_states:
        steps.append(CtStates(tuple(s for s in CT_ORDER if s in rule.ct_states)))
    steps += protocol
    if rule.uid is not None:
        steps.append(SkUid(int(rule.uid)))
    if rule.limit_per_second is not None:
        steps.append(Limit(int(rule.limit_per_second)))
    if rule.action == "reject":
        steps += (Counter(), Reject(reject))
    else:
        steps.append(Verdict(rule.action))
    return tuple(steps)
