"""Refused packets are counted per port of the node (`nodewall.backends.rejects`), both
backends: what the agent exports as `nodewall_agent_rejected_packets_total`. The counting rules
do not change a verdict: the refused client still gets its reset at once."""

from __future__ import annotations

from conftest import Node
from kspecs import PG_PORT, policy, public
from netns import HOSTS, entered, probe


def test_rejected_packets_are_counted_per_own_port(node: Node) -> None:
    node.apply(policy(public()))
    with entered(node.ns):
        before = node.backend.rejected_packets()  # type: ignore[attr-defined]
    assert before.get(("tcp", str(PG_PORT)), 0) == 0
    internet, office = HOSTS["internet"][0], HOSTS["office"][0]
    ns = node.topo.ns
    for _ in range(3):
        assert probe(ns("internet"), internet, HOSTS["node"][0], "tcp", PG_PORT) == "refused"
    for _ in range(2):
        assert probe(ns("internet"), internet, HOSTS["node"][0], "tcp", 9999) == "refused"
    assert probe(ns("office"), office, HOSTS["node"][0], "tcp", PG_PORT) == "open"
    assert probe(ns("internet"), HOSTS["internet"][1], HOSTS["node"][1], "udp", 500) == "refused"
    with entered(node.ns):
        after = node.backend.rejected_packets()  # type: ignore[attr-defined]
    assert after[("tcp", str(PG_PORT))] == 3, after
    assert after[("udp", "500")] >= 1, after  # IPv6 counted by the same rule (iptables: summed)
    assert after[("any", "other")] >= 2, after
    assert set(after) <= {("any", "other")} | {
        (c.protocol, str(c.port)) for c in policy(public()).components}, after
