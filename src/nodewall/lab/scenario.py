"""What the lab builds: its hosts with their addresses, and the platform it creates through the
API (a project with a public PostgreSQL service, a VPC with Kafka, Kafka Connect and an
integration between them, an `ece` MySQL service behind its SOCKS5 proxy), and the live changes
it makes afterwards.

All addresses are private, benchmark or documentation ranges; they exist only inside the lab's
namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROJECT = "lab"
BASE_PORT = 14000
MANAGEMENT = ["198.51.100.0/28", "2001:db8:ff::/64"]
VPC_CLOUD = "google-europe-west1"
VPC_NETWORK = "10.30.0.0/24"
VPC_PEERS = ["10.50.0.0/16"]
SERVER_PORT = 8443
PROXY_PORT = 1080
#: the internet host's web server, which only the proxy may reach from an ece node
OUTSIDE_PORT = 8080


@dataclass(frozen=True)
class Host:
    name: str
    addresses: tuple[str, ...]
    kind: str  # "server", "node", "client", "proxy"
    label: str = ""

    @property
    def v4(self) -> str:
        return next(a for a in self.addresses if ":" not in a)

    @property
    def v6(self) -> str | None:
        return next((a for a in self.addresses if ":" in a), None)


@dataclass(frozen=True)
class Service:
    name: str
    type: str
    nodes: tuple[str, ...]
    body: dict[str, Any] = field(default_factory=dict)


def _host(name: str, kind: str, *addresses: str, label: str = "") -> Host:
    return Host(name, tuple(addresses), kind, label or name)


HOSTS: dict[str, Host] = {h.name: h for h in (
    # The control plane sits inside the VPC's network, so that the ece nodes, whose egress is
    # limited to the VPC, its peers and the proxy, can reach it.
    _host("ctl", "server", "10.30.0.2"),
    _host("pg-1", "node", "198.18.1.11", "2001:db8:18::11"),
    _host("pg-2", "node", "198.18.1.12", "2001:db8:18::12"),
    _host("pg-3", "node", "198.18.1.13", "2001:db8:18::13"),
    _host("kafka-1", "node", "10.30.0.11"),
    _host("kafka-2", "node", "10.30.0.12"),
    _host("kafka-3", "node", "10.30.0.13"),
    _host("connect-1", "node", "10.30.0.21"),
    _host("connect-2", "node", "10.30.0.22"),
    _host("ledger-1", "node", "10.30.0.31"),
    _host("ledger-2", "node", "10.30.0.32"),
    _host("proxy", "proxy", "10.30.0.5"),
    _host("office", "client", "203.0.113.10", "2001:db8:1::10", label="office (in ip_filter)"),
    _host("internet", "client", "192.0.2.99", "2001:db8:bad::99", label="internet host"),
    _host("mgmt", "client", "198.51.100.5", "2001:db8:ff::5", label="management host"),
    _host("peered", "client", "10.50.0.7", label="peered VPC host"),
)}
#: The node that replaces kafka-3 in the "node replaced" change (a new address).
REPLACEMENT = _host("kafka-4", "node", "10.30.0.14")

SERVICES: tuple[Service, ...] = (
    Service("pg", "pg", ("pg-1", "pg-2", "pg-3"), {
        "cloud_name": "aws-eu-west-1",
        "user_config": {"ip_filter": ["203.0.113.0/24",
                                      {"network": "2001:db8:1::/48", "description": "office"}],
                        "enable_ipv6": True}}),
    Service("kafka", "kafka", ("kafka-1", "kafka-2", "kafka-3"), {
        "cloud_name": VPC_CLOUD, "vpc": True,
        "user_config": {"ip_filter": ["0.0.0.0/0"], "kafka_connect": True}}),
    Service("connect", "kafka_connect", ("connect-1", "connect-2"), {
        "cloud_name": VPC_CLOUD, "vpc": True, "user_config": {"ip_filter": ["0.0.0.0/0"]}}),
    Service("ledger", "mysql", ("ledger-1", "ledger-2"), {
        "cloud_name": VPC_CLOUD, "vpc": True, "environment": "ece",
        "socks5_proxy": f"{HOSTS['proxy'].v4}:{PROXY_PORT}",
        "user_config": {"ip_filter": ["10.50.0.0/16", "203.0.113.0/24"]}}),
)
INTEGRATIONS = ({"integration_type": "kafka_connect", "source_service": "kafka",
                 "dest_service": "connect"},)

#: Rows of the reachability matrix: the client hosts, in IPv4 and (where they have one) IPv6,
#: and one node of each service (peers, integrations and the VPC seen from inside).
CLIENT_ROWS: tuple[tuple[str, int], ...] = (
    ("office", 4), ("office", 6), ("internet", 4), ("mgmt", 4), ("peered", 4),
    ("pg-1", 4), ("kafka-1", 4), ("connect-1", 4), ("ledger-1", 4),
)


@dataclass(frozen=True)
class Change:
    """A live change: what it is, the API calls that make it."""

    key: str
    title: str


CHANGES: tuple[Change, ...] = (
    Change("ip_filter", "ip_filter edit: pg admits the internet host's network"),
    Change("replace", "node replaced: kafka-3 leaves, kafka-4 joins with a new address"),
    Change("public_access", "public access enabled for kafka_connect (kafka, in the VPC)"),
    Change("integration", "integration added: connect -> pg (internal_connectivity)"),
)


def service_of(node: str) -> Service:
    for service in SERVICES:
        if node in service.nodes or (node == REPLACEMENT.name and service.name == "kafka"):
            return service
    raise KeyError(node)


def host(name: str) -> Host:
    return REPLACEMENT if name == REPLACEMENT.name else HOSTS[name]
