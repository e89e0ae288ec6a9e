"""SPEC section 3, ingress rules 1-9, each through the reference evaluator."""

from __future__ import annotations

from typing import Any

import pytest

from nodewall.policy.model import NodePolicy, Protocol, check_policy

from .helpers import (
    INTERNET_V4,
    INTERNET_V6,
    OFFICE_V4,
    OFFICE_V6,
    compiled,
    expect,
    final_reject,
    has_component,
    packet,
    port_of,
    service_doc,
    spec_doc,
)

OFFICE = "203.0.113.7"
OFFICE6 = "2001:db8:1::7"
MGMT = "198.51.100.3"
MGMT6 = "2001:db8:ff::3"
PEER = "192.0.2.12"
PEER6 = "2001:db8:10::12"
PEER_NEIGHBOUR = "192.0.2.99"  # same /24 as the peers, not a node
REPLICA = "192.0.2.21"
REPLICA6 = "2001:db8:10::21"


def pg_doc(ip_filter: list[Any] | None = None, *, enable_ipv6: bool | None = True,
           prometheus: bool = True, cloud: str = "aws-eu-west-1") -> dict[str, Any]:
    user_config: dict[str, Any] = {
        "ip_filter": [OFFICE_V4, OFFICE_V6] if ip_filter is None else ip_filter}
    if enable_ipv6 is not None:
        user_config["enable_ipv6"] = enable_ipv6
    integrations: list[dict[str, Any]] = [
        {"type": "read_replica", "source": "pg-prod", "dest": "pg-replica"}]
    if prometheus:
        integrations.append({"type": "prometheus", "source": "pg-prod"})
    return spec_doc(
        [
            service_doc("pg-prod", "pg", [["192.0.2.11", "2001:db8:10::11"], [PEER, PEER6],
                                           ["192.0.2.13"]], cloud=cloud, user_config=user_config),
            service_doc("pg-replica", "pg", [[REPLICA, REPLICA6]], cloud=cloud,
                        user_config={"ip_filter": [OFFICE_V4]}),
        ],
        integrations=integrations,
    )


@pytest.fixture(scope="module")
def pg() -> NodePolicy:
    return compiled(pg_doc(), "pg-prod-1")


def test_compiled_policy_passes_the_backend_invariants(pg: NodePolicy) -> None:
    check_policy(pg)


# 1. loopback


@pytest.mark.parametrize("src", ["127.0.0.1", "::1"])
def test_loopback_interface_accepts_any_port(pg: NodePolicy, src: str) -> None:
    cases: list[tuple[Protocol, int]] = [("tcp", 5432), ("udp", 53), ("tcp", 22)]
    for proto, port in cases:
        expect(pg, packet(src, proto, port, dst=src, interface="loopback"), "accept", "loopback")


@pytest.mark.parametrize("src", ["127.0.0.1", "127.9.8.7", "::1"])
def test_loopback_source_on_another_interface_is_dropped(pg: NodePolicy, src: str) -> None:
    pg_port = port_of(pg, "pg")
    expect(pg, packet(src, "tcp", pg_port), "drop", "loopback source")
    expect(pg, packet(src, "tcp", 22, state="established"), "drop", "loopback source")


# 2. conntrack


@pytest.mark.parametrize("state", ["established", "related"])
@pytest.mark.parametrize("src", [INTERNET_V4, INTERNET_V6])
def test_established_and_related_flows_are_accepted_from_anywhere(
    pg: NodePolicy, src: str, state: str
) -> None:
    expect(pg, packet(src, "tcp", 40000, state=state), "accept", "established or related")  # type: ignore[arg-type]
    expect(pg, packet(src, "udp", 40000, state=state), "accept", "established or related")  # type: ignore[arg-type]


@pytest.mark.parametrize("src", [MGMT, PEER, OFFICE, MGMT6])
def test_invalid_state_is_dropped_even_from_allowed_sources(pg: NodePolicy, src: str) -> None:
    expect(pg, packet(src, "tcp", 22, state="invalid"), "drop", "invalid")
    expect(pg, packet(src, "tcp", port_of(pg, "pg"), state="invalid"), "drop", "invalid")


# 3. ICMP


@pytest.mark.parametrize(
    "icmp_type", ["destination-unreachable", "time-exceeded", "parameter-problem"])
