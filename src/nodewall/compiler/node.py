"""The compiler: deployment spec + node name -> `NodePolicy` (SPEC section 3).

It decides what a node's firewall must let through and why, in rule order: loopback, conntrack,
needed ICMP, management, cluster peers, integrations, clients, Azure probes, then reject; and
the egress rules of the node's environment. It knows nothing of nft or iptables syntax and
never writes customer text (ip_filter descriptions) into a policy.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING

from nodewall import catalogue
from nodewall.catalogue import AZURE_ADDRESS, METADATA_ADDRESS, Component
from nodewall.catalogue.ports import (
    IPSEC_PORTS,
    MANAGEMENT_PORT,
    MANAGEMENT_PORTS,
    MANAGEMENT_SSH_PORT,
    WEB_UI_PORT,
)
from nodewall.compiler.components import component_ports, enabled_components, service_ports
from nodewall.gcpause import collector_paused
from nodewall.net import cidr
from nodewall.policy import reasons
from nodewall.policy.model import AddressSet, ComponentPort, Family, NodePolicy, Rule
from nodewall.spec.warnings import client_warnings, ipv6_clients

if TYPE_CHECKING:  # attributes only: `nodewall.spec.quick` gives the same shapes
    from nodewall.spec.model import DeploymentSpec, ServiceSpec

LOOPBACK = {4: "127.0.0.0/8", 6: "::1/128"}
PING_LIMIT_PER_SECOND = 10
NEEDED_ICMP = {
    4: ("destination-unreachable", "time-exceeded", "parameter-problem"),
    6: ("destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem",
        "nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert"),
}
ECE_EGRESS_ICMP = {
    4: NEEDED_ICMP[4],
    6: ("destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem",
        "nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert"),
}
FAMILIES: tuple[Family, ...] = (4, 6)


@dataclass
class _Builder:
    """Accumulates sets, rules and notes while one node is compiled."""

    sets: list[AddressSet] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    components: list[ComponentPort] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add_set(self, name: str, family: Family, purpose: str,
                elements: Iterable[tuple[cidr.Net, tuple[str, ...]]],
                hosts_only: bool = False) -> str:
        pairs = list(elements)
        return self.add_named_set(name, family, purpose, ([str(net) for net, _ in pairs],
                                                          [reasons for _, reasons in pairs]),
                                  hosts_only)

    def add_named_set(self, name: str, family: Family, purpose: str,
                      elements: tuple[Sequence[str], Sequence[tuple[str, ...]]],
                      hosts_only: bool = False) -> str:
        """`add_set` for elements given as (networks as normalised text, their reasons), as
        `cidr.reduce_named` gives them."""
        networks, reasons = elements
        self.sets.append(AddressSet.of(name, family, hosts_only, purpose, networks, reasons))
        return name

    def add_fixed_set(self, name: str, family: Family, purpose: str, network: str) -> str:
        return self.add_set(name, family, purpose, [(cidr.parse(network)[0], (purpose,))])

    def rule(self, **kwargs: object) -> None:
        self.rules.append(Rule(**kwargs))  # type: ignore[arg-type]


def compile_node(spec: DeploymentSpec, node_name: str) -> NodePolicy:
    """The policy of one node of the spec. Raises KeyError for an unknown node."""
    with collector_paused():  # many small acyclic objects (see `nodewall.gcpause`)
        return _compile(spec, node_name)


def _compile(spec: DeploymentSpec, node_name: str) -> NodePolicy:
    service, node = spec.node(node_name)
    b = _Builder()
    ports = service_ports(spec, service)
    components = enabled_components(spec, service)
    node_ports = sorted({p for c in components for p in component_ports(c, ports)})

    _ingress_base(b)
    _management(b, spec)
    _peers(b, service, node_name, node_ports)
    _integrations(b, spec, service, components, ports)
    _clients(b, spec, service, components, ports)
    if service.provider == "azure":
        azure = b.add_fixed_set("azure_v4", 4, reasons.AZURE_SET, AZURE_ADDRESS)
        b.rule(direction="in", action="reject", family=4, protocol="tcp", src_set=azure,
               dports=MANAGEMENT_PORTS, reason=reasons.AZURE_NOT_MANAGEMENT)
        b.rule(direction="in", action="accept", family=4, src_set=azure,
               reason=reasons.AZURE_PROBES)
    b.rule(direction="in", action="reject", reason=reasons.REJECTED)
    _egress(b, spec, service)
    return NodePolicy(
        node=node.name, service=service.name, service_type=service.type,
        environment=service.environment, sets=tuple(b.sets), rules=tuple(b.rules),
        components=tuple(b.components), warnings=tuple(b.warnings),
    )


def _ingress_base(b: _Builder) -> None:
    b.rule(direction="in", action="accept", interface="loopback", reason=reasons.LOOPBACK)
    for family in FAMILIES:
        loop = b.add_fixed_set(f"loopback_v{family}", family, reasons.LOOPBACK_SET,
                               LOOPBACK[family])
        b.rule(direction="in", action="drop", family=family, interface="not-loopback",
               src_set=loop, reason=reasons.LOOPBACK_SPOOF)
    b.rule(direction="in", action="accept", ct_states=("established", "related"),
           reason=reasons.ESTABLISHED)
    b.rule(direction="in", action="drop", ct_states=("invalid",), reason=reasons.INVALID)
    for family in FAMILIES:
        b.rule(direction="in", action="accept", family=family, protocol="icmp",
               icmp_types=NEEDED_ICMP[family], reason=reasons.NEEDED_ICMP)
        b.rule(direction="in", action="accept", family=family, protocol="icmp",
               icmp_types=("echo-request",), limit_per_second=PING_LIMIT_PER_SECOND,
               reason=reasons.PING)


def _management(b: _Builder, spec: DeploymentSpec) -> None:
    nets = [(cidr.parse(n)[0], reasons.management_network(n))
            for n in spec.platform.management_networks]
    names = []
    for family in FAMILIES:
        name = b.add_set(f"mgmt_v{family}", family, reasons.MANAGEMENT_SET,
                         cidr.reduce(x for x in nets if x[0].family == family))
        names.append(name)
        b.rule(direction="in", action="accept", family=family, protocol="tcp", src_set=name,
               dports=MANAGEMENT_PORTS, reason=reasons.MANAGEMENT)
    for label, port in (("management-ssh", MANAGEMENT_SSH_PORT), ("management", MANAGEMENT_PORT)):
        b.components.append(ComponentPort(label, port, "tcp", "management", tuple(names)))


def _host_elements(
    nodes: Iterable[tuple[str, Sequence[str]]], reason: Callable[[str], str]
) -> dict[int, tuple[list[str], list[tuple[str, ...]]]]:
    """Per family, each node address as a /32 or /128 (`cidr.host`) with its node."""
    nodes = list(nodes)
    why = [reason(name) for name, addresses in nodes for _ in addresses]
    parsed = cidr.parse_many(a.partition("/")[0] for _, addresses in nodes for a in addresses)
    items = list(zip(map(itemgetter(0), parsed.parsed), why, parsed.texts, strict=True))
    return {family: cidr.reduce_named(x for x in items if x[0].family == family)
            for family in FAMILIES}


def _peers(b: _Builder, service: ServiceSpec, node_name: str, node_ports: list[int]) -> None:
    others = [(n.name, n.addresses) for n in service.nodes if n.name != node_name]
    elements = _host_elements(others, reasons.cluster_peer)
    names = []
    for family in FAMILIES:
        peers = b.add_named_set(f"peers_v{family}", family, reasons.peers_set(service.name),
                                elements[family], hosts_only=True)
        names.append(peers)
        if node_ports:
            b.rule(direction="in", action="accept", family=family, protocol="tcp",
                   src_set=peers, dports=tuple(node_ports), reason=reasons.CLUSTER_PEERS)
        b.rule(direction="in", action="accept", family=family, protocol="udp", src_set=peers,
               dports=IPSEC_PORTS, reason=reasons.IPSEC)
        b.rule(direction="in", action="accept", family=family, protocol="esp", src_set=peers,
               reason=reasons.IPSEC_ESP)
    for port, label in zip(IPSEC_PORTS, ("ipsec-ike", "ipsec-nat-t"), strict=True):
        b.components.append(ComponentPort(label, port, "udp", "ipsec", tuple(names)))


def _integrations(b: _Builder, spec: DeploymentSpec, service: ServiceSpec,
                  components: list[Component], ports: dict[str, int]) -> None:
    kinds = catalogue.integration_types()
    enabled = {c.name: c for c in components}
    stype = catalogue.service_type(service.type)
    for index, integ in enumerate(spec.integrations):
        kind = kinds[integ.type]
        ends = {"source": integ.source, "dest": integ.dest}
        if kind.connector is None or ends[kind.target] != service.name:
            continue
        connector = spec.service(ends[kind.connector] or "")
        reached = [enabled[c] for c in catalogue.reached_components(kind, stype) if c in enabled]
        target_ports = tuple(sorted({p for c in reached for p in component_ports(c, ports)}))
        if not target_ports:
            b.warnings.append(f"integrations[{index}] ({integ.type} from {connector.name}) "
                              f"reaches no enabled component of {service.name}")
            continue
        reason = reasons.integration(integ.type, connector.name)
        # Named after what the integration is, not where it stands in the spec, so adding or
        # removing another integration leaves this node's sets (and version) alone.
        digest = hashlib.sha256(f"{integ.type}/{connector.name}".encode()).hexdigest()[:10]
        set_prefix = f"int_{digest}"
        elements = _host_elements(((n.name, n.addresses) for n in connector.nodes),
                                  functools.partial(reasons.node_of, connector.name))
        for family in FAMILIES:
            name = b.add_named_set(f"{set_prefix}_v{family}", family,
                                   reasons.nodes_set(connector.name), elements[family],
                                   hosts_only=True)
            b.rule(direction="in", action="accept", family=family, protocol="tcp",
                   src_set=name, dports=target_ports, reason=reason)


def _clients(b: _Builder, spec: DeploymentSpec, service: ServiceSpec,
             components: list[Component], ports: dict[str, int]) -> None:
    b.warnings.extend(client_warnings(spec, service))
    config = service.user_config
    # (network, reason, network as text) of each entry; the text comes from the spec's parse
    count = len(config.parsed_ip_filter)
    entries = list(zip(map(itemgetter(0), config.parsed_ip_filter),
                       [reasons.ip_filter_entry(i, service.name) for i in range(count)],
                       config.ip_filter_networks, strict=True))
    of_family = {4: count - config.ip_filter_ipv6, 6: config.ip_filter_ipv6}
    bounds = [] if service.vpc is None else [n for n, _ in spec.vpc(service.vpc).networks]
    public_keys = {k for k, v in service.user_config.public_access.items() if v}
    groups: dict[str, list[Component]] = {"clients": [], "public": []}
    for c in components:
        if c.route == "client":
            public = service.vpc is not None and c.access in public_keys
            groups["public" if public else "clients"].append(c)
    for group, members in groups.items():
        group_ports = tuple(sorted({p for c in members for p in component_ports(c, ports)}))
        if not group_ports:
            continue
        restricted = group == "clients" and service.vpc is not None
        names = []
        for family in (FAMILIES if ipv6_clients(service) else (4,)):
            mine = (entries if of_family[family] == count
                    else [e for e in entries if e[0].family == family])
            if restricted:
                fam_bounds = [x for x in bounds if x.family == family]
                mine = [(part, r, text if part is n else str(part)) for n, r, text in mine
                        for part in cidr.intersect(n, fam_bounds)]
            purpose = reasons.IP_FILTER_IN_VPC if restricted else reasons.IP_FILTER
            name = b.add_named_set(f"{group}_v{family}", family,
                                   reasons.clients_set(service.name, purpose),
                                   cidr.reduce_named(mine))
            names.append(name)
            b.rule(direction="in", action="accept", family=family, protocol="tcp",
                   src_set=name, dports=group_ports,
                   reason=reasons.clients(service.name, purpose))
        for c in members:
            for port in component_ports(c, ports):
                web = port == WEB_UI_PORT and c.fixed_port != WEB_UI_PORT
                b.components.append(ComponentPort(c.name, port, "tcp", "web" if web else "client",
                                                  tuple(names)))
    for c in components:
        if c.route == "cluster":
            peers = ("peers_v4", "peers_v6")
            b.components.append(ComponentPort(c.name, ports[c.name], "tcp", "cluster", peers))


def _egress(b: _Builder, spec: DeploymentSpec, service: ServiceSpec) -> None:
    b.rule(direction="out", action="accept", interface="loopback", reason=reasons.LOOPBACK)
    b.rule(direction="out", action="accept", ct_states=("established", "related"),
           reason=reasons.ESTABLISHED)
    meta = b.add_fixed_set("metadata_v4", 4, reasons.METADATA_SET, METADATA_ADDRESS)
    for proto, port, why in (("udp", 123, "NTP"), ("udp", 53, "DNS"), ("tcp", 53, "DNS")):
        b.rule(direction="out", action="accept", family=4, protocol=proto, dst_set=meta,
               dports=(port,), reason=reasons.at_metadata(why))
    b.rule(direction="out", action="accept", family=4, dst_set=meta, uid=0,
           reason=reasons.METADATA_UID0)
    b.rule(direction="out", action="reject", family=4, dst_set=meta,
           reason=reasons.METADATA_REJECTED)
    if service.provider == "azure":
        azure = "azure_v4"
        for proto, port, why in (("udp", 67, "DHCP"), ("udp", 53, "DNS"), ("tcp", 53, "DNS")):
            b.rule(direction="out", action="accept", family=4, protocol=proto, dst_set=azure,
                   dports=(port,), reason=reasons.azure(why))
    if service.environment != "ece":
        b.rule(direction="out", action="accept",
               reason=reasons.egress_allowed(service.environment))
        return
    for family in FAMILIES:
        b.rule(direction="out", action="accept", family=family, protocol="icmp",
               icmp_types=ECE_EGRESS_ICMP[family], reason=reasons.NEEDED_ICMP)
    assert service.vpc is not None and service.socks5_proxy is not None
    vpc = spec.vpc(service.vpc)
    nets = [(net, reasons.vpc_network(vpc.id, text)) for net, text in vpc.networks]
    proxy_host, proxy_port = cidr.parse_host_port(service.socks5_proxy)
    proxy = cidr.host(proxy_host)
    for family in FAMILIES:
        vpc_set = b.add_set(f"vpc_v{family}", family, reasons.vpc_set(vpc.id),
                            cidr.reduce(x for x in nets if x[0].family == family))
        b.rule(direction="out", action="accept", family=family, dst_set=vpc_set,
               reason=reasons.ECE_VPC)
        b.rule(direction="out", action="accept", family=family, dst_set=f"peers_v{family}",
               reason=reasons.ECE_PEERS)
        if proxy.family == family:
            proxy_set = b.add_set(f"proxy_v{family}", family, reasons.PROXY_SET,
                                  [(proxy, (reasons.PROXY_SET,))], hosts_only=True)
            b.rule(direction="out", action="accept", family=family, protocol="tcp",
                   dst_set=proxy_set, dports=(proxy_port,), reason=reasons.ECE_PROXY)
    b.rule(direction="out", action="reject", reason=reasons.ECE_REJECTED)
