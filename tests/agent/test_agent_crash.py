"""The agent SIGKILLed at random points of an apply: the kernel always holds the old or the new
policy whole (read back against the digests the backend recorded), the cache file is never torn
(it loads and checks), and the restarted agent converges to the server's policy.

Each run changes the policy through the API (a large ip_filter swap, or a rule change: a read
replica's integration created or deleted), then kills the agent after a random delay drawn over the
time the agent takes from the API answer to a verified kernel, so kills land before, during
and after the apply; the runs count where they landed and require some inside the apply.
"""

from __future__ import annotations

import ipaddress
import random
import re
import time

import pytest
from conftest import Cluster
from lab import Agent, ok, wait_until
from netns import entered

from nodewall.agent.cache import PolicyCache
from nodewall.backends.iptables import backend as iptables
from nodewall.backends.iptables import ipset, xtables
from nodewall.policy.model import NodePolicy

RUNS = {"nftables": 20, "iptables": 16}  # 36 in all (half aimed inside the apply)


def big_filter(rng: random.Random, size: int) -> list[str]:
    nets = {str(ipaddress.ip_network((rng.randrange(0x0B000000, 0x7F000000) & ~0xFF, 24)))
            for _ in range(size)}
    return ["203.0.113.0/24", *sorted(nets)]


def policy_of(cluster: Cluster, role: str) -> NodePolicy:
    body = ok(cluster.api.get(f"/v1/node/{cluster.node(role)}/policy"))
    return NodePolicy.from_dict(body["policy"])


def cached_version(agent: Agent, node: str) -> str | None:
    answer = PolicyCache(agent.state_dir, node).load()  # raises CacheUnusable when torn
    return None if answer is None else answer.version


def whole(agent: Agent, policies: dict[str, NodePolicy]) -> tuple[str, bool]:
    """(the version the kernel's marker shows, whether the kernel is mixed), after checking the
    kernel holds the old or the new policy whole (`policies`: version -> policy).

    nftables: one transaction per apply, so exactly one of the two, without drift. iptables
    (see its design note): each family's chains and each set switch atomically but one after
    another (IPv6, then IPv4; sets one by one in one `ipset restore`; the version marker after
    the sets), so a kill between two steps leaves each object old or new, whole: every chain
    equals what its family's marker recorded, and every set a rule uses holds the old or the
    new contents of that set. Sets no rule uses (new contents not yet swapped in) may remain."""
    status = agent.kernel()
    assert status.present, f"{agent.node}: the kernel holds no policy after the kill"
    if agent.backend == "nftables":
        assert status.version in policies and not status.drift, (
            f"{agent.node}: kernel holds {status.version} with drift {status.drift}, expected "
            f"one of {sorted(policies)} whole")
        return status.version, False
    broken = [d for d in status.drift if "chains differ" in d or "jump" in d or "marker" in d]
    assert not broken, f"{agent.node}: a chain or jump is half-written: {status.drift}"
    markers = set(re.findall(r"[0-9a-f]{16}", " ".join(status.drift))) or {status.version}
    assert markers <= set(policies), f"{agent.node}: marker versions {markers}"
    with entered(agent.ns):
        state = iptables._read(xtables.detect_variant())
    for name in state.referenced():
        base = name.removeprefix(ipset.PREFIX).removesuffix(ipset.SLOT_B)
        allowed = {ipset.policy_digest(s) for p in policies.values() for s in p.sets
                   if s.name == base}
        assert state.sets[name].digest in allowed, (
            f"{agent.node}: set {name} in use holds neither the old nor the new contents")
    mixed = len(markers) > 1 or any("contents differ" in d for d in status.drift)
    return (sorted(markers)[0] if len(markers) == 1 else ""), mixed


@pytest.mark.parametrize("backend", sorted(RUNS))
def test_agent_killed_mid_apply_never_leaves_half_a_policy(cluster: Cluster,
                                                          backend: str) -> None:
    rng = random.Random(f"crash-{backend}")
    node = cluster.node("n1")
    agent = cluster.agent("n1", backend)
    agent.start()
    current = cluster.converged(agent, "n1")
    policies = {current: policy_of(cluster, "n1")}
    mixed = 0  # iptables: kills that left some objects old and others new
    integrated = False
    window = 0.3  # seconds from the API answer to a verified kernel, re-measured as we go
    apply_seconds = 0.05  # the last apply's duration, as the agent logged it
    landed = {"before": 0, "inside": 0, "after": 0}
    for run in range(RUNS[backend]):
        seen = len(agent.events())
        if run % 3 == 2:  # a rule change: a read replica's integration rule comes or goes
            replica = f"/v1/project/{cluster.project}/service/rep"
            if not integrated:
                ok(cluster.api.post(f"/v1/project/{cluster.project}/service", json={
                    "service_name": "rep", "service_type": "pg", "cloud_name": "aws-eu-west-1"}))
                ok(cluster.api.post(f"/v1/project/{cluster.project}/integration", json={
                    "integration_type": "read_replica", "source_service": cluster.service,
                    "dest_service": "rep"}))
            else:
                ok(cluster.api.delete(replica))
            integrated = not integrated
        else:
            cluster.set_ip_filter(big_filter(rng, 1500))
        answered = time.monotonic()
        if run % 2:  # anywhere from the API answer on
            time.sleep(rng.uniform(0, window))
        else:  # aimed at the apply: once the policy is in, within the apply's duration
            agent.wait_event("policy_received", after=seen, every=0.001)
            time.sleep(rng.uniform(0, apply_seconds * 1.2))
        agent.kill()
        new = cluster.version("n1")
        policies[new] = policy_of(cluster, "n1")
        events = agent.events()[seen:]
        names = [e["event"] for e in events]
        if "applied" in names:
            landed["after"] += 1
        elif "policy_received" in names:
            landed["inside"] += 1
        else:
            landed["before"] += 1
        held, is_mixed = whole(agent, {v: policies[v] for v in (current, new)})
        mixed += is_mixed
        cached = cached_version(agent, node)
        assert cached in {current, new}, f"run {run}: cache holds {cached}"
        if held == current:
            assert cached == current, f"run {run}: cache ahead of the kernel"

        agent.start()
        cluster.converged(agent, "n1", timeout=20)
        wait_until(lambda v=new: cached_version(agent, node) == v, 10, "cache updated")
        applied = next(e for e in agent.events() if e["event"] == "applied"
                       and e["version"] == new)
        apply_seconds = max(0.002, float(applied["seconds"]))
        if held == current:  # the restarted agent applied it: boot plus fetch plus apply
            window = max(0.05, min(1.0, (time.monotonic() - answered) / 2))
        current = new
    print(f"{backend}: kills landed {landed}; kernel left mixed (old and new objects) {mixed}")
    assert landed["inside"] >= 3, f"too few kills landed inside an apply: {landed}"
    assert landed["before"] + landed["after"] >= 3, landed