@pytest.mark.parametrize("src", [INTERNET_V4, INTERNET_V6])
def test_icmp_errors_the_network_needs_are_accepted(
    pg: NodePolicy, src: str, icmp_type: str
) -> None:
    expect(pg, packet(src, "icmp", icmp_type=icmp_type), "accept", "ICMP the network needs")


@pytest.mark.parametrize("icmp_type", [
    "packet-too-big", "nd-router-solicit", "nd-router-advert",
    "nd-neighbor-solicit", "nd-neighbor-advert"])
def test_icmpv6_packet_too_big_and_neighbour_discovery_are_accepted(
    pg: NodePolicy, icmp_type: str
) -> None:
    for src in (INTERNET_V6, "fe80::1"):
        expect(pg, packet(src, "icmp", icmp_type=icmp_type), "accept", "ICMP the network needs")


@pytest.mark.parametrize("src", [INTERNET_V4, INTERNET_V6])
def test_echo_request_is_accepted_with_a_rate_limit(pg: NodePolicy, src: str) -> None:
    v = expect(pg, packet(src, "icmp", icmp_type="echo-request"), "accept", "ping")
    assert v.rule.limit_per_second is not None and v.rule.limit_per_second > 0, (
        f"echo-request from {src} accepted by rule {v.rule_index} without a rate limit")


def test_packet_too_big_is_never_blocked_whatever_the_ip_filter() -> None:
    policy = compiled(pg_doc(ip_filter=[]), "pg-prod-1")
    for state in ("new", "related"):
        expect(policy, packet(INTERNET_V6, "icmp", icmp_type="packet-too-big",
                              state=state), "accept")


@pytest.mark.parametrize("src", [INTERNET_V4, INTERNET_V6])
def test_unsolicited_echo_reply_is_rejected(pg: NodePolicy, src: str) -> None:
    final_reject(pg, packet(src, "icmp", icmp_type="echo-reply"))


# 4. management


@pytest.mark.parametrize("src", [MGMT, MGMT6, "198.51.100.15", "2001:db8:ff::ffff"])
@pytest.mark.parametrize("port", [22, 30287])
def test_management_networks_reach_management_ports(pg: NodePolicy, src: str, port: int) -> None:
    expect(pg, packet(src, "tcp", port), "accept", "management")


@pytest.mark.parametrize("src", [OFFICE, OFFICE6, PEER, "198.51.100.16", INTERNET_V4, INTERNET_V6])
@pytest.mark.parametrize("port", [22, 30287])
def test_management_ports_are_rejected_from_anywhere_else(
    pg: NodePolicy, src: str, port: int
) -> None:
    final_reject(pg, packet(src, "tcp", port))


def test_office_address_reaches_pg_port_but_not_ssh(pg: NodePolicy) -> None:
    expect(pg, packet(OFFICE, "tcp", port_of(pg, "pg")), "accept", "clients of pg-prod")
    final_reject(pg, packet(OFFICE, "tcp", 22))


def test_management_stays_with_an_open_ip_filter() -> None:
    policy = compiled(pg_doc(ip_filter=["0.0.0.0/0", "::/0"]), "pg-prod-1")
    expect(policy, packet(INTERNET_V4, "tcp", port_of(policy, "pg")), "accept", "clients")
    final_reject(policy, packet(INTERNET_V4, "tcp", 22))
    final_reject(policy, packet(INTERNET_V6, "tcp", 30287))


def test_empty_ip_filter_still_lets_management_and_peers_in() -> None:
    policy = compiled(pg_doc(ip_filter=[]), "pg-prod-1")
    pg_port = port_of(policy, "pg")
    for src in (MGMT, MGMT6):
        expect(policy, packet(src, "tcp", 22), "accept", "management")
        expect(policy, packet(src, "tcp", 30287), "accept", "management")
    expect(policy, packet(PEER, "tcp", pg_port), "accept", "cluster peers")
    expect(policy, packet(PEER6, "tcp", pg_port), "accept", "cluster peers")
    expect(policy, packet(REPLICA, "tcp", pg_port), "accept", "integration read_replica")
    for src in (OFFICE, OFFICE6, INTERNET_V4):
        final_reject(policy, packet(src, "tcp", pg_port))
    assert any("empty, so no client can connect" in w for w in policy.warnings), policy.warnings


def test_management_networks_do_not_reach_client_ports(pg: NodePolicy) -> None:
    final_reject(pg, packet(MGMT, "tcp", port_of(pg, "pg")))


