"""The node policy: the one interface between what should be allowed and how a kernel is told.

A `NodePolicy` is backend-neutral. It holds named address sets (one family each) and an ordered
list of rules per direction; the first matching rule decides. The compiler produces it, the
evaluator gives it its reference meaning, and the backends (nftables, iptables+ipset) render it.

This module must never import the spec, the catalogue or any backend: it knows nothing of
services, ip_filter or nft syntax. Every string in it is made by nodewall (set names, reasons);
customer text (ip_filter descriptions) never enters a policy.

Semantics of a `Rule` (all given conditions must hold; an absent condition matches anything):
- `direction`: "in" rules are checked for packets arriving at the node, "out" for packets it sends.
- `family`: 4 or 6; None means both.
- `interface`: "loopback" / "not-loopback": the input interface for "in", output for "out".
- `ct_states`: the packet's conntrack state is one of these ("new", "established", "related",
  "invalid"); empty matches any state.
- `protocol`: "tcp", "udp", "esp" or "icmp" (ICMP for IPv4, ICMPv6 for IPv6).
- `src_set` / `dst_set`: the source / destination address is in the named set.
- `dports`: the destination port is one of these (tcp/udp rules only).
- `icmp_types`: the ICMP type is one of these (icmp rules only), names as in `ICMP_TYPES`.
- `uid`: the sending socket belongs to this uid ("out" rules only).
- `limit_per_second`: the rule matches at most this many packets a second (the reference
  semantics assume the limit is not reached).
Actions: "accept"; "drop" (silently); "reject": TCP gets a reset, UDP an ICMP(v6)
port-unreachable, any other protocol an ICMP(v6) administratively-prohibited.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, Literal

Family = Literal[4, 6]
Direction = Literal["in", "out"]
Action = Literal["accept", "reject", "drop"]
Protocol = Literal["tcp", "udp", "icmp", "esp"]
Interface = Literal["loopback", "not-loopback"]
CtState = Literal["new", "established", "related", "invalid"]

#: ICMP type names a rule may use, per family, with their numeric type codes.
ICMP_TYPES: dict[int, dict[str, int]] = {
    4: {
        "destination-unreachable": 3,
        "echo-request": 8,
        "echo-reply": 0,
        "time-exceeded": 11,
        "parameter-problem": 12,
    },
    6: {
        "destination-unreachable": 1,
        "packet-too-big": 2,
        "time-exceeded": 3,
        "parameter-problem": 4,
        "echo-request": 128,
        "echo-reply": 129,
        "nd-router-solicit": 133,
        "nd-router-advert": 134,
        "nd-neighbor-solicit": 135,
        "nd-neighbor-advert": 136,
    },
}

#: Set names are short identifiers so that every backend can prefix them (ipset names are at
#: most 31 characters: "nodewall-" + name + a 2-character swap suffix must fit).
SET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,19}$")


@dataclass(frozen=True)
class SetElement:
    """One network of an address set, with why it is there (nodewall's words, never a
    customer's description)."""

    network: str  # normalised CIDR: "10.0.0.0/24", "10.0.0.11/32", "2001:db8::/48"
    reasons: tuple[str, ...] = ()


#: Derived values cached on the (frozen) objects below: not part of their data. `cut_from`
#: marks a set as another set less some of its elements (`nodewall.policy.encoding.cut`).
_CACHED = frozenset({"networks", "version", "cut_from"})


@dataclass(frozen=True)
class AddressSet:
    """A named set of networks of one family. `hosts_only` sets hold single addresses
    (/32 or /128): cluster peers and integration nodes, allowed point-to-point."""

    name: str
    family: Family
    hosts_only: bool
    purpose: str
    elements: tuple[SetElement, ...] = ()

    @cached_property
    def networks(self) -> tuple[str, ...]:
        return tuple(e.network for e in self.elements)

    @classmethod
    def of(cls, name: str, family: Family, hosts_only: bool, purpose: str,
           networks: Sequence[str], reasons: Sequence[tuple[str, ...]]) -> AddressSet:
        """A set from its networks and their reasons side by side, its `networks` already
        known (a backend reads them; 8000 of them cost a millisecond to gather again)."""
        made = cls(name, family, hosts_only, purpose, tuple(map(SetElement, networks, reasons)))
        made.__dict__["networks"] = tuple(networks)  # the slot of the cached property
        return made


@dataclass(frozen=True)
class Rule:
    """One ordered rule: match conditions, an action and the reason it exists."""

    direction: Direction
    action: Action
    reason: str
    family: Family | None = None
    interface: Interface | None = None
    ct_states: tuple[CtState, ...] = ()
    protocol: Protocol | None = None
    src_set: str | None = None
    dst_set: str | None = None
    dports: tuple[int, ...] = ()
    icmp_types: tuple[str, ...] = ()
    uid: int | None = None
    limit_per_second: int | None = None


@dataclass(frozen=True)
class ComponentPort:
    """A port this node serves, for `plan`: which component, who may reach it (set names)."""

    name: str
    port: int
    protocol: Literal["tcp", "udp"]
    route: Literal["client", "cluster", "management", "ipsec", "web"]
    source_sets: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodePolicy:
    """Everything a node's firewall must hold. Rules are kept in evaluation order; for each
    direction, the last rule matches every packet (the policy is complete)."""

    node: str
    service: str
    service_type: str
    environment: str
    sets: tuple[AddressSet, ...]
    rules: tuple[Rule, ...]
    components: tuple[ComponentPort, ...] = ()
    warnings: tuple[str, ...] = ()

    def set(self, name: str) -> AddressSet:
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(name)

    def rules_for(self, direction: Direction) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.direction == direction)

    @cached_property
    def version(self) -> str:
        """A digest of what the kernel must hold: set names, families and networks, and the
        rules. Element reasons and warnings are left out, so renumbering ip_filter entries
        without changing networks gives the same version."""
        # json.dumps(kernel_view, sort_keys=True, separators=(",", ":")), written out by hand
        # for the networks (plain ASCII, nothing to escape): 8000 entries in 0.1 ms, not 2 ms
        rules = json.dumps([{f: getattr(r, f) for f in _RULE_FIELDS} for r in self.rules],
                           sort_keys=True, separators=(",", ":"))
        sets = ",".join(
            f"[{json.dumps(s.name)},{s.family},{json.dumps(s.hosts_only)},{_json_strings(s.networks)}]"
            for s in self.sets)
        blob = f'{{"rules":{rules},"sets":[{sets}]}}'.encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data (tuples stay tuples, as `dataclasses.asdict` gives them),
        built without asdict's deep copies: a 1000-peer policy is walked once."""
        data = {k: v for k, v in vars(self).items() if k not in _CACHED}
        data["sets"] = tuple(
            {**{k: v for k, v in vars(s).items() if k not in _CACHED},
             "elements": tuple(dict(vars(e)) for e in s.elements)} for s in self.sets
        )
        data["rules"] = tuple(dict(vars(r)) for r in self.rules)
        data["components"] = tuple(dict(vars(c)) for c in self.components)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodePolicy:
        return cls(
            node=data["node"],
            service=data["service"],
            service_type=data["service_type"],
            environment=data["environment"],
            sets=tuple(
                AddressSet(
                    name=s["name"],
                    family=s["family"],
                    hosts_only=s["hosts_only"],
                    purpose=s["purpose"],
                    elements=tuple(
                        SetElement(e["network"], tuple(e["reasons"])) for e in s["elements"]
                    ),
                )
                for s in data["sets"]
            ),
            rules=tuple(
                Rule(
                    **{
                        **r,
                        "ct_states": tuple(r["ct_states"]),
                        "dports": tuple(r["dports"]),
                        "icmp_types": tuple(r["icmp_types"]),
                    }
                )
                for r in data["rules"]
            ),
            components=tuple(
                ComponentPort(**{**c, "source_sets": tuple(c["source_sets"])})
                for c in data.get("components", ())
            ),
            warnings=tuple(data.get("warnings", ())),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NodePolicy:
        return cls.from_dict(json.loads(text))


_RULE_FIELDS = tuple(f.name for f in fields(Rule))
def _json_strings(items: tuple[str, ...]) -> str:
    """`json.dumps(list(items))` in the compact form, quick when no item needs escaping (plain
    printable ASCII without quotes or backslashes, checked over the joined text in C)."""
    joined = '","'.join(items)
    if joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined:
        return f'["{joined}"]' if items else "[]"
    return json.dumps(list(items), separators=(",", ":"))


def check_policy(policy: NodePolicy) -> None:
    """Raise ValueError when a policy breaks the invariants backends rely on."""
    names: set[str] = set()
    families: dict[str, int] = {}
    for s in policy.sets:
        if not SET_NAME.match(s.name):
            raise ValueError(f"set name {s.name!r} is not a short identifier")
        if s.name in names:
            raise ValueError(f"set {s.name!r} defined twice")
        names.add(s.name)
        families[s.name] = s.family
    for i, r in enumerate(policy.rules):
        for ref in (r.src_set, r.dst_set):
            if ref is None:
                continue
            if ref not in names:
                raise ValueError(f"rule {i} ({r.reason}) names unknown set {ref!r}")
            if r.family != families[ref]:
                raise ValueError(f"rule {i} ({r.reason}): family {r.family} but set {ref!r} "
                                 f"is IPv{families[ref]}")
        if r.dports and r.protocol not in ("tcp", "udp"):
            raise ValueError(f"rule {i} ({r.reason}): ports need tcp or udp")
        if r.icmp_types:
            if r.protocol != "icmp" or r.family is None:
                raise ValueError(f"rule {i} ({r.reason}): icmp types need icmp and a family")
            unknown = set(r.icmp_types) - set(ICMP_TYPES[r.family])
            if unknown:
                raise ValueError(f"rule {i} ({r.reason}): unknown icmp types {sorted(unknown)}")
        if r.uid is not None and r.direction != "out":
            raise ValueError(f"rule {i} ({r.reason}): uid matches only on egress")
    directions: tuple[Direction, ...] = ("in", "out")
    for direction in directions:
        rules = policy.rules_for(direction)
        if not rules or rules[-1] != Rule(direction, rules[-1].action, rules[-1].reason):
            raise ValueError(f"the last {direction} rule must match every packet")
