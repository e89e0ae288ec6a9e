"""SPEC section 3 by real probes, both families: who may connect, and that everything else is
refused at once (RST or ICMP unreachable within 0.5 s, never a timeout)."""

from __future__ import annotations

from conftest import Node
from kspecs import BOUNCER_PORT, PG_PORT, PROMETHEUS_PORT, in_vpc, policy, public
from netns import HOSTS, Listeners, ping, probe, probe_as, probe_raw, sh, stray_ack

FAMILIES = (0, 1)  # index into a HOSTS pair: IPv4, IPv6


def outcome(node: Node, role: str, fam: int, proto: str, port: int) -> str:
    return probe(node.topo.ns(role), HOSTS[role][fam], HOSTS["node"][fam], proto, port)


def expect(node: Node, cases: list[tuple[str, str, int, str]]) -> None:
    """Each (role, proto, port, expected) in both families; one failure lists them all."""
    wrong = []
    for fam in FAMILIES:
        for role, proto, port, want in cases:
            got = outcome(node, role, fam, proto, port)
            if got != want:
                wrong.append(f"{role} IPv{4 + 2 * fam} {proto}/{port}: expected {want}, got {got}")
    assert not wrong, "\n".join(wrong)


def test_management_peers_integrations_clients(node: Node) -> None:
    node.apply(policy(public()))
    expect(node, [
        # rule 4: management ports from the management networks only
        ("mgmt", "tcp", 22, "open"), ("mgmt", "tcp", 30287, "open"),
        ("office", "tcp", 22, "refused"), ("peer", "tcp", 30287, "refused"),
        ("internet", "tcp", 22, "refused"), ("mgmt", "tcp", PG_PORT, "refused"),
        # rule 5: cluster peers reach every component port and IPsec
        ("peer", "tcp", PG_PORT, "open"), ("peer", "tcp", BOUNCER_PORT, "open"),
        ("peer", "tcp", PROMETHEUS_PORT, "open"), ("peer", "udp", 500, "open"),
        ("peer", "udp", 4500, "open"), ("peer", "tcp", 5432, "refused"),
        # rule 6: the replica's node reaches the pg port only
        ("vpc", "tcp", PG_PORT, "open"), ("vpc", "tcp", BOUNCER_PORT, "refused"),
        # rule 7: ip_filter sources reach the client ports
        ("office", "tcp", PG_PORT, "open"), ("office", "tcp", BOUNCER_PORT, "open"),
        ("office", "tcp", PROMETHEUS_PORT, "open"), ("internet", "tcp", PG_PORT, "refused"),
        # rule 9: the rest is rejected: TCP reset, UDP port-unreachable
        ("office", "udp", PG_PORT, "refused"), ("internet", "udp", 53, "refused"),
        ("office", "tcp", 80, "refused"), ("office", "udp", 500, "refused"),
    ])


def test_esp_and_ping(node: Node) -> None:
    node.apply(policy(public()))
    for fam in FAMILIES:
        dst = HOSTS["node"][fam]
        # ESP from a peer reaches the node's stack, from others it is prohibited
        assert probe_raw(node.topo.ns("peer"), HOSTS["peer"][fam], dst) == "open"
        assert probe_raw(node.topo.ns("office"), HOSTS["office"][fam], dst) == "refused"
        # rule 3: echo requests from anywhere are answered
        assert ping(node.topo.ns("internet"), HOSTS["internet"][fam], dst) == "open"


def test_invalid_flow_state_is_dropped(node: Node) -> None:
    """Rule 2: a packet conntrack calls invalid is dropped, even from an allowed client: a bare
    ACK to the open pg port gets no reset. Without nodewall the node's stack answers it with
    one, so the drop is nodewall's. Strict TCP tracking is set in the node's namespace only."""
    office, dst = HOSTS["office"][0], HOSTS["node"][0]
    node.listeners.ensure(tcp={PG_PORT})
    sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0", ns=node.ns)
    try:
        node.apply(policy(public()))
        assert outcome(node, "office", 0, "tcp", PG_PORT) == "open"  # the port is open to it
        assert stray_ack(node.topo.ns("office"), office, dst, PG_PORT) == "timeout"
        node.remove()
        assert stray_ack(node.topo.ns("office"), office, dst, PG_PORT) == "reset"
    finally:
        sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=1", ns=node.ns)


