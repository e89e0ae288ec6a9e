"""SPEC section 3, egress: metadata, Azure, standard/byoc accept-all, ece restrictions."""

from __future__ import annotations

from typing import Any

import pytest

from nodewall.policy.model import NodePolicy

from .helpers import (
    INTERNET_V4,
    INTERNET_V6,
    compiled,
    expect,
    final_reject,
    outbound,
    packet,
    spec_doc,
)
from .helpers import service_doc as svc

METADATA = "169.254.169.254"
AZURE = "168.63.129.16"


def doc(environment: str = "standard", cloud: str = "aws-eu-west-1",
        proxy: str = "10.30.0.5:1080") -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if environment == "ece":
        extra["socks5_proxy"] = proxy
    return spec_doc(
        [svc("db", "mysql", [["10.30.0.11", "2001:db8:10::11"], ["10.30.0.12", "2001:db8:10::12"]],
             cloud=cloud, vpc="vpc-a", environment=environment,
             user_config={"ip_filter": ["10.30.0.0/24"]}, **extra)],
        vpcs=[{"id": "vpc-a", "cloud": cloud, "network_cidr": "10.30.0.0/24",
               "peer_cidrs": ["10.60.0.0/16", "fd00:60::/48"]}],
    )


ENVIRONMENTS = [("standard", "aws-eu-west-1"), ("byoc", "google-europe-west1"),
                ("ece", "aws-eu-west-1"), ("ece", "azure-westeurope"),
                ("standard", "azure-westeurope")]


@pytest.fixture(scope="module", params=ENVIRONMENTS, ids=lambda p: f"{p[0]}-{p[1]}")
def any_env(request: pytest.FixtureRequest) -> NodePolicy:
    env, cloud = request.param
    return compiled(doc(env, cloud), "db-1")


@pytest.mark.parametrize("uid", [0, 1000, None])
def test_metadata_ntp_and_dns_for_every_process(any_env: NodePolicy, uid: int | None) -> None:
    expect(any_env, outbound(METADATA, "udp", 123, uid=uid), "accept", "NTP")
    expect(any_env, outbound(METADATA, "udp", 53, uid=uid), "accept", "DNS")
    expect(any_env, outbound(METADATA, "tcp", 53, uid=uid), "accept", "DNS")


def test_metadata_credential_service_only_for_uid_0(any_env: NodePolicy) -> None:
    expect(any_env, outbound(METADATA, "tcp", 80, uid=0), "accept", "uid 0")
    expect(any_env, outbound(METADATA, "tcp", 8080, uid=0), "accept", "uid 0")
    for uid in (1000, 1, None):
        expect(any_env, outbound(METADATA, "tcp", 80, uid=uid), "reject", "metadata")


@pytest.mark.parametrize("uid", [1000, None])
def test_metadata_other_ports_and_protocols_rejected_for_other_processes(
    any_env: NodePolicy, uid: int | None
) -> None:
    expect(any_env, outbound(METADATA, "tcp", 123, uid=uid), "reject", "metadata")
    expect(any_env, outbound(METADATA, "udp", 52, uid=uid), "reject", "metadata")
    expect(any_env, outbound(METADATA, "udp", 67, uid=uid), "reject", "metadata")
    expect(any_env, outbound(METADATA, "icmp", icmp_type="echo-request", uid=uid), "reject")


@pytest.mark.parametrize("env", ["standard", "ece"])
def test_azure_dhcp_and_dns_egress(env: str) -> None:
    policy = compiled(doc(env, "azure-westeurope"), "db-1")
    expect(policy, outbound(AZURE, "udp", 67), "accept", "Azure DHCP")
    expect(policy, outbound(AZURE, "udp", 53), "accept", "Azure DNS")
    expect(policy, outbound(AZURE, "tcp", 53), "accept", "Azure DNS")


def test_azure_other_ports_rejected_in_ece() -> None:
    policy = compiled(doc("ece", "azure-westeurope"), "db-1")
    final_reject(policy, outbound(AZURE, "tcp", 80))
    final_reject(policy, outbound(AZURE, "udp", 68))


def test_azure_address_is_not_special_off_azure_in_ece() -> None:
    policy = compiled(doc("ece", "aws-eu-west-1"), "db-1")
    final_reject(policy, outbound(AZURE, "udp", 67))
    final_reject(policy, outbound(AZURE, "udp", 53))