def test_management_is_tcp_only(pg: NodePolicy) -> None:
    final_reject(pg, packet(MGMT, "udp", 22))


# 5. cluster peers


def test_peer_reaches_pg_port_from_its_32_but_its_24_neighbour_does_not(pg: NodePolicy) -> None:
    pg_port = port_of(pg, "pg")
    expect(pg, packet(PEER, "tcp", pg_port), "accept", "cluster peers")
    final_reject(pg, packet(PEER_NEIGHBOUR, "tcp", pg_port))
    expect(pg, packet(PEER6, "tcp", pg_port), "accept", "cluster peers")
    final_reject(pg, packet("2001:db8:10::99", "tcp", pg_port))


def test_peer_reaches_every_port_of_the_node_components_incl_prometheus(pg: NodePolicy) -> None:
    ports = {c.port for c in pg.components if c.route in ("client", "cluster", "web")}
    assert 9273 in ports, f"prometheus integration exists but 9273 not among {sorted(ports)}"
    for port in sorted(ports):
        for src in (PEER, PEER6, "192.0.2.13"):
            expect(pg, packet(src, "tcp", port), "accept", "cluster peers")


def test_peer_rule_names_the_peer_it_matched(pg: NodePolicy) -> None:
    v = expect(pg, packet(PEER, "tcp", port_of(pg, "pg")), "accept")
    assert "cluster peer pg-prod-2" in v.reason, f"peer verdict reason {v.reason!r}"


def test_node_is_not_its_own_peer(pg: NodePolicy) -> None:
    for name in ("peers_v4", "peers_v6"):
        nets = pg.set(name).networks
        assert "192.0.2.11/32" not in nets and "2001:db8:10::11/128" not in nets, (
            f"{name} of pg-prod-1 holds its own address: {nets}")


def test_peer_sets_hold_exactly_the_other_nodes_as_host_addresses(pg: NodePolicy) -> None:
    assert set(pg.set("peers_v4").networks) == {"192.0.2.12/32", "192.0.2.13/32"}
    assert set(pg.set("peers_v6").networks) == {"2001:db8:10::12/128"}
    assert pg.set("peers_v4").hosts_only and pg.set("peers_v6").hosts_only


@pytest.mark.parametrize("src", [PEER, PEER6])
def test_peers_reach_ipsec_ike_nat_t_and_esp(pg: NodePolicy, src: str) -> None:
    expect(pg, packet(src, "udp", 500), "accept", "IPsec")
    expect(pg, packet(src, "udp", 4500), "accept", "IPsec")
    expect(pg, packet(src, "esp"), "accept", "IPsec ESP")


@pytest.mark.parametrize("src", [OFFICE, OFFICE6, MGMT, INTERNET_V4])
def test_ipsec_is_rejected_from_non_peers(pg: NodePolicy, src: str) -> None:
    final_reject(pg, packet(src, "udp", 500))
    final_reject(pg, packet(src, "udp", 4500))
    final_reject(pg, packet(src, "esp"))


def test_wireguard_4501_is_not_opened_even_to_peers(pg: NodePolicy) -> None:
    final_reject(pg, packet(PEER, "udp", 4501))


def test_ipv6_peers_are_allowed_when_the_type_has_no_ipv6_clients() -> None:
    doc = spec_doc([service_doc(
        "db", "mysql", [["192.0.2.11", "2001:db8:10::11"], ["192.0.2.12", "2001:db8:10::12"]],
        user_config={"ip_filter": [OFFICE_V4, OFFICE_V6]})])
    policy = compiled(doc, "db-1")
    for component in ("mysql", "mysqlx"):
        port = port_of(policy, component)
        expect(policy, packet("2001:db8:10::12", "tcp", port), "accept", "cluster peers")
        final_reject(policy, packet(OFFICE6, "tcp", port))
    expect(policy, packet("2001:db8:10::12", "esp"), "accept", "IPsec")


def test_ipv6_peers_are_allowed_with_enable_ipv6_off() -> None:
    policy = compiled(pg_doc(enable_ipv6=False), "pg-prod-1")
    expect(policy, packet(PEER6, "tcp", port_of(policy, "pg")), "accept", "cluster peers")
    final_reject(policy, packet(OFFICE6, "tcp", port_of(policy, "pg")))


