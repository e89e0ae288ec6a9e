"""The deployment spec (SPEC section 2) as pydantic models: structure, types, formats.

Each model checks what one item can check alone (types, lengths, names, CIDRs and addresses);
the rules that span the document live in `nodewall.spec.rules`, and `nodewall.spec.load` runs
both. It never compiles, allocates or touches a kernel.
"""

from __future__ import annotations

import threading
from functools import cached_property
from itertools import compress
from operator import itemgetter
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, SchemaValidator, core_schema

from nodewall.catalogue.ports import PORT_MAX, PORT_MIN
from nodewall.net import cidr
from nodewall.spec.limits import MAX_DESCRIPTION_CHARS, MAX_IP_FILTER, MAX_NETWORK_CHARS
from nodewall.spec.vocabulary import DEFAULT_IP_FILTER, IDENTIFIER_PATTERN, NAME_PATTERN


def _invalid(value: str, exc: ValueError, what: str) -> PydanticCustomError:
    """The error of a CIDR or address that does not read: not canonical (showing how to write
    it), or no `what` at all."""
    if isinstance(exc, cidr.NotCanonical):
        return PydanticCustomError(
            "canonical", "{value} is not in canonical form{why}; write {canonical}",
            {"value": repr(value), "why": exc.why, "canonical": repr(exc.canonical)})
    return PydanticCustomError(what.replace(" ", "_"), "{value} is not a valid " + what,
                               {"value": repr(value)})


def _cidr(value: str) -> str:
    try:
        cidr.parse(value)
    except ValueError as exc:
        raise _invalid(value, exc, "CIDR") from None
    return value


def _host_address(value: str) -> str:
    """A node's own address: canonical, and a unicast host address."""
    try:
        family, number = cidr.parse_address(value)
    except ValueError as exc:
        raise _invalid(value, exc, "IP address") from None
    why = cidr.not_a_host(family, number)
    if why is not None:
        raise PydanticCustomError("host_address", "{value} is {why}, not a node's unicast address",
                                  {"value": repr(value), "why": why})
    return value


def _proxy(value: str) -> str:
    try:
        host, _ = cidr.parse_host_port(value)
    except cidr.NotCanonical as exc:
        raise _invalid(value, exc, "proxy") from None
    except ValueError:
        raise PydanticCustomError("proxy", "{value} is not an ADDRESS:PORT (IPv6 as [ADDR]:PORT)",
                                  {"value": repr(value)}) from None
    why = cidr.not_a_host(*cidr.parse_address(host))
    if why is not None:
        raise PydanticCustomError("proxy", "{value}: the proxy's address is {why}",
                                  {"value": repr(value), "why": why})
    return value


def _service_type(value: str) -> str:
    from nodewall import catalogue

    if value not in catalogue.service_types():
        raise PydanticCustomError("service_type", "unknown service type {value} (known: {known})",
                                  {"value": repr(value),
                                   "known": ", ".join(sorted(catalogue.service_types()))})
    return value


def _integration_type(value: str) -> str:
    from nodewall import catalogue

    if value not in catalogue.integration_types():
        raise PydanticCustomError(
            "integration_type", "unknown integration type {value} (known: {known})",
            {"value": repr(value), "known": ", ".join(sorted(catalogue.integration_types()))})
    return value


def _ip_filter_item(value: Any) -> Any:
    return {"network": value} if isinstance(value, str) else value


Cidr = Annotated[str, AfterValidator(_cidr)]
HostAddress = Annotated[str, AfterValidator(_host_address)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
#: Cloud names ("aws-eu-west-1"), service and integration types: short, lower-case identifiers.
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Strict(BaseModel):
    """Unknown keys refused; types exact (`"14000"` is no integer, `1` no boolean)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Platform(_Strict):
    management_networks: Annotated[list[Cidr], Field(min_length=1)]


class Project(_Strict):
    name: Name
    base_port: Annotated[int, Field(ge=PORT_MIN, le=PORT_MAX)] | None = None


class Vpc(_Strict):
    id: Name
    cloud: Identifier
    network_cidr: Cidr
    peer_cidrs: list[Cidr] = []

    @cached_property
    def networks(self) -> tuple[tuple[cidr.Net, str], ...]:
        """The VPC's network and its peered networks, parsed, each with its text."""
        return tuple((cidr.parse(n)[0], n) for n in (self.network_cidr, *self.peer_cidrs))


class IpFilterEntry(_Strict):
    network: Annotated[str, Field(max_length=MAX_NETWORK_CHARS)]
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS)] | None = None

    @model_validator(mode="after")
    def _network_is_cidr(self) -> IpFilterEntry:
        # A spec's ip_filter list skips this per entry and parses every network at once with
        # `cidr.parse_many` (UserConfig._ip_filter_at_once): the same check as `cidr.parse`.
        try:
            cidr.parse(self.network)
        except ValueError as exc:
            raise _invalid(self.network, exc, "CIDR") from None
        return self


class KafkaAuthenticationMethods(_Strict):
    certificate: bool = True
    sasl: bool = False


class OpensearchDashboards(_Strict):
    enabled: bool = True


