"""`nodewall lab change`: the live changes, made through the API one after another, each timed
from the moment its request is sent until every node's kernel holds the version the control
plane then wants (read in each node's namespace), and every node that was not to change still
holds what it held.

The node replacement also moves the lab: kafka-4's namespace, listeners and agent start before
it joins; kafka-3's go after it left.
"""

from __future__ import annotations

import time
from typing import Any

from nodewall.lab import processes, scenario
from nodewall.lab.api import LabApi
from nodewall.lab.converge import desired, kernel_version, wait_kernels, wanted
from nodewall.lab.netns import LabError, Segment, remove_namespace
from nodewall.lab.state import LabState
from nodewall.lab.up import add_host, add_node, ns_of, start_agent, start_servers

SERVICE = f"/v1/project/{scenario.PROJECT}/service"


def _ip_filter(state: LabState, api: LabApi) -> None:
    config = dict(scenario.SERVICES[0].body["user_config"])
    config["ip_filter"] = [*config["ip_filter"], "192.0.2.0/24"]
    api.call("PUT", f"{SERVICE}/pg", {"user_config": {"ip_filter": config["ip_filter"]}})


def _replace(state: LabState, api: LabApi) -> None:
    """As the platform does it: the new node is registered, then its VM's agent boots."""
    new, old = scenario.REPLACEMENT.name, "kafka-3"
    api.call("DELETE", f"{SERVICE}/kafka/node/{old}")
    add_node(api, "kafka", new)
    start_agent(state, new)
    state.nodes["kafka"] = [n for n in state.nodes["kafka"] if n != old] + [new]
    state.save()


def _prepare_replace(state: LabState, api: LabApi) -> None:
    """kafka-4's namespace and servers (its agent starts once the node is registered)."""
    add_host(state, Segment(state.prefix), scenario.REPLACEMENT)
    policy = desired(api, ["kafka-1"])["kafka-1"]
    start_servers(state, "kafka", scenario.REPLACEMENT.name, policy)


def _retire(state: LabState) -> None:
    old = "kafka-3"
    for name in (f"agent-{old}", f"listener-{old}"):
        processes.stop(state, name)
    ns = f"{state.prefix}-{old}"
    remove_namespace(ns)
    state.namespaces = [n for n in state.namespaces if n != ns]
    state.versions.pop(old, None)
    state.save()


def _public_access(state: LabState, api: LabApi) -> None:
    api.call("PUT", f"{SERVICE}/kafka", {"user_config": {"public_access": {
        "kafka_connect": True}}})


def _integration(state: LabState, api: LabApi) -> None:
    api.call("POST", f"/v1/project/{scenario.PROJECT}/integration", {
        "integration_type": "internal_connectivity", "source_service": "connect",
        "dest_service": "pg"})


MAKERS = {"ip_filter": _ip_filter, "replace": _replace, "public_access": _public_access,
          "integration": _integration}


def make(state: LabState, api: LabApi, change: scenario.Change) -> dict[str, Any]:
    """Make one change and time it; the record of it (also appended to the state). Only the
    nodes whose desired version changed are polled while waiting; every other node's kernel is
    then checked to hold what it held before."""
    if change.key == "replace":
        _prepare_replace(state, api)
    before = wanted(api, scenario.PROJECT)
    since = time.monotonic()
    MAKERS[change.key](state, api)
    answered = time.monotonic() - since
    want = wanted(api, scenario.PROJECT)
    changed = {n: v for n, v in want.items() if before.get(n) != v}
    if not changed:
        raise LabError(f"change {change.key} changed no node's policy")
    arrivals = wait_kernels(changed, ns_of(state), state.backend, since, timeout=60)
    if change.key == "replace":
        _retire(state)
    kept = {n: v for n, v in want.items() if n not in changed}
    for node, version in kept.items():
        held = kernel_version(ns_of(state)(node), state.backend)
        if held != version:
            raise LabError(f"change {change.key}: {node} was not to change, but its kernel "
                           f"holds {held} instead of {version}")
    for node, version in want.items():
        state.saw_version(node, version)
    record = {
        "key": change.key, "title": change.title, "api_seconds": round(answered, 4),
        "nodes": [{"node": a.node, "before": before.get(a.node), "after": a.version,
                   "seconds": round(a.seconds, 4)} for a in arrivals],
        "unchanged": sorted(kept),
        "converged_seconds": round(max(a.seconds for a in arrivals), 4),
    }
    state.changes.append(record)
    state.save()
    return record
