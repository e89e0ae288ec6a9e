"""Waiting for the fleet: what each node's kernel holds (read in its namespace by a fresh
backend, as `nodewall status` would), what the control plane wants it to hold, and the time
until every kernel holds what is wanted."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from nodewall.backends.registry import get_backend
from nodewall.lab.api import LabApi
from nodewall.lab.netns import LabError, entered
from nodewall.policy.model import NodePolicy


def kernel_version(ns: str, backend: str) -> str | None:
    """The policy version the kernel of `ns` holds exactly (None: none, or drifted)."""
    with entered(ns):
        status = get_backend(backend).status()
    return None if status.drift else status.version


def wanted(api: LabApi, project: str) -> dict[str, str]:
    """Every node's desired version, in one call (the fleet view)."""
    nodes = api.call("GET", f"/v1/project/{project}/nodes/status")["nodes"]
    return {n["node"]: n["desired_version"] for n in nodes}


def desired(api: LabApi, nodes: list[str]) -> dict[str, NodePolicy]:
    """Each node's policy as the control plane serves it now."""
    out = {}
    for node in nodes:
        answer = api.policy(node)
        policy = NodePolicy.from_dict(answer["policy"])
        if policy.version != answer["version"]:
            raise LabError(f"{node}: served version {answer['version']} is not its policy's")
        out[node] = policy
    return out


@dataclass
class Arrival:
    node: str
    version: str
    seconds: float  # from `since` until the kernel was first seen holding `version`


def wait_kernels(want: dict[str, str], ns_of: Callable[[str], str], backend: str, since: float,
                 timeout: float = 60, tick: Callable[[int, int], None] | None = None
                 ) -> list[Arrival]:
    """Poll every node's kernel until it holds its wanted version; the arrival of each.
    `tick(done, total)` is called as nodes arrive (for a progress display)."""
    arrived: dict[str, Arrival] = {}
    deadline = time.monotonic() + timeout

    def read(node: str) -> tuple[str, str | None]:
        return node, kernel_version(ns_of(node), backend)

    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(arrived) < len(want):
            waiting = [n for n in want if n not in arrived]
            for node, version in pool.map(read, waiting):
                if version == want[node]:
                    arrived[node] = Arrival(node, version, time.monotonic() - since)
            if tick is not None:
                tick(len(arrived), len(want))
            if len(arrived) < len(want):
                if time.monotonic() > deadline:
                    late = ", ".join(sorted(set(want) - set(arrived)))
                    raise LabError(f"not every node converged within {timeout} s: {late}")
                time.sleep(0.01)
    return sorted(arrived.values(), key=lambda a: a.node)