def test_peers_reach_web_ui_443_and_cluster_ports() -> None:
    doc = spec_doc([service_doc("os", "opensearch", [["192.0.2.31"], ["192.0.2.32"]],
                                user_config={"ip_filter": []})])
    policy = compiled(doc, "os-1")
    for port in (443, port_of(policy, "opensearch_dashboards"), port_of(policy, "opensearch"),
                 port_of(policy, "opensearch_transport")):
        expect(policy, packet("192.0.2.32", "tcp", port), "accept", "cluster peers")


def test_cluster_ports_are_for_peers_only() -> None:
    doc = spec_doc([service_doc("os", "opensearch", [["192.0.2.31"], ["192.0.2.32"]],
                                user_config={"ip_filter": ["0.0.0.0/0"]})])
    policy = compiled(doc, "os-1")
    transport = port_of(policy, "opensearch_transport")
    expect(policy, packet("192.0.2.32", "tcp", transport), "accept", "cluster peers")
    final_reject(policy, packet(INTERNET_V4, "tcp", transport))
    expect(policy, packet(INTERNET_V4, "tcp", port_of(policy, "opensearch")), "accept", "clients")


def test_9273_is_closed_without_a_prometheus_integration() -> None:
    policy = compiled(pg_doc(prometheus=False), "pg-prod-1")
    assert not has_component(policy, "prometheus"), policy.components
    final_reject(policy, packet(PEER, "tcp", 9273))
    final_reject(policy, packet(OFFICE, "tcp", 9273))


def test_disabled_component_port_is_closed_even_to_peers() -> None:
    doc = spec_doc([service_doc("k", "kafka", [["192.0.2.41"], ["192.0.2.42"]],
                                user_config={"kafka_rest": False})], base_port=20000)
    policy = compiled(doc, "k-1")
    assert not has_component(policy, "kafka_rest"), policy.components
    from nodewall.compiler.components import service_ports
    from nodewall.spec.load import parse_spec

    spec = parse_spec(doc)
    rest_port = service_ports(spec, spec.service("k"))["kafka_rest"]
    final_reject(policy, packet("192.0.2.42", "tcp", rest_port))
    final_reject(policy, packet(INTERNET_V4, "tcp", rest_port))


# 6. integrations


def test_read_replica_reaches_the_source_main_port_only(pg: NodePolicy) -> None:
    expect(pg, packet(REPLICA, "tcp", port_of(pg, "pg")), "accept",
           "integration read_replica pg-replica")
    expect(pg, packet(REPLICA6, "tcp", port_of(pg, "pg")), "accept",
           "integration read_replica pg-replica")
    final_reject(pg, packet(REPLICA, "tcp", port_of(pg, "pgbouncer")))
    final_reject(pg, packet(REPLICA, "tcp", 22))


def test_read_replica_source_gets_no_access_to_the_replica() -> None:
    policy = compiled(pg_doc(), "pg-replica-1")
    final_reject(policy, packet("192.0.2.11", "tcp", port_of(policy, "pg")))


def test_integration_is_independent_of_the_ip_filter() -> None:
    policy = compiled(pg_doc(ip_filter=[]), "pg-prod-1")
    expect(policy, packet(REPLICA, "tcp", port_of(policy, "pg")), "accept", "integration")
    expect(policy, packet(REPLICA6, "tcp", port_of(policy, "pg")), "accept", "integration")


def test_integration_ipv6_is_allowed_with_enable_ipv6_off() -> None:
    policy = compiled(pg_doc(enable_ipv6=False), "pg-prod-1")
    expect(policy, packet(REPLICA6, "tcp", port_of(policy, "pg")), "accept", "integration")


def test_kafka_connect_integration_reaches_the_kafka_port() -> None:
    doc = spec_doc([
        service_doc("events", "kafka", [["192.0.2.41"]], user_config={"ip_filter": []}),
        service_doc("connect", "kafka_connect", [["192.0.2.51", "2001:db8:10::51"]]),
    ], integrations=[{"type": "kafka_connect", "source": "events", "dest": "connect"}])
    policy = compiled(doc, "events-1")
    for src in ("192.0.2.51", "2001:db8:10::51"):
        expect(policy, packet(src, "tcp", port_of(policy, "kafka")), "accept",
               "integration kafka_connect connect")
    final_reject(policy, packet("192.0.2.51", "tcp", port_of(policy, "kafka_controller")))