def test_loopback_accepted_even_with_empty_ip_filter(node: Node) -> None:
    node.apply(policy(public(ip_filter=[])))
    for address in ("127.0.0.1", "::1"):
        assert probe(node.ns, address, address, "tcp", 5432) == "open"
        assert probe(node.ns, address, address, "udp", 5432) == "open"
    expect(node, [("office", "tcp", PG_PORT, "refused"), ("mgmt", "tcp", 22, "open"),
                  ("peer", "tcp", PG_PORT, "open")])


def test_ipv6_clients_need_enable_ipv6(node: Node) -> None:
    node.apply(policy(public(enable_ipv6=False)))
    v6 = 1
    assert outcome(node, "office", 0, "tcp", PG_PORT) == "open"
    assert outcome(node, "office", v6, "tcp", PG_PORT) == "refused"
    # management and cluster rules hold for IPv6 whatever enable_ipv6 says
    assert outcome(node, "mgmt", v6, "tcp", 22) == "open"
    assert outcome(node, "peer", v6, "tcp", PG_PORT) == "open"


def test_vpc_clients_and_public_access(node: Node) -> None:
    node.apply(policy(in_vpc(ip_filter=["0.0.0.0/0", "::/0"],
                             public_access={"pgbouncer": True})))
    expect(node, [
        ("internet", "tcp", PG_PORT, "refused"),  # outside the VPC and its peers
        ("internet", "tcp", BOUNCER_PORT, "open"),  # public access switched on
        ("vpc", "tcp", BOUNCER_PORT, "open"),
    ])
    # the VPC and its peer CIDRs are IPv4 only: no IPv6 client is inside them
    assert outcome(node, "vpc", 0, "tcp", PG_PORT) == "open"
    assert outcome(node, "vpc", 1, "tcp", PG_PORT) == "refused"


def egress(node: Node, uid: int, proto: str, dst: str, port: int) -> str:
    return probe_as(node.ns, uid, proto, dst, port)


def test_egress_metadata_and_standard(node: Node, outside: dict[str, Listeners]) -> None:
    node.apply(policy(public()))
    meta = "169.254.169.254"
    assert egress(node, 0, "tcp", meta, 80) == "open"  # the platform's agents
    assert egress(node, 65534, "tcp", meta, 80) == "refused"
    assert egress(node, 65534, "udp", meta, 123) == "open"
    assert egress(node, 65534, "udp", meta, 53) == "open"
    assert egress(node, 65534, "tcp", meta, 53) == "open"
    assert egress(node, 65534, "tcp", HOSTS["internet"][0], 5555) == "open"
    assert egress(node, 65534, "tcp", HOSTS["internet"][1], 5555) == "open"
    assert egress(node, 65534, "udp", HOSTS["office"][1], 5555) == "open"


def test_egress_ece(node: Node, outside: dict[str, Listeners]) -> None:
    node.apply(policy(in_vpc("ece", ip_filter=["10.50.0.0/16"])))
    assert egress(node, 65534, "tcp", HOSTS["vpc"][0], 5555) == "open"  # a peer CIDR
    assert egress(node, 65534, "tcp", HOSTS["internet"][0], 1080) == "open"  # the proxy
    assert egress(node, 65534, "tcp", HOSTS["internet"][0], 5555) == "refused"
    assert egress(node, 65534, "udp", HOSTS["office"][0], 5555) == "refused"
    assert egress(node, 0, "tcp", "169.254.169.254", 80) == "open"
    # IPv6 egress: cluster peers only (this VPC and its peers are IPv4 networks)
    assert egress(node, 65534, "tcp", HOSTS["peer"][1], 5555) == "open"
    assert egress(node, 65534, "tcp", HOSTS["internet"][1], 5555) == "refused"
    assert egress(node, 65534, "udp", HOSTS["vpc"][1], 5555) == "refused"
    assert outcome(node, "vpc", 0, "tcp", PG_PORT) == "open"
    expect(node, [("internet", "tcp", PG_PORT, "refused")])
