"""The validation rules of a deployment spec that span more than one field.

Each function returns (path, reason) pairs and never raises: `nodewall.spec.load` gathers them so a
user sees every problem at once. Runs only on a structurally valid spec.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from nodewall import catalogue
from nodewall.catalogue.allocation import allocate_ports, derived_offset
from nodewall.catalogue.ports import RESERVED_PORTS
from nodewall.errors import SpecError
from nodewall.net import cidr
from nodewall.spec.vocabulary import PROVIDERS

if TYPE_CHECKING:  # read through attributes only: `nodewall.spec.quick` gives the same shapes
    from nodewall.spec.model import DeploymentSpec, ServiceSpec, UserConfig

Errors = list[tuple[str, str]]
T = TypeVar("T")


@dataclass(frozen=True)
class Positions:
    """Where the items of a spec stood in the document. A spec whose structure is partly
    invalid is checked with only its valid items: their original indices keep the paths right,
    and references to the names of invalid items are not reported again as unknown."""

    vpcs: tuple[int, ...] | None = None
    services: tuple[int, ...] | None = None
    integrations: tuple[int, ...] | None = None
    broken_names: frozenset[str] = frozenset()
    project_valid: bool = True

    def of(self, kind: str, items: Sequence[T]) -> Iterator[tuple[int, T]]:
        indices: tuple[int, ...] | None = getattr(self, kind)
        return zip(range(len(items)) if indices is None else indices, items, strict=True)


def document_errors(spec: DeploymentSpec, where: Positions | None = None) -> Errors:
    where = where or Positions()
    errors: Errors = []
    errors += _duplicates(spec, where)
    for i, vpc in where.of("vpcs", spec.vpcs):
        if vpc.cloud.split("-", 1)[0] not in PROVIDERS:
            errors.append((f"vpcs[{i}].cloud", _unknown_provider(vpc.cloud)))
    for i, service in where.of("services", spec.services):
        errors += _service_errors(spec, service, f"services[{i}]", where)
    errors += _integration_errors(spec, where)
    return errors


def _unknown_provider(cloud: str) -> str:
    return f"{cloud!r} is not a known cloud (provider one of {', '.join(PROVIDERS)})"


def _duplicates(spec: DeploymentSpec, where: Positions) -> Errors:
    errors: Errors = []
    services = list(where.of("services", spec.services))
    for kind, names in (
        ("vpcs", [(f"vpcs[{i}].id", v.id) for i, v in where.of("vpcs", spec.vpcs)]),
        ("services", [(f"services[{i}].name", s.name) for i, s in services]),
        ("nodes", [(f"services[{i}].nodes[{j}].name", n.name)
                   for i, s in services for j, n in enumerate(s.nodes)]),
    ):
        seen: dict[str, str] = {}
        for path, name in names:
            if name in seen:
                errors.append(
                    (path, f"duplicate {kind[:-1]} name {name!r} (first at {seen[name]})"))
            else:
                seen[name] = path
    address_path = "services[{}].nodes[{}].addresses[{}]".format
    seen_addr: dict[str | tuple[int, int], tuple[int, int, int]] = {}  # where each was first
    for i, s in services:
        for j, n in enumerate(s.nodes):
            for k, addr in enumerate(n.addresses):
                key = cidr.parse_address(addr)
                first = seen_addr.get(key)
                if first is not None:
                    errors.append((address_path(i, j, k), f"address {addr} is already used at "
                                   f"{address_path(*first)}"))
                else:
                    seen_addr[key] = (i, j, k)
    return errors


def _service_errors(
    spec: DeploymentSpec, service: ServiceSpec, path: str, where: Positions
) -> Errors:
    errors: Errors = []
    if service.provider not in PROVIDERS:
        errors.append((f"{path}.cloud", _unknown_provider(service.cloud)))
    vpcs = {v.id for v in spec.vpcs}
    if service.vpc is not None and service.vpc not in where.broken_names:
        if service.vpc not in vpcs:
            errors.append((f"{path}.vpc", f"unknown VPC {service.vpc!r}"))
        elif spec.vpc(service.vpc).cloud != service.cloud:
            vpc_cloud = spec.vpc(service.vpc).cloud
            errors.append((f"{path}.vpc", f"VPC {service.vpc!r} is in {vpc_cloud}, "
                           f"the service in {service.cloud}"))
    if service.environment == "ece":
        if service.vpc is None:
            errors.append((f"{path}.vpc", "an ece service must be in a VPC"))
        if service.socks5_proxy is None:
            errors.append((f"{path}.socks5_proxy", "an ece service needs its SOCKS5 proxy"))
        if service.user_config.public_access:
            errors.append((f"{path}.user_config.public_access",
                           "public access cannot be enabled in an ece environment"))
    elif service.socks5_proxy is not None:
        errors.append((f"{path}.socks5_proxy", "only ece services use a SOCKS5 proxy"))
    errors += user_config_errors(service.type, service.user_config, f"{path}.user_config")
    pin_errors = _pin_errors(service, f"{path}.ports")
    errors += pin_errors
    if not pin_errors and where.project_valid:
        errors += _allocation_errors(spec, service, path)
    return errors


def _allocation_errors(spec: DeploymentSpec, service: ServiceSpec, path: str) -> Errors:
    """The service's ports cannot be placed (e.g. base_port 30000 leaves no room for two)."""
    offset = derived_offset(spec.project.name, service.name)
    try:
        allocate_ports(service.type, spec.project.base_port, dict(service.ports), offset)
    except SpecError as exc:
        return [(where, f"{reason} (service {service.name}, {path})")
                for where, reason in exc.errors]
    return []