def test_logs_integration_lets_the_source_reach_opensearch_not_dashboards() -> None:
    doc = spec_doc([
        service_doc("logs-os", "opensearch", [["192.0.2.31"]], user_config={"ip_filter": []}),
        service_doc("app-db", "pg", [["192.0.2.41", "2001:db8:10::41"], ["192.0.2.42"]],
                    user_config={"ip_filter": []}),
    ], integrations=[{"type": "logs", "source": "app-db", "dest": "logs-os"}])
    policy = compiled(doc, "logs-os-1")
    for src in ("192.0.2.41", "192.0.2.42", "2001:db8:10::41"):
        expect(policy, packet(src, "tcp", port_of(policy, "opensearch")), "accept",
               "integration logs app-db")
        final_reject(policy, packet(src, "tcp", port_of(policy, "opensearch_dashboards")))
        final_reject(policy, packet(src, "tcp", 443))
    # and nothing opens on the pg side for the opensearch nodes
    pg_policy = compiled(doc, "app-db-1")
    final_reject(pg_policy, packet("192.0.2.31", "tcp", port_of(pg_policy, "pg")))


def test_metrics_integration_reaches_thanos_receiver_routing_only() -> None:
    doc = spec_doc([
        service_doc("thanos", "thanos", [["192.0.2.61"]], user_config={"ip_filter": []}),
        service_doc("db", "mysql", [["192.0.2.71"]]),
    ], integrations=[{"type": "metrics", "source": "db", "dest": "thanos"}])
    policy = compiled(doc, "thanos-1")
    expect(policy, packet("192.0.2.71", "tcp", port_of(policy, "receiver_routing")), "accept",
           "integration metrics db")
    final_reject(policy, packet("192.0.2.71", "tcp", port_of(policy, "query_frontend")))
    final_reject(policy, packet("192.0.2.71", "tcp", port_of(policy, "store")))


def test_internal_connectivity_reaches_every_client_port_of_the_dest() -> None:
    doc = spec_doc([
        service_doc("os", "opensearch", [["192.0.2.31"]], user_config={"ip_filter": []}),
        service_doc("app", "valkey", [["192.0.2.81"]]),
    ], integrations=[{"type": "internal_connectivity", "source": "app", "dest": "os"}])
    policy = compiled(doc, "os-1")
    for port in (port_of(policy, "opensearch"), port_of(policy, "opensearch_dashboards"), 443):
        expect(policy, packet("192.0.2.81", "tcp", port), "accept", "integration")
    final_reject(policy, packet("192.0.2.81", "tcp", port_of(policy, "opensearch_transport")))


def test_prometheus_integration_opens_9273_to_client_sources_only(pg: NodePolicy) -> None:
    assert port_of(pg, "prometheus") == 9273
    expect(pg, packet(OFFICE, "tcp", 9273), "accept", "clients of pg-prod")
    expect(pg, packet(OFFICE6, "tcp", 9273), "accept", "clients of pg-prod")
    final_reject(pg, packet(INTERNET_V4, "tcp", 9273))
    final_reject(pg, packet(REPLICA, "tcp", 9273))


# 7. clients


def test_public_service_admits_ip_filter_networks_on_every_client_port(pg: NodePolicy) -> None:
    for component in ("pg", "pgbouncer"):
        port = port_of(pg, component)
        for src in (OFFICE, "203.0.113.0", "203.0.113.255", OFFICE6):
            expect(pg, packet(src, "tcp", port), "accept", "clients of pg-prod")
        for src in ("203.0.112.255", "203.0.114.0", INTERNET_V4, "2001:db8:2::1"):
            final_reject(pg, packet(src, "tcp", port))


def test_client_verdict_names_the_ip_filter_entry(pg: NodePolicy) -> None:
    v = expect(pg, packet(OFFICE6, "tcp", port_of(pg, "pg")), "accept")
    assert "ip_filter[1] of pg-prod" in v.reason, v.reason


def test_clients_are_tcp_only(pg: NodePolicy) -> None:
    final_reject(pg, packet(OFFICE, "udp", port_of(pg, "pg")))


def test_absent_ip_filter_defaults_to_everyone_on_ipv4() -> None:
    doc = spec_doc([service_doc("db", "mysql", [["192.0.2.11"]])])
    policy = compiled(doc, "db-1")
    expect(policy, packet(INTERNET_V4, "tcp", port_of(policy, "mysql")), "accept", "clients")
    final_reject(policy, packet(INTERNET_V6, "tcp", port_of(policy, "mysql")))
    assert not any("IPv6" in w for w in policy.warnings), (
        f"the default ip_filter should not warn about its ::/0: {policy.warnings}")


