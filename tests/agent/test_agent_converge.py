"""Convergence through the real control plane: a change made with the API is enforced by the
kernel of every node within a second (probed with real connections), a node added is admitted
by its peers within a second, a node removed is refused and its established flows cut within
a second. Both backends, a real server, a real agent process per node in its namespace."""

from __future__ import annotations

import time

import pytest
from conftest import BACKENDS, Cluster
from lab import alive, connection, reach, wait_until

#: The promise: API answer to every node's kernel enforcing the change.
WITHIN = 1.0


def enforced_within(check: object, what: str) -> float:
    """Seconds until `check()` holds, measured from now; fails past WITHIN."""
    started = time.monotonic()
    wait_until(check, WITHIN, what, every=0.002)  # type: ignore[arg-type]
    return time.monotonic() - started


@pytest.mark.parametrize("backend", BACKENDS)
def test_ip_filter_change_reaches_every_node_within_a_second(cluster: Cluster,
                                                             backend: str) -> None:
    agents = {role: cluster.agent(role, backend).start() for role in ("n1", "n2")}
    for role, agent in agents.items():
        cluster.converged(agent, role)
    for role in agents:
        assert reach(cluster.lab, "client", role, cluster.port) == "open"
        assert reach(cluster.lab, "stranger", role, cluster.port) == "refused"

    cluster.set_ip_filter(["203.0.113.0/24", "192.0.2.0/24"])  # the stranger's network joins
    for role in agents:
        enforced_within(lambda r=role: reach(cluster.lab, "stranger", r, cluster.port,
                                             timeout=0.1) == "open",
                        f"stranger admitted by {role}")

    cluster.set_ip_filter(["192.0.2.0/24"])  # and the client's leaves
    for role in agents:
        enforced_within(lambda r=role: reach(cluster.lab, "client", r, cluster.port,
                                             timeout=0.1) == "refused",
                        f"client refused by {role}")
        assert reach(cluster.lab, "stranger", role, cluster.port) == "open"
    for role, agent in agents.items():
        version = cluster.converged(agent, role)
        applied = agent.wait_event("applied", match=lambda e, v=version: e["version"] == v)
        assert applied["kind"] == "in-place", f"{role}: a set-only change must not rebuild"
        assert agent.kernel().backend == backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_node_added_is_admitted_and_node_removed_is_cut_within_a_second(
        cluster: Cluster, backend: str) -> None:
    agents = {role: cluster.agent(role, backend).start() for role in ("n1", "n2")}
    for role, agent in agents.items():
        cluster.converged(agent, role)
    assert reach(cluster.lab, "n3", "n1", cluster.port) == "refused"

    cluster.add_node("n3")  # n3 is no client (not in ip_filter): only peer rules admit it
    for role in agents:
        enforced_within(lambda r=role: reach(cluster.lab, "n3", r, cluster.port,
                                             timeout=0.1) == "open",
                        f"new node n3 admitted by {role}")

    for role, agent in agents.items():
        cluster.converged(agent, role)
    with connection(cluster.lab, "n3", "n1", cluster.port) as flow, \
            connection(cluster.lab, "n2", "n1", cluster.port) as kept:
        cluster.remove_node("n3")
        removed = time.monotonic()
        enforced_within(lambda: reach(cluster.lab, "n3", "n1", cluster.port,
                                      timeout=0.1) == "refused", "removed node n3 refused")
        wait_until(lambda: not alive(flow, timeout=0.1), WITHIN - (time.monotonic() - removed),
                   "removed node's established connection cut")
        assert alive(kept), "a remaining peer's connection must survive"
