"""The service catalogue: components per service type and integration types, as typed values.

Reads the packaged data file `catalogue.yaml` once. It answers questions about service types
(which components exist, which take a service port, which are on for a given user_config) and
never looks at a particular deployment's addresses or ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

#: Cloud addresses every node must treat specially (platform-facts.md).
METADATA_ADDRESS = "169.254.169.254/32"
AZURE_ADDRESS = "168.63.129.16/32"


@dataclass(frozen=True)
class Component:
    name: str
    route: Literal["client", "cluster"]
    fixed_port: int | None  # None: takes a service port
    default: bool
    toggle: str | None  # dotted user_config key that switches it on
    access: str  # the public_access key that governs it
    web_ui: bool
    needs_prometheus: bool

    @property
    def takes_service_port(self) -> bool:
        return self.fixed_port is None


@dataclass(frozen=True)
class ServiceType:
    name: str
    ipv6: bool
    main: str | None
    components: tuple[Component, ...]
    public_access_keys: tuple[str, ...]

    @property
    def port_components(self) -> tuple[Component, ...]:
        """Components taking a service port, in allocation order."""
        return tuple(c for c in self.components if c.takes_service_port)

    @property
    def toggles(self) -> tuple[str, ...]:
        return tuple(c.toggle for c in self.components if c.toggle)


@dataclass(frozen=True)
class IntegrationType:
    name: str
    connector: Literal["source", "dest"] | None  # whose nodes open connections
    target: Literal["source", "dest"]  # whose port they reach
    reach: str | None  # "main", "clients", a component name, or None (prometheus)
    target_types: tuple[str, ...] | None


@cache
def _data() -> dict[str, Any]:
    # Beside this file (package data); not through importlib.resources, whose import costs
    # `nodewall validate` about a tenth of its start.
    text = Path(__file__).with_name("catalogue.yaml").read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data: dict[str, Any] = yaml.load(text, Loader=loader)
    return data


@cache
def service_types() -> dict[str, ServiceType]:
    result: dict[str, ServiceType] = {}
    for type_name, body in _data()["types"].items():
        components = tuple(
            Component(
                name=name,
                route=c["route"],
                fixed_port=None if c["port"] == "service" else int(c["port"]),
                default=bool(c.get("default", False)),
                toggle=c.get("toggle"),
                access=c.get("access", name),
                web_ui=bool(c.get("web_ui", False)),
                needs_prometheus=c.get("needs") == "prometheus",
            )
            for name, c in body["components"].items()
        )
        access_keys = body.get("public_access") or sorted(
            {c.access for c in components if c.route == "client"}
        )
        result[type_name] = ServiceType(
            type_name, bool(body["ipv6"]), body.get("main"), components, tuple(access_keys)
        )
    return result


def service_type(name: str) -> ServiceType:
    return service_types()[name]


@cache
def integration_types() -> dict[str, IntegrationType]:
    return {
        name: IntegrationType(
            name=name,
            connector=body["connector"],
            target=body["target"],
            reach=body["reach"],
            target_types=tuple(body["target_types"]) if "target_types" in body else None,
        )
        for name, body in _data()["integrations"].items()
    }


def reached_components(integration: IntegrationType, target: ServiceType) -> tuple[str, ...]:
    """The components of the target service that an integration's connecting nodes reach."""
    if integration.reach is None:
        return ()
    if integration.reach == "main":
        return (target.main,) if target.main else ()
    if integration.reach == "clients":
        return tuple(c.name for c in target.components if c.route == "client")
    names = {c.name for c in target.components}
    return (integration.reach,) if integration.reach in names else ()
