"""SPEC section 2, one written form: a CIDR or address in any other spelling is refused with
its canonical form shown (docs/design.md: what canonical means); node addresses are unicast
host addresses; types are exact (no "14000" for a number, no 1 for a boolean)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodewall.errors import SpecError
from nodewall.net import cidr
from nodewall.spec.load import parse_spec

from .helpers import service_doc, spec_doc


def doc_with(ip_filter: list[Any] | None = None, addresses: list[str] | None = None,
             **service: Any) -> dict[str, Any]:
    user_config = {"ip_filter": ip_filter} if ip_filter is not None else None
    return spec_doc([service_doc("pg", "pg", [addresses or ["192.0.2.11"]],
                                 user_config=user_config, **service)])


def errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    return info.value.lines()


def test_the_netmask_example_of_the_issue() -> None:
    doc = doc_with(["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.0.0.0/255.0.0.0"])
    assert errors(doc) == ["services[0].user_config.ip_filter[3]: '10.0.0.0/255.0.0.0' is not "
                           "in canonical form; write '10.0.0.0/8'"]


@pytest.mark.parametrize("written, canonical", [
    ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),  # netmask
    ("10.0.0.0/0.255.255.255", "10.0.0.0/8"),  # hostmask
    ("10.0.0.0/08", "10.0.0.0/8"),  # zero-padded prefix
    ("10.0.0.0/024", "10.0.0.0/24"),
    ("010.0.0.0/8", "10.0.0.0/8"),  # zero-padded octet (octal to inet_aton)
    ("10.0.0.05", "10.0.0.5"),
    ("2001:DB8::/32", "2001:db8::/32"),  # upper case
    ("2001:0db8::/32", "2001:db8::/32"),  # leading zeros in a group
    ("2001:db8:0:0:0:0:0:0/32", "2001:db8::/32"),  # uncompressed
    ("2001:db8::0:1/128", "2001:db8::1/128"),
    ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),  # the longer run is the one compressed
    ("2001:db8::1:0:0:1", "2001:db8::1:0:0:1"),  # a tie: the first run (here no change)
    ("::ffff:203.0.113.0/120", "203.0.113.0/24"),  # IPv4-mapped: the IPv4 network
    ("::ffff:cb00:7100/120", "203.0.113.0/24"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("::0.2.0.3", "::2:3"),  # never dotted
])
def test_other_spellings_are_refused_with_the_canonical_form(written: str, canonical: str) -> None:
    if written == canonical:
        cidr.parse(written)
        return
    with pytest.raises(cidr.NotCanonical) as info:
        cidr.parse(written)
    assert info.value.canonical == canonical, info.value
    cidr.parse(canonical)  # what the error says to write is read
    with pytest.raises(cidr.NotCanonical):
        cidr.parse_many(["10.0.0.0/8", written])
    assert [str(e) for e in errors(doc_with([written]))] == [
        f"services[0].user_config.ip_filter[0]: {info.value}"]


@pytest.mark.parametrize("text", ["10.0.0.0/+8", "10.0.0.0/٨", "10.0.0.0/8 ", " 10.0.0.0/8",
                                  "10.0.0.0/255.0.255.0", "1.2.3", "0x0a.0.0.0/8", "1.2.3.4/",
                                  "2001:db8::/0x20", "::ffff:1.2.3.4/2001:db8::"])
def test_what_names_no_network_is_not_a_cidr(text: str) -> None:
    with pytest.raises(ValueError) as info:
        cidr.parse(text)
    assert not isinstance(info.value, cidr.NotCanonical), info.value


def test_host_bits_stay_a_warning_not_an_error() -> None:
    spec = parse_spec(doc_with(["10.0.0.5/24", "2001:db8::7/64"]))
    assert spec.services[0].user_config.ip_filter_host_bits == (0, 1)


def test_mapped_ipv6_cannot_hide_a_duplicate_node_address() -> None:
    doc = spec_doc([service_doc("a", "pg", [["192.0.2.11"]]),
                    service_doc("b", "pg", [["::ffff:192.0.2.11"]])])
    assert errors(doc) == ["services[1].nodes[0].addresses[0]: '::ffff:192.0.2.11' is not in "
                           "canonical form (an IPv4-mapped IPv6 address is the IPv4 address); "
                           "write '192.0.2.11'"]


@pytest.mark.parametrize("address, why", [
    ("0.0.0.0", "the unspecified address"), ("::", "the unspecified address"),
    ("0.1.2.3", "in 0.0.0.0/8 (this network)"), ("127.0.0.1", "a loopback address"),
    ("127.9.9.9", "a loopback address"), ("::1", "a loopback address"),
    ("169.254.169.254", "the metadata address"), ("169.254.1.1", "a link-local address"),
    ("fe80::1", "a link-local address"), ("febf::1", "a link-local address"),
    ("224.0.0.1", "a multicast address"), ("239.255.255.255", "a multicast address"),
    ("ff02::1", "a multicast address"), ("255.255.255.255", "the broadcast address"),
    ("240.0.0.1", "in 240.0.0.0/4 (reserved)"),
])
def test_node_addresses_are_unicast_host_addresses(address: str, why: str) -> None:
    assert errors(doc_with(addresses=["192.0.2.11", address])) == [
        f"services[0].nodes[0].addresses[1]: {address!r} is {why}, not a node's unicast address"]


@pytest.mark.parametrize("address", ["192.0.2.11", "10.0.0.1", "100.64.0.1", "172.16.0.1",
                                     "2001:db8::11", "fd00::1", "fec0::1", "223.255.255.254",
                                     "1.0.0.0", "169.253.255.255", "169.255.0.0"])
def test_ordinary_host_addresses_are_accepted(address: str) -> None:
    parse_spec(doc_with(addresses=[address]))


@pytest.mark.parametrize("proxy, message", [
    ("[10.20.0.5]:1080", "'[10.20.0.5]:1080' is not in canonical form; write '10.20.0.5:1080'"),
    ("2001:db8::5:1080", "write '[2001:db8::5]:1080'"),
    ("[2001:DB8::5]:1080", "write '[2001:db8::5]:1080'"),
    ("10.20.0.5:01080", "write '10.20.0.5:1080'"),
    ("127.0.0.1:1080", "the proxy's address is a loopback address"),
    ("10.20.0.5:١٠٨٠", "is not an ADDRESS:PORT"),
])
def test_socks5_proxy_has_one_written_form(proxy: str, message: str) -> None:
    doc = spec_doc([service_doc("e", "pg", [["10.20.0.11"]], vpc="vpc-a", environment="ece",
                                socks5_proxy=proxy)],
                   vpcs=[{"id": "vpc-a", "cloud": "aws-eu-west-1",
                          "network_cidr": "10.20.0.0/24"}])
    found = errors(doc)
    assert len(found) == 1 and found[0].startswith("services[0].socks5_proxy: "), found
    assert message in found[0], found


@pytest.mark.parametrize("path, value, fragment", [
    ("project.base_port", "14000", "valid integer"),
    ("project.base_port", True, "valid integer"),
    ("project.base_port", 14000.0, "valid integer"),
    ("services.0.ports.pg", "15000", "valid integer"),
    ("services.0.user_config.enable_ipv6", 1, "valid boolean"),
    ("services.0.user_config.enable_ipv6", "true", "valid boolean"),
    ("services.0.user_config.public_access.pg", "yes", "valid boolean"),
    ("services.0.nodes", [{"name": "pg-1", "addresses": ("192.0.2.11",)}], "valid list"),
    ("project.name", 7, "valid string"),
])
def test_types_are_exact(path: str, value: Any, fragment: str) -> None:
    doc = doc_with(["10.0.0.0/8"])
    target: Any = doc
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        target = target.setdefault(key, {}) if isinstance(target, dict) else target[key]
    target[keys[-1]] = value
    dotted = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
    found = errors(doc)
    assert any(e.startswith(dotted) and fragment in e for e in found), found


def test_every_canonical_error_is_reported_at_once() -> None:
    doc = doc_with(["10.0.0.0/08", "2001:DB8::/32", "bad"], addresses=["127.0.0.1"])
    doc["platform"]["management_networks"] = ["198.51.100.0/255.255.255.240"]
    doc["project"]["base_port"] = "14000"
    paths = [e.split(": ")[0] for e in errors(doc)]
    assert sorted(paths) == sorted([
        "platform.management_networks[0]", "project.base_port",
        "services[0].user_config.ip_filter[0]", "services[0].user_config.ip_filter[1]",
        "services[0].user_config.ip_filter[2]", "services[0].nodes[0].addresses[0]"]), paths


_SPELLINGS = st.sampled_from(["upper", "pad", "expand", "mask", "prefix0"])


def _respell(address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int,
             how: str) -> str:
    """Another written form of the same network, where the family has one."""
    if address.version == 4:
        octets = str(address).split(".")
        if how == "pad":
            return ".".join(o.zfill(3) for o in octets) + f"/{prefix}"
        if how == "mask":
            return f"{address}/{ipaddress.IPv4Network(f'0.0.0.0/{prefix}').netmask}"
        return f"{address}/0{prefix}"
    if how == "upper":
        return f"{str(address).upper()}/{prefix}"
    if how == "expand" or how == "pad":
        return f"{address.exploded}/{prefix}"
    return f"{address}/0{prefix}"


@settings(max_examples=300, deadline=None)
@given(address=st.ip_addresses(), data=st.data(), how=_SPELLINGS)
def test_any_other_spelling_points_to_the_same_network(address: Any, data: st.DataObject,
                                                        how: str) -> None:
    prefix = data.draw(st.integers(0, address.max_prefixlen))
    text = _respell(address, prefix, how)
    canonical = f"{address}/{prefix}"
    if address.version == 6 and address.ipv4_mapped is not None and prefix >= 96:
        canonical = f"{address.ipv4_mapped}/{prefix - 96}"
    if text == canonical:  # e.g. upper case of an address without letters
        assert cidr.parse(text) == cidr.parse_many([text]).parsed[0]
        return
    with pytest.raises(cidr.NotCanonical) as info:
        cidr.parse(text)
    assert info.value.canonical == canonical, (text, info.value)
    with pytest.raises(cidr.NotCanonical):
        cidr.parse_many([text])
    net, _ = cidr.parse(canonical)
    expected = ipaddress.ip_network(canonical, strict=False)
    assert str(net) == str(expected), (text, net, expected)