def user_config_errors(type_name: str, config: UserConfig, path: str) -> Errors:
    """Settings the service type does not have, and public_access keys it does not know."""
    errors: Errors = []
    stype = catalogue.service_type(type_name)
    toggle_heads = {t.split(".", 1)[0] for t in stype.toggles}
    for key in ("kafka_rest", "schema_registry", "kafka_connect",
                "kafka_authentication_methods", "opensearch_dashboards"):
        if getattr(config, key) is not None and key not in toggle_heads:
            errors.append((f"{path}.{key}", f"not a setting of {type_name}"))
    if config.enable_ipv6 is not None and not stype.ipv6:
        errors.append((f"{path}.enable_ipv6",
                       f"{type_name} does not support IPv6 (only pg, kafka, clickhouse, valkey)"))
    for key in config.public_access:
        if key not in stype.public_access_keys:
            known = ", ".join(stype.public_access_keys) or "none"
            errors.append((f"{path}.public_access.{key}",
                           f"unknown component of {type_name} (known: {known})"))
    return errors


def _pin_errors(service: ServiceSpec, path: str) -> Errors:
    errors: Errors = []
    stype = catalogue.service_type(service.type)
    names = {c.name: c for c in stype.components}
    for component, port in service.ports.items():
        if component not in names:
            known = ", ".join(c.name for c in stype.port_components)
            errors.append((f"{path}.{component}",
                           f"unknown component of {service.type} (known: {known})"))
        elif not names[component].takes_service_port:
            errors.append((f"{path}.{component}", f"uses the fixed port "
                           f"{names[component].fixed_port} and cannot be pinned"))
        elif port in RESERVED_PORTS:
            errors.append((f"{path}.{component}",
                           f"{port} is reserved for {RESERVED_PORTS[port]}"))
    counts = Counter(service.ports.values())
    for component, port in service.ports.items():
        if counts[port] > 1:
            others = sorted(c for c, p in service.ports.items() if p == port and c != component)
            errors.append((f"{path}.{component}", f"{port} is also pinned for {', '.join(others)}"))
    return errors


def _integration_errors(spec: DeploymentSpec, where: Positions) -> Errors:
    errors: Errors = []
    kinds = catalogue.integration_types()
    services = {s.name: s for s in spec.services}
    seen: dict[tuple[str, str, str | None], int] = {}
    for i, integ in where.of("integrations", spec.integrations):
        path = f"integrations[{i}]"
        kind = kinds[integ.type]
        first = seen.setdefault((integ.type, integ.source, integ.dest), i)
        if first != i:
            errors.append((path, f"the same integration as integrations[{first}]"))
            continue
        ends = {"source": integ.source, "dest": integ.dest}
        if integ.dest is None and kind.connector is not None:
            errors.append((f"{path}.dest", f"a {integ.type} integration needs a dest service"))
            continue
        if integ.dest is not None and kind.connector is None:
            errors.append((f"{path}.dest", f"a {integ.type} integration has no dest service"))
            continue
        missing = [(k, v) for k, v in ends.items() if v is not None and v not in services]
        for end, name in missing:
            if name not in where.broken_names:
                errors.append((f"{path}.{end}", f"unknown service {name!r}"))
        if missing:
            continue
        target_name = ends[kind.target]
        assert target_name is not None
        target = services[target_name]
        if kind.target_types is not None and target.type not in kind.target_types:
            errors.append((f"{path}.{kind.target}", f"a {integ.type} integration reaches a "
                           f"{' or '.join(kind.target_types)} service, not {target.type}"))
        elif kind.reach is not None and not catalogue.reached_components(
            kind, catalogue.service_type(target.type)
        ):
            errors.append((f"{path}.{kind.target}",
                           f"{target.type} has nothing a {integ.type} integration can reach"))
        if integ.dest is not None and integ.dest == integ.source:
            errors.append((f"{path}.dest", "a service cannot integrate with itself"))
    return errors
