"""A well-formed spec document read without pydantic, for `nodewall validate`.

Importing pydantic and building the spec models (`nodewall.spec.model`) costs 150-250 ms, most
of a `validate`. `read_well_formed` checks a parsed document against the same structure (keys,
exact types, lengths, name patterns, ranges, CIDRs, addresses, proxies, service and integration
types) and, when every field is surely valid, returns plain objects with the attributes the
cross-field rules (`nodewall.spec.rules`) and the warnings (`nodewall.spec.warnings`) read, the
defaults filled in as the models fill them. On anything it is not sure of it returns None and
the caller validates with the models, which word every error; so it can only say "valid" of a
document the models accept (tests/unit/test_quick_spec.py holds it to that), never an error.
It never compiles, allocates or touches a kernel; the compiler and the server keep the models.
"""

from __future__ import annotations

import re
from functools import cached_property
from itertools import compress
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from nodewall import catalogue
from nodewall.catalogue.ports import PORT_MAX, PORT_MIN
from nodewall.net import cidr
from nodewall.spec.limits import MAX_DESCRIPTION_CHARS, MAX_IP_FILTER, MAX_NETWORK_CHARS
from nodewall.spec.vocabulary import (
    DEFAULT_IP_FILTER,
    ENVIRONMENTS,
    IDENTIFIER_PATTERN,
    NAME_PATTERN,
)

if TYPE_CHECKING:
    from nodewall.spec import model

_NAME = re.compile(NAME_PATTERN.removeprefix("^").removesuffix("$"))
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN.removeprefix("^").removesuffix("$"))
_ENTRY_KEYS = frozenset({"network", "description"})


class _NotSure(Exception):
    """Some field may be invalid: the models must read the document."""