class UserConfig(_Strict):
    ip_filter: Annotated[
        list[Annotated[IpFilterEntry, BeforeValidator(_ip_filter_item)]],
        Field(max_length=MAX_IP_FILTER),
    ] = Field(default_factory=lambda: [IpFilterEntry(network=n) for n in DEFAULT_IP_FILTER])
    enable_ipv6: bool | None = None
    public_access: dict[Identifier, bool] = {}
    kafka_rest: bool | None = None
    schema_registry: bool | None = None
    kafka_connect: bool | None = None
    kafka_authentication_methods: KafkaAuthenticationMethods | None = None
    opensearch_dashboards: OpensearchDashboards | None = None

    @field_validator("ip_filter", mode="wrap")
    @classmethod
    def _ip_filter_at_once(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """A list of CIDR strings and {network, description} objects, all well-formed (the
        common case), is checked in one pass: pydantic-core builds the entries without calling
        back into Python per item, then every CIDR is parsed together and kept for
        `parsed_ip_filter`. Anything else takes the declared per-entry validation (`handler`),
        which reports every problem with its path."""
        if _IP_FILTER_ENTRIES is not None and type(value) is list:
            items = [{"network": v} if isinstance(v, str) else v for v in value]
            try:
                entries = _IP_FILTER_ENTRIES.validate_python(items)
                parsed = cidr.parse_many([e.network for e in entries])
            except ValueError:  # ValidationError included: let the full validation explain
                pass
            else:
                _parsed.ip_filter = (entries, parsed)
                return entries
        return handler(value)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_parsed_ip_filter(cls, data: Any, handler: ModelWrapValidatorHandler[UserConfig]
                               ) -> UserConfig:
        """Keeps what `_ip_filter_at_once` parsed on the new instance, in the slots of the
        cached properties below, so a compile does not parse the ip_filter again."""
        _parsed.ip_filter = None
        try:
            config = handler(data)
            found = _parsed.ip_filter
            if found is not None and found[0] is config.ip_filter:
                parsed: cidr.ParsedNetworks = found[1]
                config.__dict__.update(  # the slots of the cached properties
                    parsed_ip_filter=tuple(parsed.parsed),
                    ip_filter_networks=tuple(parsed.texts),
                    ip_filter_ipv6=parsed.ipv6)
                if not parsed.host_bits:
                    config.__dict__["ip_filter_host_bits"] = ()
            return config
        finally:
            _parsed.ip_filter = None

    @cached_property
    def parsed_ip_filter(self) -> tuple[tuple[cidr.Net, bool], ...]:
        """Each ip_filter entry's network (host bits cleared) and whether it had host bits
        set; computed once per spec (while validating, for a list given in the spec)."""
        return tuple(cidr.parse(e.network) for e in self.ip_filter)

    @cached_property
    def ip_filter_networks(self) -> tuple[str, ...]:
        """Each ip_filter entry's network as normalised text (`str` of its parsed network)."""
        return tuple(str(net) for net, _ in self.parsed_ip_filter)

    @cached_property
    def ip_filter_ipv6(self) -> int:
        """How many ip_filter entries are IPv6 networks."""
        return sum(net.family == 6 for net, _ in self.parsed_ip_filter)

    @cached_property
    def ip_filter_host_bits(self) -> tuple[int, ...]:
        """The indices of the ip_filter entries written with host bits set."""
        parsed = self.parsed_ip_filter
        return tuple(compress(range(len(parsed)), map(itemgetter(1), parsed)))

    def setting(self, dotted: str) -> bool | None:
        """A toggle's value by dotted key ('opensearch_dashboards.enabled'); None when unset."""
        head, _, tail = dotted.partition(".")
        value: Any = getattr(self, head, None)
        if tail and value is not None:
            value = getattr(value, tail)
        return None if value is None else bool(value)


def _entries_validator() -> SchemaValidator | None:
    """A validator of a list of IpFilterEntry objects (dicts or instances) by the entry model's
    own schema (types, lengths, unknown keys), without its per-entry CIDR check
    (`_network_is_cidr`, the only validator around the model): the caller checks every CIDR at
    once. None if the schema is not shaped so, and then every ip_filter takes the per-entry
    path."""
    schema: Any = IpFilterEntry.__pydantic_core_schema__
    if (schema.get("type") != "function-after"
            or schema.get("function", {}).get("function") is not IpFilterEntry._network_is_cidr):
        return None
    inner = schema.get("schema")
    if (not isinstance(inner, dict) or inner.get("type") != "model"
            or inner.get("cls") is not IpFilterEntry or "ref" in inner):
        return None
    return SchemaValidator(core_schema.list_schema(inner, max_length=MAX_IP_FILTER))


_IP_FILTER_ENTRIES = _entries_validator()
#: The parsed ip_filter of the UserConfig being validated on this thread, from the field
#: validator to the model validator (which stores it on the instance).
_parsed = threading.local()


class NodeSpec(_Strict):
    name: Name
    addresses: Annotated[list[HostAddress], Field(min_length=1)]


class ServiceSpec(_Strict):
    name: Name
    type: Annotated[Identifier, AfterValidator(_service_type)]
    cloud: Identifier
    vpc: Name | None = None
    environment: Literal["standard", "byoc", "ece"] = "standard"  # vocabulary.ENVIRONMENTS
    socks5_proxy: Annotated[str, AfterValidator(_proxy)] | None = None
    user_config: UserConfig = Field(default_factory=UserConfig)
    ports: dict[Identifier, Port] = {}
    nodes: list[NodeSpec] = []

    @property
    def provider(self) -> str:
        return self.cloud.split("-", 1)[0]


class IntegrationSpec(_Strict):
    type: Annotated[Identifier, AfterValidator(_integration_type)]
    source: Name
    dest: Name | None = None


class DeploymentSpec(_Strict):
    platform: Platform
    project: Project
    vpcs: list[Vpc] = []
    services: list[ServiceSpec] = []
    integrations: list[IntegrationSpec] = []

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

    def node(self, name: str) -> tuple[ServiceSpec, NodeSpec]:
        for s in self.services:
            for n in s.nodes:
                if n.name == name:
                    return s, n
        raise KeyError(name)

    @property
    def node_names(self) -> list[str]:
        return [n.name for s in self.services for n in s.nodes]
