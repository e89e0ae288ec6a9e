"""The agent's metrics, scraped from its endpoint while it works: the applied version, apply
durations by kind, change-to-kernel latency (from the server's `changed_at`), last contact, and
rejected packets per destination port and protocol from the backend's counters (the node's own
ports by name, every other port as `other`). Both backends."""

from __future__ import annotations

import time

import pytest
from conftest import BACKENDS, Cluster
from lab import reach, wait_until


@pytest.mark.parametrize("backend", BACKENDS)
def test_metrics_follow_what_the_agent_does(cluster: Cluster, backend: str) -> None:
    agent = cluster.agent("n1", backend, "--verify-interval", "0.5").start()
    version = cluster.converged(agent, "n1")
    cluster.set_ip_filter(["203.0.113.0/24", "192.0.2.128/25"])  # an in-place change
    version = cluster.converged(agent, "n1")
    started = time.time()
    for _ in range(3):
        assert reach(cluster.lab, "stranger", "n1", cluster.port) == "refused"
    for port in (5999, 6001, 7777, 8081, 9999):  # ports the node does not serve
        assert reach(cluster.lab, "stranger", "n1", port) == "refused"

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        m = agent.metrics()
        rejected = {labels: v for (name, labels), v in m.items()
                    if name == "nodewall_agent_rejected_packets_total"}
        mine = rejected.get((("port", str(cluster.port)), ("protocol", "tcp")), 0)
        other = rejected.get((("port", "other"), ("protocol", "any")), 0)
        return m if mine >= 3 and other >= 5 else None

    m = wait_until(scraped, 5, "rejected packets counted per port", every=0.2)
    info = {dict(labels)["version"]: dict(labels) for (name, labels), v in m.items()
            if name == "nodewall_agent_policy_info" and v == 1}
    assert info[version]["backend"] == backend and info[version]["source"] == "server"
    assert m[("nodewall_agent_apply_seconds_count", (("kind", "full"),))] >= 1
    assert m[("nodewall_agent_apply_seconds_count", (("kind", "in-place"),))] >= 1
    assert m[("nodewall_agent_change_to_kernel_seconds_count", ())] >= 1
    latency = m[("nodewall_agent_change_to_kernel_seconds_sum", ())] / \
        m[("nodewall_agent_change_to_kernel_seconds_count", ())]
    assert 0 <= latency < 5, f"change to kernel {latency} s on average"
    assert m[("nodewall_agent_apply_failures_total", ())] == 0
    assert started - 120 < m[("nodewall_agent_last_contact_timestamp_seconds", ())] <= \
        time.time() + 1
    assert m[("process_resident_memory_bytes", ())] < 60e6
    ports = {dict(labels).get("port") for (name, labels) in m
             if name == "nodewall_agent_rejected_packets_total"}
    assert "5999" not in ports and "7777" not in ports, "other ports stay in one bucket"
