"""Refused packets counted per port of the node: the rules a backend writes, and their keys.

The agent exports how many packets the firewall refused, per destination port and protocol
(`nodewall_agent_rejected_packets_total`). So that the kernel keeps those counts, each backend
writes the policy's ingress rules with one reject rule per port the node serves (its components'
ports, management and IPsec included) just before the final catch-all reject: a packet that no
accept rule admitted meets its port's rule and is rejected exactly as the catch-all would have
(TCP reset, UDP port-unreachable), so verdicts do not change; every other refused packet is
counted by the catch-all as `("any", "other")`. The cardinality is bounded by the node's own
ports. Backend-neutral: rules in, rules out; reasons from `nodewall.policy.reasons`.
"""

from __future__ import annotations

import re

from nodewall.policy import reasons
from nodewall.policy.model import Direction, NodePolicy, Rule

OTHER = ("any", "other")
_PORT_REASON = re.compile(re.escape(reasons.REJECTED) + r" at (\d+)/(tcp|udp)$")


def kernel_rules(policy: NodePolicy, direction: Direction) -> list[Rule]:
    """The policy's rules of `direction` as the kernel holds them: ingress with a counted
    reject per own port before the catch-all reject."""
    rules = list(policy.rules_for(direction))
    if direction != "in" or not rules or rules[-1].reason != reasons.REJECTED:
        return rules
    ports = sorted({(c.protocol, c.port) for c in policy.components})
    counted = [Rule(direction="in", action="reject", protocol=proto, dports=(port,),
                    reason=reasons.rejected_at(proto, port)) for proto, port in ports]
    return [*rules[:-1], *counted, rules[-1]]


def count_key(reason: str) -> tuple[str, str] | None:
    """The (protocol, port) a reject rule's reason (as the kernel keeps it) counts for,
    `OTHER` for the catch-all, None for any other rule."""
    if reason == reasons.REJECTED:
        return OTHER
    match = _PORT_REASON.match(reason)
    return (match.group(2), match.group(1)) if match else None