def kafka_vpc_doc(user_config: dict[str, Any]) -> dict[str, Any]:
    return spec_doc(
        [service_doc("events", "kafka", [["10.20.0.11"], ["10.20.0.12"]],
                     cloud="google-europe-west1", vpc="vpc-eu", user_config=user_config)],
        vpcs=[{"id": "vpc-eu", "cloud": "google-europe-west1", "network_cidr": "10.20.0.0/24",
               "peer_cidrs": ["10.50.0.0/16"]}],
        base_port=20000,
    )


def test_vpc_service_admits_the_vpc_and_peerings_within_the_ip_filter() -> None:
    policy = compiled(kafka_vpc_doc({"ip_filter": ["0.0.0.0/0"]}), "events-1")
    port = port_of(policy, "kafka")
    for src in ("10.20.0.200", "10.50.3.4"):
        expect(policy, packet(src, "tcp", port), "accept", "clients of events")
    for src in (INTERNET_V4, "10.21.0.1", "10.51.0.1", OFFICE):
        final_reject(policy, packet(src, "tcp", port))


def test_vpc_service_narrow_ip_filter_is_intersected_with_the_vpc() -> None:
    policy = compiled(kafka_vpc_doc({"ip_filter": ["10.20.0.0/28", "10.0.0.0/8", OFFICE_V4]}),
                      "events-1")
    port = port_of(policy, "kafka")
    expect(policy, packet("10.20.0.5", "tcp", port), "accept")
    expect(policy, packet("10.20.0.200", "tcp", port), "accept")  # 10/8 ∩ VPC
    expect(policy, packet("10.50.9.9", "tcp", port), "accept")  # 10/8 ∩ peering
    final_reject(policy, packet("10.99.0.1", "tcp", port))  # in 10/8, outside VPC and peers
    final_reject(policy, packet(OFFICE, "tcp", port))  # in ip_filter, outside the VPC
    assert set(policy.set("clients_v4").networks) == {"10.20.0.0/24", "10.50.0.0/16"}
    assert any("outside VPC vpc-eu" in w and "ip_filter[2]" in w for w in policy.warnings), (
        f"expected a warning that ip_filter[2] admits nobody, got {policy.warnings}")


def test_vpc_service_ip_filter_must_also_list_the_peering() -> None:
    policy = compiled(kafka_vpc_doc({"ip_filter": ["10.20.0.0/24"]}), "events-1")
    final_reject(policy, packet("10.50.3.4", "tcp", port_of(policy, "kafka")))


def test_public_access_opens_only_its_component_to_the_ip_filter() -> None:
    doc = kafka_vpc_doc({"ip_filter": ["0.0.0.0/0"], "kafka_rest": True,
                         "public_access": {"kafka_rest": True}})
    policy = compiled(doc, "events-1")
    expect(policy, packet(INTERNET_V4, "tcp", port_of(policy, "kafka_rest")), "accept",
           "clients of events")
    final_reject(policy, packet(INTERNET_V4, "tcp", port_of(policy, "kafka")))
    expect(policy, packet("10.20.0.99", "tcp", port_of(policy, "kafka")), "accept")


def test_public_access_false_keeps_the_component_in_the_vpc() -> None:
    doc = kafka_vpc_doc({"ip_filter": ["0.0.0.0/0"], "public_access": {"kafka": False}})
    policy = compiled(doc, "events-1")
    final_reject(policy, packet(INTERNET_V4, "tcp", port_of(policy, "kafka")))


def test_public_access_kafka_covers_the_sasl_listener() -> None:
    doc = kafka_vpc_doc({"ip_filter": ["0.0.0.0/0"], "public_access": {"kafka": True},
                         "kafka_authentication_methods": {"sasl": True}})
    policy = compiled(doc, "events-1")
    expect(policy, packet(INTERNET_V4, "tcp", port_of(policy, "kafka_sasl")), "accept")
    expect(policy, packet(INTERNET_V4, "tcp", port_of(policy, "kafka")), "accept")


