"""Hypothesis strategies for valid deployment specs (SPEC section 2), as plain dicts.

`deployment_specs()` draws documents that `nodewall.spec.parse_spec` accepts: 1..N services of
any catalogue type, in the public network or in a VPC, standard/byoc/ece, with mixed ip_filter
entries (strings and objects, both families, host bits set now and then, hostile descriptions),
per-type toggles, public_access, port pins and valid integrations. Node addresses are drawn
from the ranges the caller gives, so kernel tests can draw addresses they can assign inside
network namespaces:

    from strategies import deployment_specs, node_names

    @given(data=st.data())
    def test_x(data):
        doc = data.draw(deployment_specs(node_range="10.99.0.0/24", node_range_v6=None))
        node = data.draw(node_names(doc))

Everything here is data: no nodewall module beyond the catalogue (read for types, components
and integration rules) is used, so a generated spec does not depend on the code under test.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st

from nodewall import catalogue
from nodewall.catalogue.ports import RESERVED_PORTS

PROVIDERS = ("aws", "google", "azure", "do", "upcloud")
#: Ports a pin must never take (fixed ports of SPEC section 4, and 80).
RESERVED = frozenset(RESERVED_PORTS)
MANAGEMENT_CHOICES = ("198.51.100.0/28", "2001:db8:ff::/64", "192.0.2.240/29", "10.250.0.0/16")
#: Customer text that must stay data: quotes, newlines, rule syntax, shell, markup.
HOSTILE_DESCRIPTIONS = (
    '"; flush ruleset; accept #',
    "$(rm -rf /)",
    "\n}",
    "`reboot`",
    "' OR 1=1 --",
    "} accept; table inet x {",
    "-j ACCEPT\n-A INPUT -j ACCEPT",
    "[bold red]markup[/]",
    "\x1b[2Joffice\x00",
    "office \"HQ\"; v6",
)

AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")

#: Strategies are built once and reused: building one per draw costs more than drawing.
_BOOL = st.booleans()
_DESCRIPTIONS = st.one_of(st.sampled_from(HOSTILE_DESCRIPTIONS), st.text(max_size=40))


@functools.cache
def _int(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


def _pick(draw: st.DrawFn, items: Sequence[T]) -> T:
    return items[draw(_int(0, len(items) - 1))]


def descriptions() -> st.SearchStrategy[str]:
    """Free customer text up to 1024 characters, hostile samples included."""
    return _DESCRIPTIONS


def _network(draw: st.DrawFn, family: int | None, near: Sequence[AnyNetwork]) -> str:
    fam = family if family is not None else _pick(draw, (4, 4, 6))
    bits = 32 if fam == 4 else 128
    candidates = [n for n in near if n.version == fam]
    use_near = bool(draw(_BOOL))
    if candidates and use_near:
        base = _pick(draw, candidates)
        value = int(base.network_address) + draw(_int(0, base.num_addresses - 1))
        prefix = draw(_int(max(base.prefixlen - 4, 0), bits))
    else:
        value = draw(_int(0, (1 << bits) - 1))
        prefix = _pick(draw, (0, 8, 16, 24, 28, 32) if fam == 4 else (0, 32, 48, 64, 128))
    keep_host_bits = draw(_int(0, 9)) == 0
    if not keep_host_bits:
        value &= ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
    address = ipaddress.IPv4Address(value) if fam == 4 else ipaddress.IPv6Address(value)
    return f"{address}/{prefix}"


@st.composite
def networks(draw: st.DrawFn, family: int | None = None, near: Sequence[str] = ()) -> str:
    """A CIDR string, sometimes with host bits set, often inside or around one of `near`."""
    return _network(draw, family, [ipaddress.ip_network(n) for n in near])


def _ip_filter(draw: st.DrawFn, near: Sequence[AnyNetwork]) -> list[Any]:
    items: list[Any] = []
    for _ in range(draw(_int(0, 6))):
        if draw(_int(0, 3)) == 0:
            net = _pick(draw, ("0.0.0.0/0", "::/0", "203.0.113.0/24", "10.0.0.0/8"))
        else:
            net = _network(draw, None, near)
        form = draw(_int(0, 2))
        if form == 0:
            items.append(net)
        elif form == 1:
            items.append({"network": net})
        else:
            items.append({"network": net, "description": draw(_DESCRIPTIONS)})
    return items


@st.composite
def ip_filters(draw: st.DrawFn, near: Sequence[str] = ()) -> list[Any]:
    """An ip_filter list: CIDR strings and {network, description?} objects, mixed."""
    return _ip_filter(draw, [ipaddress.ip_network(n) for n in near])


def _hosts(network: AnyNetwork) -> tuple[int, int]:
    """(first, last) usable host integers of a node range."""
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.version == 4 and network.prefixlen < 31:
        first, last = first + 1, last - 1
    elif network.version == 6 and network.prefixlen < 127:
        first += 1
    return first, last


@functools.cache
def _offsets(first: int, last: int, count: int) -> st.SearchStrategy[list[int]]:
    return st.lists(_int(first, last), min_size=count, max_size=count, unique=True)


def _unique_addresses(draw: st.DrawFn, node_range: str, count: int) -> list[str]:
    net = ipaddress.ip_network(node_range)
    first, last = _hosts(net)
    if last - first + 1 < count:
        raise ValueError(f"node range {node_range} holds fewer than {count} addresses")
    values = draw(_offsets(first, last, count))
    make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return [str(make(v)) for v in values]


def _integration_candidates(services: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every integration the catalogue allows between these services."""
    out: list[dict[str, str]] = []
    for kind in catalogue.integration_types().values():
        for src in services:
            if kind.connector is None:
                out.append({"type": kind.name, "source": src["name"]})
                continue
            for dst in services:
                if dst is src:
                    continue
                ends = {"source": src, "dest": dst}
                target = catalogue.service_type(ends[kind.target]["type"])
                if kind.target_types is not None and target.name not in kind.target_types:
                    continue
                if kind.reach is not None and not catalogue.reached_components(kind, target):
                    continue
                out.append({"type": kind.name, "source": src["name"], "dest": dst["name"]})
    return out


