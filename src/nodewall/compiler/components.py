"""Which components a service runs and on which ports, on the spec-file path (SPEC section 4).

The control plane asks the same questions of its stored services (`nodewall.server.views`), with
ports it drew once and stored instead of derived ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodewall import catalogue
from nodewall.catalogue import Component
from nodewall.catalogue.allocation import allocate_ports, derived_offset
from nodewall.catalogue.ports import WEB_UI_PORT

if TYPE_CHECKING:  # attributes only: `nodewall.spec.quick` gives the same shapes
    from nodewall.spec.model import DeploymentSpec, ServiceSpec


def service_ports(spec: DeploymentSpec, service: ServiceSpec) -> dict[str, int]:
    """The service ports of a service on the spec-file path: pins, else derived reproducibly."""
    offset = derived_offset(spec.project.name, service.name)
    return allocate_ports(service.type, spec.project.base_port, dict(service.ports), offset)


def enabled_components(spec: DeploymentSpec, service: ServiceSpec) -> list[Component]:
    """The service type's components that are on, given user_config and integrations."""
    stype = catalogue.service_type(service.type)
    prometheus = any(i.type == "prometheus" and i.source == service.name
                     for i in spec.integrations)
    result = []
    for c in stype.components:
        if c.needs_prometheus:
            on = prometheus
        elif c.toggle:
            value = service.user_config.setting(c.toggle)
            on = c.default if value is None else value
        else:
            on = c.default
        if on:
            result.append(c)
    return result


def component_ports(component: Component, ports: dict[str, int]) -> tuple[int, ...]:
    """Every port a component serves: its own, and 443 too when it has a web UI."""
    own = component.fixed_port if component.fixed_port is not None else ports[component.name]
    return (own, WEB_UI_PORT) if component.web_ui and own != WEB_UI_PORT else (own,)
