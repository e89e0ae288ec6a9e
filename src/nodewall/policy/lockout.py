"""Lock-out safety: would a policy shut every management network out of the node?

The platform reaches a node only from its management networks, on 22/tcp (SSH) and 30287/tcp
(the management agent). A policy that admits neither from any of them cuts the platform off
the node it is meant to manage, and no later policy can then be pushed by hand. What counts,
precisely (read by the reference evaluator, so a compiler bug or a hand-made policy is judged
by what the policy does, not by how it was made):

- A management network is *admitted* when, for its first and its last address, and for each
  management port, the policy accepts a new TCP connection from that address to the node
  (direction in, not loopback, state new) and accepts the node's replies to it (direction out,
  state established). The destination is the node's first address of the network's family, or
  the unspecified address when the node has none (no ingress rule matches on destination).
- The policy *shuts management out* when no management network is admitted (including when
  there is none). `nodewall apply` then refuses it unless `--force`.

A network admitted only in part (some probes refused) does not count as admitted; the reasons
name each refused probe and the rule that refused it. This module imports only the policy and
the evaluator; it must never learn about specs or backends (callers pass the networks).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from nodewall.policy.evaluator import Packet, evaluate
from nodewall.policy.model import NodePolicy

#: (port, what it is for) of the management path, as SPEC section 3 rule 4 names them.
MANAGEMENT_PORTS: tuple[tuple[int, str], ...] = ((22, "SSH"), (30287, "management"))
_DONE = {"accept": "accepted", "reject": "rejected", "drop": "dropped"}


@dataclass(frozen=True)
class NetworkCheck:
    network: str
    refused: tuple[str, ...]  # empty: admitted

    @property
    def admitted(self) -> bool:
        return not self.refused


def check_management(policy: NodePolicy, networks: Sequence[str],
                     node_addresses: Sequence[str] = ()) -> list[NetworkCheck]:
    """Each management network with the probes the policy refuses (see the module note)."""
    return [_check(policy, network, node_addresses) for network in networks]


def lockout_reason(policy: NodePolicy, networks: Sequence[str],
                   node_addresses: Sequence[str] = ()) -> str | None:
    """None when at least one management network is admitted; else why none is."""
    if not networks:
        return "the policy has no management network: nothing could reach 22/tcp or 30287/tcp"
    checks = check_management(policy, networks, node_addresses)
    if any(c.admitted for c in checks):
        return None
    lines = [f"the policy of {policy.node} shuts every management network out "
             f"(22/tcp and 30287/tcp):"]
    for c in checks:
        lines.append(f"  {c.network}: " + "; ".join(c.refused))
    return "\n".join(lines)


def _check(policy: NodePolicy, network: str, node_addresses: Sequence[str]) -> NetworkCheck:
    net = ipaddress.ip_network(network, strict=False)
    family = net.version
    own = [a for a in node_addresses if ipaddress.ip_address(a).version == family]
    node = own[0] if own else ("0.0.0.0" if family == 4 else "::")
    refused: list[str] = []
    for source in dict.fromkeys((str(net[0]), str(net[-1]))):
        for port, what in MANAGEMENT_PORTS:
            syn = evaluate(policy, Packet(source, node, "tcp", dport=port, direction="in"))
            if syn.action != "accept":
                refused.append(f"{what} {port}/tcp from {source} {_DONE[syn.action]} by rule "
                               f"{syn.rule_index} ({syn.rule.reason})")
                continue
            reply = evaluate(policy, Packet(node, source, "tcp", direction="out",
                                            ct_state="established"))
            if reply.action != "accept":
                refused.append(f"replies to {source} on {port}/tcp {_DONE[reply.action]} by rule "
                               f"{reply.rule_index} ({reply.rule.reason})")
    return NetworkCheck(network, tuple(refused))
