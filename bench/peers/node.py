"""The benchmarked node: a pg node of `specgen.big_spec` and the facts every tool's config is
written from (management networks, cluster peers, ports, the ip_filter networks).

The facts come from nodewall's own compiled policy, so each peer tool is given exactly the
addresses and ports nodewall opens. It never writes anything but the spec files it is asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nodewall.compiler.node import compile_node
from nodewall.policy.model import NodePolicy
from nodewall.spec.load import load_spec
from specgen import big_spec, ip_filter_entries

NODE = "big-0"
NODE_V4, NODE_V6 = "10.128.0.1", "fd00:be::1"
#: the allowed client: its network is the last ip_filter entry, so linear rulesets match it last
CLIENT_NET, CLIENT_V4 = "203.0.113.0/24", "203.0.113.7"
#: the one entry the "changed entry" figure puts in place of another
NEW_ENTRY = "198.18.0.1/32"
#: the entry it replaces (a /32 of specgen's, touching no other entry), for sizes above 1
REPLACED_INDEX = 8


@dataclass(frozen=True)
class NodeFacts:
    """What the node's ingress firewall must hold, in the terms every tool understands."""

    mgmt_v4: tuple[str, ...]
    mgmt_v6: tuple[str, ...]
    mgmt_ports: tuple[int, ...]
    peers_v4: tuple[str, ...]
    peers_v6: tuple[str, ...]
    peer_ports: tuple[int, ...]
    client_ports: tuple[int, ...]
    clients_v4: tuple[str, ...]

    @property
    def pg_port(self) -> int:
        return self.client_ports[0]


def ip_filter(entries: int, changed: bool = False) -> list[object]:
    """`entries` ip_filter entries whose last is the latency client's network; `changed`: one
    entry replaced by NEW_ENTRY (added in front when there is only the client's)."""
    items: list[object] = ip_filter_entries(max(entries - 1, 0))
    items.append(CLIENT_NET)
    if changed:
        if entries > REPLACED_INDEX + 1:
            items[REPLACED_INDEX] = NEW_ENTRY
        else:
            items.insert(0, NEW_ENTRY)
    return items


def write_spec(path: Path, entries: int, peers: int, changed: bool = False) -> Path:
    spec = big_spec(0, peers + 1)
    spec["services"][0]["user_config"]["ip_filter"] = ip_filter(entries, changed)
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def compiled(spec: Path) -> NodePolicy:
    return compile_node(load_spec(spec), NODE)


def facts(policy: NodePolicy) -> NodeFacts:
    """The facts of a compiled policy: every rule's sets and ports, by the sets they use."""
    def ports(src_set: str, protocol: str) -> tuple[int, ...]:
        found = [r.dports for r in policy.rules
                 if r.direction == "in" and r.src_set == src_set and r.protocol == protocol]
        if not found:
            raise ValueError(f"no ingress {protocol} rule from @{src_set} in the policy")
        return found[0]

    def networks(name: str) -> tuple[str, ...]:
        return policy.set(name).networks

    return NodeFacts(
        mgmt_v4=networks("mgmt_v4"), mgmt_v6=networks("mgmt_v6"),
        mgmt_ports=ports("mgmt_v4", "tcp"),
        peers_v4=networks("peers_v4"), peers_v6=networks("peers_v6"),
        peer_ports=ports("peers_v4", "tcp"), client_ports=ports("clients_v4", "tcp"),
        clients_v4=networks("clients_v4"))


def changed_entry(old: NodeFacts, new: NodeFacts) -> tuple[list[str], list[str]]:
    """(removed, added) client networks between two facts."""
    before, after = set(old.clients_v4), set(new.clients_v4)
    return sorted(before - after), sorted(after - before)
