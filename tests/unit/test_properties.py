"""Property-based tests over generated valid specs (tests/strategies.py), through the
compiler and the reference evaluator."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
from nodewall import catalogue
from nodewall.compiler.components import enabled_components, service_ports
from nodewall.compiler.node import compile_node
from nodewall.policy.evaluator import Packet, Verdict, evaluate
from nodewall.policy.model import NodePolicy, check_policy
from nodewall.spec.load import parse_spec
from nodewall.spec.model import DeploymentSpec, ServiceSpec

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
AZURE = ipaddress.ip_address("168.63.129.16")


def nets(texts: Iterable[str]) -> list[Net]:
    return [ipaddress.ip_network(t, strict=False) for t in texts]


def inside(address: Addr, networks: Iterable[Net]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def edges(network: Net) -> list[Addr]:
    """The first and last address of a network, and the neighbours just outside it."""
    top = (1 << network.max_prefixlen) - 1
    make = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
    first, last = int(network.network_address), int(network.broadcast_address)
    return [make(v) for v in {first, last, max(first - 1, 0), min(last + 1, top)}]


class Case:
    """One generated spec, one of its nodes, its policy, and the addresses worth probing."""

    def __init__(self, doc: dict[str, Any], node: str, extra: list[Addr]) -> None:
        self.doc = doc
        self.spec: DeploymentSpec = parse_spec(doc)
        self.service: ServiceSpec = self.spec.node(node)[0]
        self.policy: NodePolicy = compile_node(self.spec, node)
        self.ip_filter = nets(e.network for e in self.service.user_config.ip_filter)
        self.mgmt = nets(self.spec.platform.management_networks)
        self.bounds: list[Net] = []
        if self.service.vpc is not None:
            vpc = self.spec.vpc(self.service.vpc)
            self.bounds = nets([vpc.network_cidr, *vpc.peer_cidrs])
        self.node_addresses = {ipaddress.ip_address(a) for s in self.spec.services
                               for n in s.nodes for a in n.addresses}
        self.peer_addresses = {ipaddress.ip_address(a) for n in self.service.nodes
                               if n.name != node for a in n.addresses}
        probes: set[Addr] = set(extra) | self.node_addresses | {AZURE}
        for n in (*self.ip_filter, *self.mgmt, *self.bounds):
            probes.update(edges(n))
        self.probes = sorted((p for p in probes if not p.is_loopback),
                             key=lambda a: (a.version, int(a)))
        stype = catalogue.service_type(self.service.type)
        self.ipv6_clients = bool(stype.ipv6 and self.service.user_config.enable_ipv6)
        self.ports = service_ports(self.spec, self.service)
        self.in_ports = {p for r in self.policy.rules_for("in") for p in r.dports}

    def verdict(self, src: Addr, proto: str, dport: int | None = None) -> Verdict:
        dst = "10.255.255.1" if src.version == 4 else "fd00:ffff::1"
        return evaluate(self.policy, Packet(str(src), dst, proto, dport))  # type: ignore[arg-type]

    def where(self, src: Addr, proto: str, port: int, v: Verdict) -> str:
        return (f"node {self.policy.node} ({self.service.type}, {self.service.environment}, "
                f"vpc {self.service.vpc}): {proto} {src} -> port {port}: {v.action} by rule "
                f"{v.rule_index} {v.reason!r}")

    def client_ports(self, public: bool | None = None) -> set[int]:
        """Ports of enabled client components (and their web UIs); `public` picks those with
        (True) or without (False) public access."""
        keys = {k for k, v in self.service.user_config.public_access.items() if v}
        out: set[int] = set()
        for c in enabled_components(self.spec, self.service):
            if c.route != "client" or (public is not None and (c.access in keys) != public):
                continue
            out.add(c.fixed_port if c.fixed_port is not None else self.ports[c.name])
            if c.web_ui:
                out.add(443)
        return out


@st.composite
def cases(draw: st.DrawFn) -> Case:
    doc = draw(strategies.deployment_specs())
    node = draw(strategies.node_names(doc))
    extra = draw(st.lists(st.ip_addresses(), max_size=4))
    return Case(doc, node, extra)


@PROPERTY
@given(case=cases())
def test_peer_and_integration_rules_admit_single_hosts_of_the_other_nodes_only(
    case: Case,
) -> None:
    for rule in case.policy.rules:
        for name in (rule.src_set, rule.dst_set):
            if name is None or not name.startswith(("peers_", "int")):
                continue
            aset = case.policy.set(name)
            assert aset.hosts_only, f"{case.policy.node}: set {name} of rule {rule.reason!r}"
            wide = [n for n in nets(aset.networks) if n.num_addresses != 1]
            assert not wide, (f"{case.policy.node}: rule {rule.reason!r} set {name} holds "
                              f"blocks wider than /32 or /128: {wide}")
    peers = {*case.policy.set("peers_v4").networks, *case.policy.set("peers_v6").networks}
    expected = {str(ipaddress.ip_network(a)) for a in case.peer_addresses}
    assert peers == expected, f"{case.policy.node}: peer sets {peers}, other nodes {expected}"
    for src in case.probes:
        for proto, port in [*(("tcp", p) for p in sorted(case.in_ports)), ("udp", 500),
                            ("udp", 4500)]:
            v = case.verdict(src, proto, port)
            if v.action == "accept" and ("cluster peer" in v.rule.reason
                                         or "IPsec" in v.rule.reason):
                assert src in case.peer_addresses, case.where(src, proto, port, v)


@PROPERTY
@given(case=cases())
def test_no_client_rule_admits_a_source_outside_ip_filter(case: Case) -> None:
    for rule in case.policy.rules_for("in"):
        if rule.reason.startswith("clients of") and rule.src_set is not None:
            outside = [n for n in nets(case.policy.set(rule.src_set).networks)
                       if not any(n.version == f.version and n.subnet_of(f)  # type: ignore[arg-type]
                                  for f in case.ip_filter)]
            assert not outside, (f"{case.policy.node}: rule {rule.reason!r} admits {outside}, "
                                 f"outside ip_filter {case.ip_filter}")
    for src in case.probes:
        for port in sorted(case.client_ports()):
            v = case.verdict(src, "tcp", port)
            if v.action == "accept" and v.rule.reason.startswith("clients of"):
                assert inside(src, case.ip_filter), case.where(src, "tcp", port, v)


@PROPERTY
@given(case=cases())
def test_vpc_service_without_public_access_admits_nothing_outside_vpc_and_peerings(
    case: Case,
) -> None:
    if case.service.vpc is None:
        return
    private = case.client_ports(public=False) - case.client_ports(public=True)
    for rule in case.policy.rules_for("in"):
        if rule.src_set and rule.src_set.startswith("clients_"):
            outside = [n for n in nets(case.policy.set(rule.src_set).networks)
                       if not any(n.version == b.version and n.subnet_of(b)  # type: ignore[arg-type]
                                  for b in case.bounds)]
            assert not outside, (f"{case.policy.node}: VPC-only client set {rule.src_set} "
                                 f"holds {outside}, outside {case.bounds}")
    others = case.node_addresses | {AZURE}
    for src in case.probes:
        if inside(src, case.bounds) or src in others or inside(src, case.mgmt):
            continue
        for port in sorted(private):
            v = case.verdict(src, "tcp", port)
            assert v.action == "reject", case.where(src, "tcp", port, v)


@PROPERTY
@given(case=cases(), ports=st.lists(st.integers(1, 65535), min_size=1, max_size=8))
def test_every_port_not_in_the_policy_is_rejected_never_dropped(
    case: Case, ports: list[int]
) -> None:
    closed = [p for p in ports if p not in case.in_ports]
    azure = case.service.provider == "azure"
    last = case.policy.rules_for("in")[-1]
    for src in case.probes:
        for proto in ("tcp", "udp"):
            for port in closed:
                v = case.verdict(src, proto, port)
                if azure and src == AZURE:
                    continue
                assert v.action == "reject" and v.rule == last, case.where(src, proto, port, v)
        # open ports: whatever the source, a new packet is never silently dropped
        for proto, port in [*(("tcp", p) for p in sorted(case.in_ports)), ("udp", 500),
                            ("udp", 4500)]:
            v = case.verdict(src, proto, port)
            assert v.action != "drop", case.where(src, proto, port, v)


@PROPERTY
@given(case=cases())
def test_ipv6_client_traffic_is_rejected_without_enable_ipv6(case: Case) -> None:
    if case.ipv6_clients:
        return
    v6_client_rules = [r.reason for r in case.policy.rules_for("in")
                       if r.family == 6 and r.reason.startswith("clients of")]
    assert not v6_client_rules, (f"{case.policy.node} ({case.service.type}, enable_ipv6 "
                                 f"{case.service.user_config.enable_ipv6}): {v6_client_rules}")
    for src in case.probes:
        if src.version != 6 or src in case.node_addresses or inside(src, case.mgmt):
            continue
        for port in sorted(case.client_ports()):
            v = case.verdict(src, "tcp", port)
            assert v.action == "reject", case.where(src, "tcp", port, v)


@PROPERTY
@given(case=cases())
def test_generated_specs_compile_reproducibly_to_valid_policies_without_descriptions(
    case: Case,
) -> None:
    check_policy(case.policy)
    again = compile_node(parse_spec(case.doc), case.policy.node)
    assert again.version == case.policy.version, "same spec, different policy between runs"
    assert NodePolicy.from_json(case.policy.to_json()) == case.policy
    text = case.policy.to_json()
    for e in case.service.user_config.ip_filter:
        if e.description in strategies.HOSTILE_DESCRIPTIONS:
            assert e.description not in text, (f"{case.policy.node}: description "
                                               f"{e.description!r} found in the policy")
    # ports: pins honoured, the others allocated in 10000..30000, no port shared
    for component, port in case.ports.items():
        if component in case.service.ports:
            assert port == case.service.ports[component], f"pin of {component} not honoured"
        else:
            assert 10000 <= port <= 30000, f"{case.service.name}.{component} got port {port}"
    assert len(set(case.ports.values())) == len(case.ports), f"shared port: {case.ports}"
    served = [(c.port, c.protocol) for c in case.policy.components]
    assert len(served) == len(set(served)), (f"{case.policy.node}: two components on one port: "
                                             f"{case.policy.components}")
    assert not {80, 4501} & case.in_ports, (f"{case.policy.node}: port 80 or 4501 opened: "
                                            f"{sorted(case.in_ports)}")


@st.composite
def ece_cases(draw: st.DrawFn) -> Case:
    doc = draw(strategies.deployment_specs(environments=("ece",)))
    node = draw(strategies.node_names(doc))
    extra = draw(st.lists(st.ip_addresses(), max_size=4))
    return Case(doc, node, extra)


@settings(PROPERTY, max_examples=60)
@given(case=ece_cases(), port=st.integers(1, 65535))
def test_ece_egress_reaches_only_the_vpc_peers_proxy_and_cloud_addresses(
    case: Case, port: int
) -> None:
    if case.service.environment != "ece":
        return  # a spec without a VPC has no ece service
    assert case.service.socks5_proxy is not None
    proxy_host, _, proxy_port = case.service.socks5_proxy.rpartition(":")
    proxy = ipaddress.ip_address(proxy_host.strip("[]"))
    allowed = [*case.bounds, *nets(["169.254.169.254/32", "168.63.129.16/32"])]
    last = case.policy.rules_for("out")[-1]
    for dst in case.probes:
        if inside(dst, allowed) or dst in case.peer_addresses:
            continue
        src = "10.255.255.1" if dst.version == 4 else "fd00:ffff::1"
        for proto in ("tcp", "udp"):
            if dst == proxy and proto == "tcp" and port == int(proxy_port):
                continue
            pkt = Packet(src, str(dst), proto, port, direction="out", uid=0)
            v = evaluate(case.policy, pkt)
            assert v.action == "reject" and v.rule == last, (
                f"{case.policy.node} (ece): out {proto} -> {dst}:{port} uid 0: {v.action} by "
                f"rule {v.rule_index} {v.reason!r}")


@given(st.lists(st.text(max_size=12), max_size=8))
def test_version_digest_writes_string_lists_as_json_does(items: list[str]) -> None:
    """The policy version hashes a hand-written JSON of the networks (quick for 8000): it must
    be exactly what json.dumps writes, whatever the strings hold."""
    import json

    from nodewall.policy.model import _json_strings

    assert _json_strings(tuple(items)) == json.dumps(items, separators=(",", ":"))
