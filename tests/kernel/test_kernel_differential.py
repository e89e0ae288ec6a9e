"""Differential test: for generated specs and packets, the kernel's outcome of each packet
equals the reference evaluator's verdict (accept: open, reject: refused, drop: timeout).

The number of (spec, packet) pairs checked is printed at the end of the run."""

from __future__ import annotations

from typing import Any

from conftest import PAIRS, Node
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from netns import HOSTS, probe

from nodewall.errors import SpecError
from nodewall.evaluator import Packet, evaluate

V4_NETS = ["0.0.0.0/0", "10.62.0.0/16", "10.62.3.0/24", "10.63.0.5/32", "172.16.5.0/24",
           "10.64.0.0/30", "10.20.0.0/24", "192.168.77.0/25"]
V6_NETS = ["::/0", "2001:db8:62::/48", "2001:db8:62:3::/64", "2001:db8:63::5/128",
           "2001:db8:64::/120"]
MGMT = ["10.61.0.0/28", "10.61.1.0/24", "2001:db8:61::/64"]
SOURCES = ["10.61.0.3", "10.61.1.200", "10.62.3.9", "10.62.200.1", "172.16.5.5", "10.63.0.5",
           "10.63.0.6", "10.64.0.2", "10.64.0.3", "192.168.77.7", "192.168.77.200", "10.66.0.1",
           "10.20.0.50", "2001:db8:61::3", "2001:db8:62:3::9", "2001:db8:62:ff::1",
           "2001:db8:63::5", "2001:db8:64::2", "2001:db8:66::1"]
OTHER_NODES = [("svc-2", ["10.64.0.2"]), ("svc-3", ["10.64.0.3", "2001:db8:64::2"])]
TYPES = ["pg", "mysql", "kafka", "valkey", "clickhouse", "opensearch", "grafana"]
EXAMPLES, PACKETS = 150, 16


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    stype = draw(st.sampled_from(TYPES))
    cloud = draw(st.sampled_from(["aws-eu-west-1", "azure-westeurope"]))
    user_config: dict[str, Any] = {}
    ip_filter = draw(st.none() | st.lists(st.sampled_from(V4_NETS + V6_NETS), max_size=5,
                                          unique=True))
    if ip_filter is not None:
        user_config["ip_filter"] = ip_filter
    if stype in ("pg", "kafka", "valkey", "clickhouse"):
        user_config["enable_ipv6"] = draw(st.booleans())
    service: dict[str, Any] = {
        "name": "svc", "type": stype, "cloud": cloud, "user_config": user_config,
        "nodes": [{"name": "svc-1", "addresses": list(HOSTS["node"])},
                  *({"name": n, "addresses": a} for n, a in OTHER_NODES if draw(st.booleans()))],
    }
    spec: dict[str, Any] = {
        "platform": {"management_networks": draw(st.lists(st.sampled_from(MGMT), min_size=1,
                                                          max_size=3, unique=True))},
        "project": {"name": "diff", "base_port": 14000},
        "services": [service],
    }
    if draw(st.booleans()):
        spec["vpcs"] = [{"id": "vpc-a", "cloud": cloud, "network_cidr": "10.20.0.0/24",
                         "peer_cidrs": draw(st.lists(st.sampled_from(["10.62.0.0/16",
                                                                     "172.16.5.0/24"]),
                                                     unique=True))}]
        service["vpc"] = "vpc-a"
        if draw(st.booleans()):
            user_config["public_access"] = {stype: True}
    return spec


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=specs(), data=st.data())
def test_kernel_agrees_with_evaluator(node: Node, spec: dict[str, Any], data: st.DataObject
                                     ) -> None:
    from kspecs import policy

    try:
        pol = policy(spec, "svc-1")
    except SpecError:
        reject()
    ports = sorted({c.port for c in pol.components} | {22, 30287, 500, 4500, 5432})
    node.listeners.ensure(tcp=set(ports), udp=set(ports))
    node.apply(pol)
    packets = data.draw(st.lists(st.tuples(st.sampled_from(SOURCES), st.sampled_from(["tcp",
                                           "udp"]), st.sampled_from(ports)),
                                 min_size=PACKETS, max_size=PACKETS), label="packets")
    wrong = []
    for src, proto, port in packets:
        dst = HOSTS["node"][1 if ":" in src else 0]
        verdict = evaluate(pol, Packet(src, dst, proto, port))  # type: ignore[arg-type]
        want = {"accept": "open", "reject": "refused", "drop": "timeout"}[verdict.action]
        _address(node, src)
        got = probe(node.topo.ns("internet"), src, dst, proto, port)
        if got != want:
            wrong.append(f"{src} -> {proto}/{port}: evaluator {verdict.action} "
                         f"({verdict.reason}), kernel {got}")
    PAIRS["checked"] += len(packets)
    PAIRS["mismatches"] += len(wrong)
    assert not wrong, "kernel and evaluator disagree:\n" + "\n".join(wrong)


_state: dict[str, Any] = {}


def _address(node: Node, address: str) -> None:
    added: set[str] = _state.setdefault(f"addresses-{node.topo.prefix}", set())
    if address not in added:
        node.topo.add_address("internet", address)
        added.add(address)
