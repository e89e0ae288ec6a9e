"""Shared builders and assertions of the unit layer: small specs as dicts, compiled policies,
packets through the reference evaluator, and failure messages that say what and where."""

from __future__ import annotations

import copy
import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from nodewall.compiler.node import compile_node
from nodewall.policy.evaluator import Packet, Verdict, evaluate
from nodewall.policy.model import CtState, Direction, Interface, NodePolicy, Protocol
from nodewall.spec.load import parse_spec

REPO = Path(__file__).resolve().parents[2]
NODEWALL = REPO / ".venv" / "bin" / "nodewall"
EXAMPLES = REPO / "examples"

MGMT_V4 = "198.51.100.0/28"
MGMT_V6 = "2001:db8:ff::/64"
OFFICE_V4 = "203.0.113.0/24"
OFFICE_V6 = "2001:db8:1::/48"
INTERNET_V4 = "8.8.8.8"
INTERNET_V6 = "2001:4860:4860::8888"


def spec_doc(
    services: list[dict[str, Any]],
    *,
    vpcs: list[dict[str, Any]] | None = None,
    integrations: list[dict[str, Any]] | None = None,
    base_port: int | None = 14000,
    management: list[str] | None = None,
) -> dict[str, Any]:
    """A deployment spec document (what YAML would parse to)."""
    project: dict[str, Any] = {"name": "acme"}
    if base_port is not None:
        project["base_port"] = base_port
    doc: dict[str, Any] = {
        "platform": {"management_networks": management or [MGMT_V4, MGMT_V6]},
        "project": project,
        "services": services,
    }
    if vpcs:
        doc["vpcs"] = vpcs
    if integrations:
        doc["integrations"] = integrations
    return copy.deepcopy(doc)


def service_doc(
    name: str,
    type_: str,
    nodes: list[list[str]],
    *,
    cloud: str = "aws-eu-west-1",
    user_config: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A service with nodes `<name>-1`, `<name>-2`, ... holding the given addresses."""
    doc: dict[str, Any] = {
        "name": name,
        "type": type_,
        "cloud": cloud,
        "nodes": [{"name": f"{name}-{i + 1}", "addresses": addrs} for i, addrs in enumerate(nodes)],
        **extra,
    }
    if user_config is not None:
        doc["user_config"] = user_config
    return doc


def compiled(doc: dict[str, Any], node: str) -> NodePolicy:
    return compile_node(parse_spec(copy.deepcopy(doc)), node)


def port_of(policy: NodePolicy, component: str, route: str | None = None) -> int:
    """The port a component serves on the node (its own port unless `route` asks for 'web')."""
    for c in policy.components:
        if c.name == component and ((route is None and c.route != "web") or c.route == route):
            return c.port
    shown = [(c.name, c.port, c.route) for c in policy.components]
    raise AssertionError(f"{policy.node}: no component {component!r} (route {route}); has {shown}")


def has_component(policy: NodePolicy, component: str) -> bool:
    return any(c.name == component for c in policy.components)


def packet(
    src: str,
    proto: Protocol,
    dport: int | None = None,
    *,
    dst: str | None = None,
    direction: Direction = "in",
    icmp_type: str | None = None,
    uid: int | None = None,
    interface: Interface = "not-loopback",
    state: CtState = "new",
) -> Packet:
    family = ipaddress.ip_address(src).version
    if dst is None:
        dst = "192.0.2.250" if family == 4 else "2001:db8:ffff::250"
    return Packet(src=src, dst=dst, protocol=proto, dport=dport, direction=direction,
                  icmp_type=icmp_type, uid=uid, interface=interface, ct_state=state)


def outbound(dst: str, proto: Protocol, dport: int | None = None, *, uid: int | None = 1000,
             icmp_type: str | None = None, state: CtState = "new") -> Packet:
    src = "10.255.0.1" if ipaddress.ip_address(dst).version == 4 else "fd00:ffff::1"
    return Packet(src=src, dst=dst, protocol=proto, dport=dport, direction="out",
                  icmp_type=icmp_type, uid=uid, ct_state=state)


def expect(policy: NodePolicy, pkt: Packet, action: str, reason: str | None = None) -> Verdict:
    """Assert the evaluator's verdict (and that its reason contains `reason`)."""
    v = evaluate(policy, pkt)
    what = (f"{pkt.direction} {pkt.protocol} {pkt.src} -> {pkt.dst}"
            f"{f':{pkt.dport}' if pkt.dport else ''}"
            f"{f' {pkt.icmp_type}' if pkt.icmp_type else ''}"
            f"{f' uid {pkt.uid}' if pkt.uid is not None else ''} ({pkt.ct_state}, {pkt.interface})")
    found = f"{v.action} by rule {v.rule_index} {v.reason!r}"
    assert v.action == action, f"node {policy.node}: {what}: expected {action}, got {found}"
    if reason is not None:
        assert reason in v.reason, (f"node {policy.node}: {what}: expected {action} with a reason "
                                    f"containing {reason!r}, got {found}")
    return v


def final_reject(policy: NodePolicy, pkt: Packet) -> None:
    """Assert the packet falls through to the direction's last rule, a reject."""
    v = expect(policy, pkt, "reject")
    last = policy.rules_for(pkt.direction)[-1]
    assert v.rule == last, (f"node {policy.node}: {pkt}: expected the final reject "
                            f"{last.reason!r}, got rule {v.rule_index} {v.reason!r}")


def run_nodewall(*args: str, real: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess: the installed console script when `real`, else
    `python -m nodewall` of this interpreter (the same code)."""
    cmd = [str(NODEWALL)] if real else [sys.executable, "-m", "nodewall"]
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, env=env,
                          cwd=REPO, check=False)