def _user_config(draw: st.DrawFn, type_name: str, ece: bool,
                 near: Sequence[AnyNetwork]) -> dict[str, Any]:
    stype = catalogue.service_type(type_name)
    config: dict[str, Any] = {}
    if draw(_int(0, 4)) > 0:
        config["ip_filter"] = _ip_filter(draw, near)
    if stype.ipv6:
        enable = _pick(draw, (None, True, False))
        if enable is not None:
            config["enable_ipv6"] = enable
    if not ece and stype.public_access_keys and draw(_BOOL):
        config["public_access"] = {k: draw(_BOOL) for k in stype.public_access_keys
                                   if draw(_BOOL)}
    for toggle in stype.toggles:
        head, _, tail = toggle.partition(".")
        if not draw(_BOOL):
            continue
        if tail:
            config.setdefault(head, {})[tail] = draw(_BOOL)
        else:
            config[head] = draw(_BOOL)
    return config


def _pins(draw: st.DrawFn, type_name: str) -> dict[str, int]:
    names = [c.name for c in catalogue.service_type(type_name).port_components]
    pins: dict[str, int] = {}
    if not names or draw(_int(0, 3)) > 0:
        return pins
    for name in names:
        port = draw(_int(10000, 30000))
        if draw(_BOOL) and port not in pins.values() and port not in RESERVED:
            pins[name] = port
    return pins