def test_public_access_web_ui_opens_443_to_the_ip_filter() -> None:
    doc = kafka_vpc_doc({"ip_filter": ["0.0.0.0/0"], "kafka_connect": True,
                         "public_access": {"kafka_connect": True}})
    policy = compiled(doc, "events-1")
    expect(policy, packet(INTERNET_V4, "tcp", 443), "accept", "clients of events")
    expect(policy, packet(INTERNET_V4, "tcp", port_of(policy, "kafka_connect")), "accept")
    final_reject(policy, packet(INTERNET_V4, "tcp", port_of(policy, "kafka")))


def ece_doc(ip_filter: list[str], cloud: str = "azure-westeurope") -> dict[str, Any]:
    return spec_doc(
        [service_doc("ledger", "mysql", [["10.30.0.11"], ["10.30.0.12"]], cloud=cloud,
                     vpc="vpc-secure", environment="ece", socks5_proxy="10.30.0.5:1080",
                     user_config={"ip_filter": ip_filter})],
        vpcs=[{"id": "vpc-secure", "cloud": cloud, "network_cidr": "10.30.0.0/24",
               "peer_cidrs": ["10.60.0.0/16"]}],
        base_port=12000,
    )


def test_ece_clients_come_from_the_vpc_and_peerings_within_the_ip_filter() -> None:
    policy = compiled(ece_doc(["10.60.4.0/22", "203.0.113.0/24", "10.30.0.0/25"]), "ledger-1")
    port = port_of(policy, "mysql")
    expect(policy, packet("10.60.5.5", "tcp", port), "accept", "clients of ledger")
    expect(policy, packet("10.30.0.100", "tcp", port), "accept", "clients of ledger")
    final_reject(policy, packet("10.30.0.200", "tcp", port))
    final_reject(policy, packet("10.60.8.1", "tcp", port))
    final_reject(policy, packet(OFFICE, "tcp", port))
    final_reject(policy, packet(INTERNET_V4, "tcp", port))


def test_ipv6_clients_with_enable_ipv6_on_a_supporting_type(pg: NodePolicy) -> None:
    expect(pg, packet(OFFICE6, "tcp", port_of(pg, "pg")), "accept", "clients of pg-prod")


def test_ipv6_clients_rejected_with_enable_ipv6_off_and_plan_warns() -> None:
    for enable in (False, None):
        policy = compiled(pg_doc(enable_ipv6=enable), "pg-prod-1")
        expect(policy, packet(OFFICE, "tcp", port_of(policy, "pg")), "accept")
        final_reject(policy, packet(OFFICE6, "tcp", port_of(policy, "pg")))
        assert any("1 IPv6 entry ignored (enable_ipv6 is off)" in w for w in policy.warnings), (
            f"enable_ipv6={enable}: expected an 'IPv6 entry ignored' warning, got "
            f"{policy.warnings}")


@pytest.mark.parametrize("type_", ["mysql", "opensearch", "grafana", "dragonfly"])
def test_ipv6_clients_rejected_on_types_without_ipv6_support_with_a_warning(type_: str) -> None:
    doc = spec_doc([service_doc("svc", type_, [["192.0.2.11"]],
                                user_config={"ip_filter": [OFFICE_V4, OFFICE_V6, "::/0"]})])
    policy = compiled(doc, "svc-1")
    client_ports = {c.port for c in policy.components if c.route in ("client", "web")}
    assert client_ports, policy.components
    for port in client_ports:
        expect(policy, packet(OFFICE, "tcp", port), "accept", "clients of svc")
        final_reject(policy, packet(OFFICE6, "tcp", port))
    assert any(f"2 IPv6 entries ignored ({type_} does not support IPv6)" in w
               for w in policy.warnings), policy.warnings


def test_plan_cli_prints_the_ipv6_ignored_warning(tmp_path: Any) -> None:
    import json

    from .helpers import run_nodewall

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(pg_doc(enable_ipv6=False)))
    result = run_nodewall("plan", str(path), "--node", "pg-prod-1")
    assert result.returncode == 0, result.stderr
    assert "IPv6 entry ignored" in result.stdout, result.stdout[-2000:]


def test_web_ui_component_serves_443_to_clients() -> None:
    doc = spec_doc([service_doc("dash", "grafana", [["192.0.2.91"]],
                                user_config={"ip_filter": [OFFICE_V4]})])
    policy = compiled(doc, "dash-1")
    expect(policy, packet(OFFICE, "tcp", 443), "accept", "clients of dash")
    final_reject(policy, packet(INTERNET_V4, "tcp", 443))
    final_reject(policy, packet(OFFICE, "tcp", 80))


