"""Warnings about a valid spec: things that are allowed but probably not what was meant.

Host bits set in an ip_filter CIDR, IPv6 entries a service ignores, entries outside a VPC, an
empty allow-list. Kept apart from the compiler so `nodewall validate` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodewall import catalogue
from nodewall.net import cidr

if TYPE_CHECKING:  # read through attributes only: `nodewall.spec.quick` gives the same shapes
    from nodewall.spec.model import DeploymentSpec, ServiceSpec


def ipv6_clients(service: ServiceSpec) -> bool:
    """Whether the service admits IPv6 clients: its type supports enable_ipv6 and it is on."""
    return bool(catalogue.service_type(service.type).ipv6 and service.user_config.enable_ipv6)


def client_warnings(spec: DeploymentSpec, service: ServiceSpec) -> list[str]:
    """Warnings about a service's ip_filter: host bits set, IPv6 entries ignored, emptiness."""
    where = f"services[{spec.services.index(service)}].user_config.ip_filter"
    warnings = []
    ipv6_on = ipv6_clients(service)
    items = service.user_config.ip_filter
    parsed = service.user_config.parsed_ip_filter
    # The entries with host bits set and the count of IPv6 ones come with the parsed ip_filter
    # (no step per entry here: an ip_filter holds up to 8000).
    for i in service.user_config.ip_filter_host_bits:
        warnings.append(f"{where}[{i}]: {items[i].network!r} has host bits set; "
                        f"using {parsed[i][0]}")
    ipv6_ignored = 0 if ipv6_on else service.user_config.ip_filter_ipv6
    if service.vpc is not None and set(service.user_config.public_access.values()) != {True}:
        vpc = spec.vpc(service.vpc)
        bounds = [net for net, _ in vpc.networks]
        for i, (net, _) in enumerate(parsed):
            fam_bounds = [b for b in bounds if b.family == net.family]
            if (net.family == 4 or ipv6_on) and not cidr.intersect(net, fam_bounds):
                warnings.append(f"{where}[{i}]: {net} lies outside VPC {vpc.id} and its peers, "
                                "so it admits no client of a component without public access")
    explicit = "ip_filter" in service.user_config.model_fields_set
    if ipv6_ignored and explicit:
        why = ("enable_ipv6 is off" if catalogue.service_type(service.type).ipv6
               else f"{service.type} does not support IPv6")
        warnings.append(f"{where}: {ipv6_ignored} IPv6 entr{'y' if ipv6_ignored == 1 else 'ies'}"
                        f" ignored ({why})")
    if not service.user_config.ip_filter:
        warnings.append(f"{where}: empty, so no client can connect")
    return warnings