@pytest.mark.parametrize("env", ["standard", "byoc"])
def test_standard_and_byoc_accept_all_other_egress(env: str) -> None:
    policy = compiled(doc(env), "db-1")
    for pkt in (outbound(INTERNET_V4, "tcp", 443), outbound(INTERNET_V6, "udp", 53),
                outbound(INTERNET_V4, "esp"), outbound("10.99.0.1", "tcp", 25),
                outbound(INTERNET_V4, "icmp", icmp_type="echo-request")):
        v = expect(policy, pkt, "accept", f"egress allowed ({env} environment)")
        assert v.rule == policy.rules_for("out")[-1], v


@pytest.fixture(scope="module")
def ece() -> NodePolicy:
    return compiled(doc("ece"), "db-1")


def test_ece_rejects_the_internet(ece: NodePolicy) -> None:
    for pkt in (outbound(INTERNET_V4, "tcp", 443), outbound(INTERNET_V4, "udp", 53),
                outbound(INTERNET_V6, "tcp", 443), outbound(INTERNET_V4, "esp"),
                outbound(INTERNET_V4, "tcp", 443, uid=0),
                outbound(INTERNET_V4, "icmp", icmp_type="echo-request")):
        final_reject(ece, pkt)


def test_ece_allows_the_vpc_and_its_peerings(ece: NodePolicy) -> None:
    for dst in ("10.30.0.200", "10.60.9.9", "fd00:60::9"):
        expect(ece, outbound(dst, "tcp", 5432), "accept", "ece: the VPC")
        expect(ece, outbound(dst, "udp", 9999), "accept", "ece: the VPC")
    final_reject(ece, outbound("10.31.0.1", "tcp", 5432))
    final_reject(ece, outbound("fd00:61::1", "tcp", 5432))


def test_ece_allows_cluster_peers_outside_the_vpc(ece: NodePolicy) -> None:
    expect(ece, outbound("2001:db8:10::12", "tcp", 3306), "accept", "cluster peer")
    expect(ece, outbound("2001:db8:10::12", "esp"), "accept", "cluster peer")
    final_reject(ece, outbound("2001:db8:10::13", "tcp", 3306))


def test_ece_allows_the_socks5_proxy_port_only(ece: NodePolicy) -> None:
    # inside the VPC anyway; the proxy rule also works outside it (next test)
    expect(ece, outbound("10.30.0.5", "tcp", 1080), "accept")


@pytest.mark.parametrize("proxy, host", [("100.64.0.5:1080", "100.64.0.5"),
                                         ("[2001:db8:99::5]:1080", "2001:db8:99::5")])
def test_ece_socks5_proxy_outside_the_vpc_for_every_process(proxy: str, host: str) -> None:
    policy = compiled(doc("ece", proxy=proxy), "db-1")
    for uid in (1000, 0, None):
        expect(policy, outbound(host, "tcp", 1080, uid=uid), "accept", "SOCKS5 proxy")
    final_reject(policy, outbound(host, "tcp", 1081))
    final_reject(policy, outbound(host, "udp", 1080))


def test_ece_established_and_loopback_egress(ece: NodePolicy) -> None:
    expect(ece, outbound(INTERNET_V4, "tcp", 443, state="established"), "accept", "established")
    expect(ece, outbound(INTERNET_V6, "udp", 53, state="related"), "accept", "established")
    expect(ece, packet("127.0.0.1", "tcp", 80, dst="127.0.0.1", direction="out",
                       interface="loopback"), "accept", "loopback")


@pytest.mark.parametrize("icmp_type", ["destination-unreachable", "time-exceeded",
                                       "parameter-problem"])
def test_ece_icmp_errors_egress(ece: NodePolicy, icmp_type: str) -> None:
    expect(ece, outbound(INTERNET_V4, "icmp", icmp_type=icmp_type), "accept", "ICMP")
    expect(ece, outbound(INTERNET_V6, "icmp", icmp_type=icmp_type), "accept", "ICMP")


@pytest.mark.parametrize("icmp_type", ["packet-too-big", "nd-router-solicit",
                                       "nd-neighbor-solicit", "nd-neighbor-advert"])
def test_ece_icmpv6_packet_too_big_and_neighbour_discovery_egress(
    ece: NodePolicy, icmp_type: str
) -> None:
    for dst in (INTERNET_V6, "ff02::1"):
        expect(ece, outbound(dst, "icmp", icmp_type=icmp_type), "accept", "ICMP")


def test_ece_egress_rejects_unsolicited_pings_out(ece: NodePolicy) -> None:
    final_reject(ece, outbound(INTERNET_V6, "icmp", icmp_type="echo-request"))


def test_egress_never_drops(any_env: NodePolicy) -> None:
    drops = [r for r in any_env.rules_for("out") if r.action == "drop"]
    assert not drops, f"egress drop rules in {any_env.environment}: {drops}"