@st.composite
def deployment_specs(
    draw: st.DrawFn,
    node_range: str = "10.0.0.0/16",
    node_range_v6: str | None = "fd00:a::/64",
    *,
    max_services: int = 3,
    max_nodes: int = 3,
    types: Sequence[str] | None = None,
    environments: Sequence[str] = ("standard", "byoc", "ece"),
) -> dict[str, Any]:
    """A valid deployment spec document. Node addresses come from `node_range` (every node has
    one) and, when given, `node_range_v6` (some nodes also get one); every address is unique.
    `types` limits the service types, `environments` the environments drawn (ece only for
    services in a VPC)."""
    type_names = sorted(types or catalogue.service_types())
    vpcs: list[dict[str, Any]] = []
    for i in range(draw(_int(0, 2))):
        vpc: dict[str, Any] = {
            "id": f"vpc-{i}", "cloud": f"{_pick(draw, PROVIDERS)}-region{i}",
            "network_cidr": f"10.{100 + i}.{draw(_int(0, 255))}.0/24",
        }
        peers: list[str] = []
        for _ in range(draw(_int(0, 2))):
            kind = draw(_int(0, 2))
            peer = (f"172.{16 + draw(_int(0, 15))}.0.0/16" if kind == 0
                    else f"192.168.{draw(_int(0, 255))}.0/24" if kind == 1 else "fd00:60::/48")
            if peer not in peers:
                peers.append(peer)
        if peers:
            vpc["peer_cidrs"] = peers
        vpcs.append(vpc)

    n_services = draw(_int(1, max_services))
    node_counts = [draw(_int(1, max_nodes)) for _ in range(n_services)]
    total = sum(node_counts)
    v4 = _unique_addresses(draw, node_range, total)
    v6 = _unique_addresses(draw, node_range_v6, total) if node_range_v6 else []
    near = [ipaddress.ip_network(n) for n in (
        node_range, *([node_range_v6] if node_range_v6 else []),
        *(v["network_cidr"] for v in vpcs), *(p for v in vpcs for p in v.get("peer_cidrs", ())))]

    services: list[dict[str, Any]] = []
    k = 0
    for i, count in enumerate(node_counts):
        type_name = _pick(draw, type_names)
        name = f"s{i}-{type_name.replace('_', '-')}"
        vpc_choice = _pick(draw, [None, *vpcs]) if vpcs else None
        envs = [e for e in environments if e != "ece" or vpc_choice is not None]
        env = _pick(draw, envs) if envs else "standard"
        cloud = (vpc_choice["cloud"] if vpc_choice is not None
                 else f"{_pick(draw, PROVIDERS)}-region9")
        service: dict[str, Any] = {"name": name, "type": type_name, "cloud": cloud}
        if vpc_choice is not None:
            service["vpc"] = vpc_choice["id"]
        if env != "standard" or draw(_BOOL):
            service["environment"] = env
        if vpc_choice is not None and env == "ece":
            vpc_net = ipaddress.ip_network(vpc_choice["network_cidr"])
            service["socks5_proxy"] = _pick(draw, (
                f"{vpc_net.network_address + draw(_int(1, 254))}:1080",
                "100.64.0.5:3128", "[2001:db8:99::5]:1080"))
        service["user_config"] = _user_config(draw, type_name, env == "ece", near)
        pins = _pins(draw, type_name)
        if pins:
            service["ports"] = pins
        nodes = []
        for j in range(count):
            addresses = [v4[k]]
            with_v6 = bool(draw(_BOOL))
            if v6 and with_v6:
                addresses.append(v6[k])
            k += 1
            nodes.append({"name": f"{name}-{j + 1}", "addresses": addresses})
        service["nodes"] = nodes
        services.append(service)

    project: dict[str, Any] = {"name": "proj"}
    if draw(_BOOL):
        # at most 29000, so that any type's block of ports fits below 30000
        project["base_port"] = draw(_int(10000, 29000))
    management = [n for n in MANAGEMENT_CHOICES if draw(_BOOL)] or [MANAGEMENT_CHOICES[0]]
    doc: dict[str, Any] = {
        "platform": {"management_networks": management},
        "project": project,
        "services": services,
    }
    if vpcs:
        doc["vpcs"] = vpcs
    candidates = _integration_candidates(services)
    integrations: list[dict[str, str]] = []
    for _ in range(draw(_int(0, 3)) if candidates else 0):
        chosen = _pick(draw, candidates)
        if chosen not in integrations:
            integrations.append(chosen)
    if integrations:
        doc["integrations"] = integrations
    return doc


def node_names(doc: dict[str, Any]) -> st.SearchStrategy[str]:
    """One node of a generated spec."""
    return st.sampled_from([n["name"] for s in doc["services"] for n in s["nodes"]])
