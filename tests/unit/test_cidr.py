"""CIDR handling: host-bit normalisation (with a warning), merging of contained and equal
networks, VPC intersection, both families."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodewall.net import cidr

from .helpers import (
    compiled,
    expect,
    final_reject,
    packet,
    port_of,
    run_nodewall,
    service_doc,
    spec_doc,
)


@pytest.mark.parametrize("text, network, host_bits", [
    ("10.0.0.5/24", "10.0.0.0/24", True),
    ("10.0.0.0/24", "10.0.0.0/24", False),
    ("10.0.0.5", "10.0.0.5/32", False),
    ("0.0.0.0/0", "0.0.0.0/0", False),
    ("1.2.3.4/0", "0.0.0.0/0", True),
    ("2001:db8::1/64", "2001:db8::/64", True),
    ("2001:db8::/64", "2001:db8::/64", False),
    ("2001:db8::1/128", "2001:db8::1/128", False),
    ("::/0", "::/0", False),
    ("::2:3", "::2:3/128", False),  # glibc would write it ::0.2.0.3; RFC 5952 says hex
])
def test_parse_normalises_host_bits_and_says_so(text: str, network: str, host_bits: bool) -> None:
    net, bits = cidr.parse(text)
    assert (str(net), bits) == (network, host_bits), f"parse({text!r}) = {net}, {bits}"


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.256/24", "2001:db8::/129", "x",
                                  "10.0.0.0/-1", "fe80::1%eth0/64", "", "10.0.0.0/ 8"])
def test_parse_refuses_what_is_not_a_cidr(text: str) -> None:
    with pytest.raises(ValueError):
        cidr.parse(text)


@settings(max_examples=200, deadline=None)
@given(address=st.ip_addresses(), data=st.data())
def test_parse_agrees_with_ipaddress(address: Any, data: st.DataObject) -> None:
    prefix = data.draw(st.integers(0, address.max_prefixlen))
    text = f"{address}/{prefix}"  # ipaddress writes RFC 5952 text, nodewall's canonical form
    expected = ipaddress.ip_network(text, strict=False)
    if address.version == 6 and address.ipv4_mapped is not None and prefix >= 96:
        with pytest.raises(cidr.NotCanonical) as info:
            cidr.parse(text)
        assert info.value.canonical == f"{address.ipv4_mapped}/{prefix - 96}", info.value
        return
    net, host_bits = cidr.parse(text)
    assert str(net) == str(expected), f"parse({text!r}) = {net}, ipaddress says {expected}"
    assert host_bits == (int(address) != int(expected.network_address)), text


def n(text: str) -> cidr.Net:
    return cidr.parse(text)[0]


def test_reduce_merges_contained_and_equal_networks_keeping_every_reason() -> None:
    merged = cidr.reduce([(n("10.1.0.0/16"), "b"), (n("10.0.0.0/8"), "a"),
                          (n("10.0.0.0/8"), "c"), (n("192.0.2.0/24"), "d"),
                          (n("10.200.3.4/32"), "e")])
    assert [(str(net), sorted(r)) for net, r in merged] == [
        ("10.0.0.0/8", ["a", "b", "c", "e"]), ("192.0.2.0/24", ["d"])], merged


def test_reduce_keeps_families_apart() -> None:
    merged = cidr.reduce([(n("0.0.0.0/0"), "v4"), (n("2001:db8::/32"), "v6"),
                          (n("10.0.0.0/8"), "v4b"), (n("::/0"), "all6")])
    assert [(str(net), sorted(r)) for net, r in merged] == [
        ("0.0.0.0/0", ["v4", "v4b"]), ("::/0", ["all6", "v6"])], merged


def test_reduce_keeps_adjacent_networks_apart() -> None:
    merged = cidr.reduce([(n("10.0.1.0/24"), "b"), (n("10.0.0.0/24"), "a")])
    assert [str(net) for net, _ in merged] == ["10.0.0.0/24", "10.0.1.0/24"]


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.tuples(st.integers(0, 2**16 - 1), st.integers(16, 32)), max_size=12),
       probes=st.lists(st.integers(0, 2**16 - 1), max_size=20))
def test_reduce_covers_exactly_the_union_with_no_nested_pairs(
    items: list[tuple[int, int]], probes: list[int]
) -> None:
    # networks inside 10.0.0.0/16, so that they often nest or coincide
    nets = [ipaddress.IPv4Network(f"{ipaddress.IPv4Address((10 << 24) + v)}/{p}", strict=False)
            for v, p in items]
    merged = cidr.reduce([(n(str(x)), str(i)) for i, x in enumerate(nets)])
    out = [ipaddress.IPv4Network(str(net)) for net, _ in merged]
    for a in out:
        for b in out:
            assert a is b or not a.subnet_of(b), f"{a} inside {b} after reduce: {out}"
    for v in probes:
        addr = ipaddress.IPv4Address((10 << 24) + v)
        assert any(addr in x for x in nets) == any(addr in x for x in out), (
            f"{addr}: in input {nets} != in output {out}")
    assert sorted(r for _, reasons in merged for r in reasons) == sorted(
        str(i) for i in range(len(nets))), "reasons lost"


def test_intersect_with_vpc_bounds() -> None:
    bounds = [n("10.20.0.0/24"), n("10.50.0.0/16"), n("fd00:60::/48")]
    assert [str(x) for x in cidr.intersect(n("0.0.0.0/0"), bounds)] == [
        "10.20.0.0/24", "10.50.0.0/16"]
    assert [str(x) for x in cidr.intersect(n("10.20.0.0/28"), bounds)] == ["10.20.0.0/28"]
    assert [str(x) for x in cidr.intersect(n("10.0.0.0/8"), bounds)] == [
        "10.20.0.0/24", "10.50.0.0/16"]
    assert cidr.intersect(n("203.0.113.0/24"), bounds) == []
    assert [str(x) for x in cidr.intersect(n("::/0"), bounds)] == ["fd00:60::/48"]
    assert [str(x) for x in cidr.intersect(n("fd00:60:0:1::/64"), bounds)] == ["fd00:60:0:1::/64"]
    assert cidr.intersect(n("2001:db8::/32"), bounds) == []


def host_bits_doc() -> dict[str, Any]:
    return spec_doc([service_doc("db", "pg", [["192.0.2.11"]], user_config={
        "ip_filter": ["10.0.0.5/24", "10.0.0.0/8", "10.1.2.0/24", "2001:db8::7/64"],
        "enable_ipv6": True})])


def test_host_bits_are_normalised_in_the_policy_with_a_warning() -> None:
    policy = compiled(host_bits_doc(), "db-1")
    assert policy.set("clients_v4").networks == ("10.0.0.0/8",), policy.set("clients_v4")
    assert policy.set("clients_v6").networks == ("2001:db8::/64",), policy.set("clients_v6")
    warned = [w for w in policy.warnings if "host bits" in w]
    assert any("ip_filter[0]" in w and "10.0.0.0/24" in w for w in warned), policy.warnings
    assert any("ip_filter[3]" in w and "2001:db8::/64" in w for w in warned), policy.warnings
    assert len(warned) == 2, f"only entries 0 and 3 have host bits: {warned}"


def test_merged_entry_keeps_the_reasons_of_every_contained_entry() -> None:
    policy = compiled(host_bits_doc(), "db-1")
    (element,) = policy.set("clients_v4").elements
    assert set(element.reasons) == {"ip_filter[0] of db", "ip_filter[1] of db",
                                    "ip_filter[2] of db"}, element
    v = expect(policy, packet("10.9.9.9", "tcp", port_of(policy, "pg")), "accept")
    assert "ip_filter[1] of db" in v.reason, v.reason


def test_validate_prints_the_host_bits_warning_and_succeeds(tmp_path: Any) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(host_bits_doc()))
    result = run_nodewall("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert ("warning: services[0].user_config.ip_filter[0]: '10.0.0.5/24' has host bits set"
            in result.stderr), result.stderr


def test_vpc_intersection_in_both_families() -> None:
    doc = spec_doc(
        [service_doc("db", "pg", [["10.20.0.11", "fd00:20::11"]], vpc="vpc-a", user_config={
            "ip_filter": ["0.0.0.0/0", "::/0", "fd00:60:0:1::/64", "fd00:99::/48"],
            "enable_ipv6": True})],
        vpcs=[{"id": "vpc-a", "cloud": "aws-eu-west-1", "network_cidr": "10.20.0.0/24",
               "peer_cidrs": ["10.50.0.0/16", "fd00:60::/48"]}])
    policy = compiled(doc, "db-1")
    assert set(policy.set("clients_v4").networks) == {"10.20.0.0/24", "10.50.0.0/16"}
    assert set(policy.set("clients_v6").networks) == {"fd00:60::/48"}
    port = port_of(policy, "pg")
    expect(policy, packet("fd00:60:0:5::1", "tcp", port), "accept", "clients of db")
    final_reject(policy, packet("fd00:99::1", "tcp", port))
    final_reject(policy, packet("2001:db8::1", "tcp", port))
    assert any("ip_filter[3]" in w and "outside VPC" in w for w in policy.warnings), (
        policy.warnings)