def _mapping(value: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    if type(value) is not dict or not set(required) <= value.keys() or not value.keys() <= {
            *required, *optional}:
        raise _NotSure
    return value


def _list(value: Any, min_length: int = 0) -> list[Any]:
    if type(value) is not list or len(value) < min_length:
        raise _NotSure
    return value


def _str(value: Any, pattern: re.Pattern[str] | None = None) -> str:
    if type(value) is not str or (pattern is not None and not pattern.fullmatch(value)):
        raise _NotSure
    return value


def _bool(value: Any, none: bool = True) -> bool | None:
    if not (type(value) is bool or (none and value is None)):
        raise _NotSure
    return value


def _int(value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _NotSure
    return value


def _cidr(value: Any) -> str:
    try:
        cidr.parse(_str(value))
    except ValueError:
        raise _NotSure from None
    return value  # type: ignore[no-any-return]


def _host_address(value: Any) -> str:
    try:
        family, number = cidr.parse_address(_str(value))
    except ValueError:
        raise _NotSure from None
    if cidr.not_a_host(family, number) is not None:
        raise _NotSure
    return value  # type: ignore[no-any-return]


def _proxy(value: Any) -> str | None:
    if value is None:
        return None
    try:
        host, _ = cidr.parse_host_port(_str(value))
        if cidr.not_a_host(*cidr.parse_address(host)) is not None:
            raise _NotSure
    except ValueError:
        raise _NotSure from None
    return value  # type: ignore[no-any-return]


class Plain:
    """Fields as attributes, like a model instance (nothing else of one)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class IpFilterEntry(NamedTuple):
    network: str
    description: str | None


class Vpc(Plain):
    id: str
    cloud: str
    network_cidr: str
    peer_cidrs: list[str]

    @cached_property
    def networks(self) -> tuple[tuple[cidr.Net, str], ...]:
        return tuple((cidr.parse(n)[0], n) for n in (self.network_cidr, *self.peer_cidrs))


class UserConfig(Plain):
    ip_filter: list[IpFilterEntry]
    model_fields_set: set[str]

    @cached_property
    def parsed_ip_filter(self) -> tuple[tuple[cidr.Net, bool], ...]:
        return tuple(cidr.parse(e.network) for e in self.ip_filter)

    @cached_property
    def ip_filter_networks(self) -> tuple[str, ...]:
        return tuple(str(net) for net, _ in self.parsed_ip_filter)

    @cached_property
    def ip_filter_ipv6(self) -> int:
        return sum(net.family == 6 for net, _ in self.parsed_ip_filter)

    @cached_property
    def ip_filter_host_bits(self) -> tuple[int, ...]:
        parsed = self.parsed_ip_filter
        return tuple(compress(range(len(parsed)), map(itemgetter(1), parsed)))

    def setting(self, dotted: str) -> bool | None:
        head, _, tail = dotted.partition(".")
        value: Any = getattr(self, head, None)
        if tail and value is not None:
            value = getattr(value, tail)
        return None if value is None else bool(value)


class ServiceSpec(Plain):
    name: str
    cloud: str
    nodes: list[Any]

    @property
    def provider(self) -> str:
        return self.cloud.split("-", 1)[0]


class DeploymentSpec(Plain):
    services: list[ServiceSpec]
    vpcs: list[Vpc]

    def service(self, name: str) -> ServiceSpec:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    def vpc(self, vpc_id: str) -> Vpc:
        for v in self.vpcs:
            if v.id == vpc_id:
                return v
        raise KeyError(vpc_id)

    def node(self, name: str) -> tuple[ServiceSpec, Any]:
        for s in self.services:
            for n in s.nodes:
                if n.name == name:
                    return s, n
        raise KeyError(name)

    @property
    def node_names(self) -> list[str]:
        return [n.name for s in self.services for n in s.nodes]


def _ip_filter(value: Any) -> list[IpFilterEntry]:
    items = _list(value)
    if len(items) > MAX_IP_FILTER:
        raise _NotSure
    entries = []
    for item in items:  # up to 8000: one pass, no call per entry
        if type(item) is str:
            network, description = item, None
        else:
            if type(item) is not dict or "network" not in item or not item.keys() <= _ENTRY_KEYS:
                raise _NotSure
            network, description = item["network"], item.get("description")
            if type(network) is not str or not (description is None or (
                    type(description) is str and len(description) <= MAX_DESCRIPTION_CHARS)):
                raise _NotSure
        if len(network) > MAX_NETWORK_CHARS:
            raise _NotSure
        entries.append(IpFilterEntry(network, description))
    return entries


def _user_config(value: Any) -> UserConfig:
    given = _mapping(value, (), ("ip_filter", "enable_ipv6", "public_access", "kafka_rest",
                                 "schema_registry", "kafka_connect",
                                 "kafka_authentication_methods", "opensearch_dashboards"))
    public = given.get("public_access", {})
    if type(public) is not dict:
        raise _NotSure
    for key, on in public.items():
        _str(key, _IDENTIFIER)
        _bool(on, none=False)
    kam = given.get("kafka_authentication_methods")
    if kam is not None:
        kam = _mapping(kam, (), ("certificate", "sasl"))
        kam = Plain(certificate=_bool(kam.get("certificate", True), none=False),
                    sasl=_bool(kam.get("sasl", False), none=False))
    dashboards = given.get("opensearch_dashboards")
    if dashboards is not None:
        dashboards = Plain(enabled=_bool(_mapping(dashboards, (), ("enabled",)).get(
            "enabled", True), none=False))
    ip_filter = (_ip_filter(given["ip_filter"]) if "ip_filter" in given else
                 [IpFilterEntry(n, None) for n in DEFAULT_IP_FILTER])
    try:
        parsed = cidr.parse_many([e.network for e in ip_filter])
    except ValueError:
        raise _NotSure from None
    config = UserConfig(
        ip_filter=ip_filter, enable_ipv6=_bool(given.get("enable_ipv6")), public_access=public,
        kafka_rest=_bool(given.get("kafka_rest")),
        schema_registry=_bool(given.get("schema_registry")),
        kafka_connect=_bool(given.get("kafka_connect")),
        kafka_authentication_methods=kam, opensearch_dashboards=dashboards,
        model_fields_set=set(given))
    if "ip_filter" in given:  # what the model keeps from its one-pass check, the same way
        config.__dict__.update(parsed_ip_filter=tuple(parsed.parsed),
                               ip_filter_networks=tuple(parsed.texts), ip_filter_ipv6=parsed.ipv6)
        if not parsed.host_bits:
            config.__dict__["ip_filter_host_bits"] = ()
    return config


def _service(value: Any) -> ServiceSpec:
    given = _mapping(value, ("name", "type", "cloud"), (
        "vpc", "environment", "socks5_proxy", "user_config", "ports", "nodes"))
    kind = _str(given["type"], _IDENTIFIER)
    if kind not in catalogue.service_types():
        raise _NotSure
    vpc = given.get("vpc")
    if vpc is not None:
        _str(vpc, _NAME)
    environment = given.get("environment", "standard")
    if _str(environment) not in ENVIRONMENTS:
        raise _NotSure
    ports = given.get("ports", {})
    if type(ports) is not dict:
        raise _NotSure
    for key, port in ports.items():
        _str(key, _IDENTIFIER)
        _int(port, 1, 65535)
    nodes = []
    for node in _list(given.get("nodes", [])):
        node = _mapping(node, ("name", "addresses"), ())
        nodes.append(Plain(name=_str(node["name"], _NAME), addresses=[
            _host_address(a) for a in _list(node["addresses"], min_length=1)]))
    return ServiceSpec(
        name=_str(given["name"], _NAME), type=kind, cloud=_str(given["cloud"], _IDENTIFIER),
        vpc=vpc, environment=environment, socks5_proxy=_proxy(given.get("socks5_proxy")),
        user_config=_user_config(given.get("user_config", {})), ports=ports, nodes=nodes)


def _vpc(value: Any) -> Vpc:
    given = _mapping(value, ("id", "cloud", "network_cidr"), ("peer_cidrs",))
    return Vpc(id=_str(given["id"], _NAME), cloud=_str(given["cloud"], _IDENTIFIER),
               network_cidr=_cidr(given["network_cidr"]),
               peer_cidrs=[_cidr(c) for c in _list(given.get("peer_cidrs", []))])


def _integration(value: Any) -> Plain:
    given = _mapping(value, ("type", "source"), ("dest",))
    kind = _str(given["type"], _IDENTIFIER)
    dest = given.get("dest")
    if kind not in catalogue.integration_types() or (dest is not None and not _str(dest, _NAME)):
        raise _NotSure
    return Plain(type=kind, source=_str(given["source"], _NAME), dest=dest)


def load_spec(path: str | Path) -> model.DeploymentSpec:
    """`nodewall.spec.load.load_spec`, the same errors, the same values read through the same
    attributes, without pydantic when every field is well-formed: the plain objects stand in
    for the models (checked by tests/unit/test_quick_spec.py), hence the cast."""
    from nodewall.errors import SpecError
    from nodewall.gcpause import collector_paused
    from nodewall.spec.document import read_document
    from nodewall.spec.rules import document_errors

    data = read_document(path)
    with collector_paused():  # as `parse_spec`: thousands of small objects for a big ip_filter
        spec = read_well_formed(data)
    if spec is None:
        from nodewall.spec.load import parse_spec

        return parse_spec(data)
    errors = document_errors(cast("model.DeploymentSpec", spec))
    if errors:
        raise SpecError(errors)
    return cast("model.DeploymentSpec", spec)


def read_well_formed(data: Any) -> DeploymentSpec | None:
    """The document as plain objects when every field is surely valid; None otherwise."""
    try:
        given = _mapping(data, ("platform", "project"), ("vpcs", "services", "integrations"))
        platform = _mapping(given["platform"], ("management_networks",), ())
        project = _mapping(given["project"], ("name",), ("base_port",))
        base_port = project.get("base_port")
        return DeploymentSpec(
            platform=Plain(management_networks=[
                _cidr(n) for n in _list(platform["management_networks"], min_length=1)]),
            project=Plain(name=_str(project["name"], _NAME), base_port=None if base_port is None
                          else _int(base_port, PORT_MIN, PORT_MAX)),
            vpcs=[_vpc(v) for v in _list(given.get("vpcs", []))],
            services=[_service(s) for s in _list(given.get("services", []))],
            integrations=[_integration(i) for i in _list(given.get("integrations", []))])
    except _NotSure:
        return None
