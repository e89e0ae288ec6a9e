"""Request and response bodies of the control-plane API, as pydantic models, so that the
OpenAPI document at /openapi.json says exactly what the server takes and answers.

Request models check only shape (types, required keys); the meaning (CIDRs, names, service
types, user_config) is checked by the spec model in `nodewall.spec`, the one source of truth.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


#: A string the store can hold: no NUL (PostgreSQL text refuses it), bounded length.
Short = Annotated[str, Field(max_length=255), AfterValidator(_no_nul)]
LongText = Annotated[str, Field(max_length=4096), AfterValidator(_no_nul)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorItem(BaseModel):
    message: str
    status: int


class ErrorBody(BaseModel):
    errors: list[ErrorItem]
    message: str


class Message(BaseModel):
    message: str


class PlatformIn(_In):
    management_networks: list[Short]


class PlatformOut(BaseModel):
    management_networks: list[str]


class ProjectIn(_In):
    project: Short
    base_port: int | None = None


class ProjectBody(BaseModel):
    project_name: str
    base_port: int | None


class ProjectOut(BaseModel):
    project: ProjectBody


class VpcIn(_In):
    cloud_name: Short
    network_cidr: Short
    peer_cidrs: list[Short] = Field(default_factory=list)


class VpcOut(BaseModel):
    project_vpc_id: str
    cloud_name: str
    network_cidr: str
    peer_cidrs: list[str]
    state: Literal["ACTIVE"] = "ACTIVE"


class VpcList(BaseModel):
    vpcs: list[VpcOut]
    next_cursor: str | None = None


class ServiceIn(_In):
    service_name: Short
    service_type: Short
    cloud_name: Short
    project_vpc_id: Short | None = None
    environment: Short | None = None
    socks5_proxy: Short | None = None
    user_config: dict[str, Any] | None = None


class ServiceUpdate(_In):
    user_config: dict[str, Any]


class ComponentOut(BaseModel):
    component: str
    port: int
    route: str


class NodeOut(BaseModel):
    name: str
    addresses: list[str]
    policy_version: str | None = None
    applied_version: str | None = None
    backend: str | None = None
    error: str | None = None


class ServiceBody(BaseModel):
    service_name: str
    service_type: str
    cloud_name: str
    project_vpc_id: str | None
    environment: str
    socks5_proxy: str | None
    user_config: dict[str, Any]
    components: list[ComponentOut]
    nodes: list[NodeOut]


class ServiceOut(BaseModel):
    service: ServiceBody


class ServiceList(BaseModel):
    services: list[ServiceBody]
    next_cursor: str | None = None


class NodeIn(_In):
    addresses: list[Short]


class NodeChange(BaseModel):
    node: NodeOut
    message: str


class IntegrationIn(_In):
    integration_type: Short
    source_service: Short
    dest_service: Short | None = None


class IntegrationBody(BaseModel):
    integration_id: int
    integration_type: str
    source_service: str
    dest_service: str | None


class IntegrationOut(BaseModel):
    service_integration: IntegrationBody


class PolicyOut(BaseModel):
    version: str
    policy: dict[str, Any]
    changed_at: float  # unix time of the accepted change that produced this version


#: The backends an agent may report (`nodewall.backends.registry.BACKENDS`; "auto" before it
#: has chosen). The server may not import the backends; tests/unit keep the two lists equal.
KNOWN_BACKENDS = ("auto", "iptables", "nftables")


def _known_backend(value: str) -> str:
    if value not in KNOWN_BACKENDS:
        raise ValueError(f"unknown backend; expected one of {', '.join(KNOWN_BACKENDS)}")
    return value


class StatusIn(_In):
    applied_version: Annotated[str, Field(max_length=64), AfterValidator(_no_nul)] | None = None
    backend: Annotated[str, Field(max_length=32, json_schema_extra={"enum": list(KNOWN_BACKENDS)}),
                       AfterValidator(_known_backend)]
    error: LongText | None = None


class NodeStatusOut(BaseModel):
    service: str
    node: str
    desired_version: str | None
    applied_version: str | None
    backend: str | None
    error: str | None
    reported_at: float | None  # unix time of the agent's last report
    lagging: bool
    behind_seconds: float | None


class NodeStatusList(BaseModel):
    nodes: list[NodeStatusOut]


class StatusOut(BaseModel):
    node: str
    applied_version: str | None
    backend: str | None
    error: str | None


# --- lists, change previews, the audit trail (docs/control-plane.md) -------------------------

class ProjectList(BaseModel):
    projects: list[ProjectBody]
    next_cursor: str | None = None


class IntegrationList(BaseModel):
    integrations: list[IntegrationBody]
    next_cursor: str | None = None


class PortChange(BaseModel):
    protocol: str
    port: int
    # "from" is a Python keyword; the JSON key stays "from"
    source: str = Field(alias="from")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class SetChange(BaseModel):
    set: str
    added: list[str]
    removed: list[str]


class NodePreview(BaseModel):
    node: str
    version_before: str | None
    version_after: str | None
    sets: list[SetChange]
    ports_opened: list[PortChange]
    ports_closed: list[PortChange]


class Preview(BaseModel):
    """The answer of a state-changing route called with ?dry_run=true: what the route would
    answer (`result`), the audit summary it would record, and the nodes whose policy version
    would move. Nothing was written."""

    dry_run: Literal[True]
    result: dict[str, Any]
    summary: dict[str, Any]
    nodes: list[NodePreview]


class EventOut(BaseModel):
    id: int
    at: str
    token_id: int | None
    project: str | None
    method: str
    route: str
    path: str
    summary: dict[str, Any]
    versions: dict[str, str | None]


class EventList(BaseModel):
    events: list[EventOut]
    next_cursor: str | None = None


class TokenOut(BaseModel):
    """A token as listed: never its text or its hash."""

    id: int
    kind: Literal["admin", "node"]
    node: str | None
    created_at: float  # unix time
    revoked_at: float | None


class TokenList(BaseModel):
    tokens: list[TokenOut]