# 8. Azure


AZURE = "168.63.129.16"


def test_azure_probe_address_is_allowed_everywhere_but_management() -> None:
    policy = compiled(pg_doc(ip_filter=[], cloud="azure-westeurope"), "pg-prod-1")
    expect(policy, packet(AZURE, "tcp", port_of(policy, "pg")), "accept", "Azure")
    expect(policy, packet(AZURE, "tcp", 12345), "accept", "Azure")
    expect(policy, packet(AZURE, "udp", 12345), "accept", "Azure")
    for port in (22, 30287):
        v = expect(policy, packet(AZURE, "tcp", port), "reject")
        assert "management" in v.reason or v.rule == policy.rules_for("in")[-1], v.reason


def test_azure_probe_address_has_no_special_access_on_other_clouds(pg: NodePolicy) -> None:
    final_reject(pg, packet(AZURE, "tcp", 12345))
    final_reject(pg, packet(AZURE, "tcp", port_of(pg, "pg")))


def test_ece_on_azure_still_allows_the_probe_address() -> None:
    policy = compiled(ece_doc([]), "ledger-1")
    expect(policy, packet(AZURE, "tcp", port_of(policy, "mysql")), "accept", "Azure")
    expect(policy, packet(AZURE, "tcp", 22), "reject")


# 9. final reject


@pytest.mark.parametrize("src", [INTERNET_V4, INTERNET_V6, OFFICE])
def test_everything_else_is_rejected_not_dropped(pg: NodePolicy, src: str) -> None:
    for proto, port in (("tcp", 1), ("tcp", 3306), ("tcp", 80), ("udp", 53), ("udp", 65535)):
        final_reject(pg, packet(src, proto, port))  # type: ignore[arg-type]
    final_reject(pg, packet(src, "esp"))
    final_reject(pg, packet(src, "icmp", icmp_type="echo-reply"))


@pytest.mark.parametrize("direction", ["in", "out"])
def test_last_rule_of_each_direction_is_an_unconditional_reject_for_ece(direction: str) -> None:
    policy = compiled(ece_doc([]), "ledger-1")
    last = policy.rules_for(direction)[-1]  # type: ignore[arg-type]
    assert last.action == "reject", f"last {direction} rule: {last}"
    unconditional = type(last)(direction, last.action, last.reason)  # type: ignore[arg-type]
    assert last == unconditional, f"last {direction} rule has conditions: {last}"


def test_no_ingress_rule_drops_except_spoofed_loopback_and_invalid(pg: NodePolicy) -> None:
    drops = [r for r in pg.rules_for("in") if r.action == "drop"]
    for r in drops:
        assert r.ct_states == ("invalid",) or (
            r.interface == "not-loopback" and r.src_set in ("loopback_v4", "loopback_v6")), (
            f"unexpected drop rule {r}")


# the explain command shows the evaluator's verdict and the deciding rule's reason


def test_explain_cli_gives_the_verdict_and_the_deciding_reason(tmp_path: Any) -> None:
    import json

    from typer.testing import CliRunner

    from nodewall.cli.app import app

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(pg_doc()))
    pg_port = port_of(compiled(pg_doc(), "pg-prod-1"), "pg")
    base = ["explain", str(path), "--node", "pg-prod-1", "--proto", "tcp", "--format", "json"]
    cases = [(OFFICE, pg_port, "accept", "clients of pg-prod (ip_filter) (ip_filter[0] of "
                                         "pg-prod)"),
             (OFFICE, 22, "reject", "not allowed: rejected"),
             (MGMT6, 30287, "accept", "management (management network 2001:db8:ff::/64)"),
             (PEER, pg_port, "accept", "cluster peers (cluster peer pg-prod-2)")]
    for src, port, verdict, reason in cases:
        result = CliRunner().invoke(app, [*base, "--src", src, "--dport", str(port)])
        assert result.exit_code == 0, result.output
        got = json.loads(result.output)
        assert (got["verdict"], got["reason"]) == (verdict, reason), (
            f"explain {src} -> {port}: expected {verdict} {reason!r}, got {got}")
    text = CliRunner().invoke(app, ["explain", str(path), "--node", "pg-prod-1", "--proto",
                                    "tcp", "--src", OFFICE, "--dport", "22"])
    assert text.output.splitlines()[0] == "reject: not allowed: rejected", text.output
