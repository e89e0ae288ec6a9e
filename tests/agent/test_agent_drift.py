"""Drift: the table flushed, a rule inserted, a set element deleted behind the agent's back
(with `nft`, `iptables` and `ipset`, as an operator or another tool would): repaired, on
nftables within a second of the change (the kernel's change notifications wake the agent), on
iptables within one verify interval, each repair counted in the agent's metrics (scraped)."""

from __future__ import annotations

import time

import pytest
from conftest import BACKENDS, Cluster
from lab import reach, wait_until
from netns import sh

VERIFY_INTERVAL = 1.0
#: nftables: the change notification; iptables: the next verify tick (plus the re-apply).
REPAIRED_WITHIN = {"nftables": 1.0, "iptables": VERIFY_INTERVAL + 0.5}


def tampers(backend: str, port: int, ns: str) -> dict[str, list[list[str]]]:
    if backend == "nftables":
        return {
            "table flushed": [["nft", "flush", "table", "inet", "nodewall"]],
            "rule inserted": [["nft", "insert", "rule", "inet", "nodewall", "input", "tcp",
                               "dport", str(port), "accept"]],
            "set element deleted": [["nft", "delete", "element", "inet", "nodewall",
                                     "clients_v4", "{", "203.0.113.0/24", "}"]],
            "table deleted": [["nft", "delete", "table", "inet", "nodewall"]],
        }
    clients = next(n for n in sh("ipset", "list", "-n", ns=ns).split()
                   if n.startswith("nodewall-clients_v4"))
    return {
        "chains flushed": [["iptables", "-F", "NODEWALL-INPUT"],
                           ["ip6tables", "-F", "NODEWALL-INPUT"]],
        "rule inserted": [["iptables", "-I", "NODEWALL-INPUT", "1", "-p", "tcp", "--dport",
                           str(port), "-j", "ACCEPT"]],
        "set element deleted": [["ipset", "del", clients, "203.0.113.0/24"]],
        "jump deleted": [["iptables", "-D", "INPUT", "-j", "NODEWALL-INPUT"]],
    }


def repairs(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return metrics[("nodewall_agent_drift_repairs_total", ())]


@pytest.mark.parametrize("backend", BACKENDS)
def test_drift_is_repaired_and_counted(cluster: Cluster, backend: str) -> None:
    agent = cluster.agent("n1", backend, "--verify-interval", str(VERIFY_INTERVAL)).start()
    version = cluster.converged(agent, "n1")
    time.sleep(1.2)  # past the check that follows an apply
    assert repairs(agent.metrics()) == 0
    seen = len(agent.events())
    for count, (what, commands) in enumerate(
            tampers(backend, cluster.port, agent.ns).items(), start=1):
        for command in commands:
            sh(*command, ns=agent.ns)
        changed = time.monotonic()
        if backend == "iptables":  # repaired on the timer: the change is seen first
            held = agent.kernel()
            assert held.drift or held.version != version, f"{what}: no drift?"
        # nftables repairs within milliseconds, often before this test could read the kernel:
        # the drift_repaired event below (the agent found drift and re-applied) is the proof

        def repaired() -> bool:
            status = agent.kernel()
            return status.version == version and not status.drift

        wait_until(repaired, REPAIRED_WITHIN[backend], f"{what} repaired", every=0.01)
        took = time.monotonic() - changed
        assert reach(cluster.lab, "stranger", "n1", cluster.port) == "refused", what
        assert reach(cluster.lab, "client", "n1", cluster.port) == "open", what
        event = agent.wait_event("drift_repaired", after=seen)
        seen = agent.events().index(event) + 1
        if backend == "nftables":
            assert event["trigger"] == "kernel", f"{what}: repaired by the timer, not at once"
        wait_until(lambda c=count: repairs(agent.metrics()) == c, 2,
                   f"{what}: drift repairs counted")
        print(f"{backend}: {what} repaired in {took:.3f} s")
