"""Deployment specs shaped to the kernel-test topology (addresses of `netns.HOSTS`), and the
policies the compiler makes of them. The node under test is always `pg-prod-1`."""

from __future__ import annotations

import copy
from typing import Any

from nodewall.compiler.node import compile_node
from nodewall.policy.model import NodePolicy
from nodewall.spec.load import parse_spec

NODE = "pg-prod-1"
PG_PORT, BOUNCER_PORT, PROMETHEUS_PORT = 14017, 14018, 9273

PUBLIC: dict[str, Any] = {
    "platform": {"management_networks": ["198.51.100.0/28", "2001:db8:ff::/64"]},
    "project": {"name": "acme", "base_port": 14000},
    "services": [
        {
            "name": "pg-prod",
            "type": "pg",
            "cloud": "aws-eu-west-1",
            "user_config": {"ip_filter": ["203.0.113.0/24", "2001:db8:1::/48"],
                            "enable_ipv6": True},
            "ports": {"pg": PG_PORT, "pgbouncer": BOUNCER_PORT},
            "nodes": [
                {"name": NODE, "addresses": ["10.20.0.11", "2001:db8:20::11"]},
                {"name": "pg-prod-2", "addresses": ["10.20.0.12", "2001:db8:20::12"]},
            ],
        },
        {
            "name": "pg-replica",
            "type": "pg",
            "cloud": "aws-eu-west-1",
            "nodes": [{"name": "pg-replica-1", "addresses": ["10.50.0.7", "2001:db8:50::7"]}],
        },
    ],
    "integrations": [
        {"type": "read_replica", "source": "pg-prod", "dest": "pg-replica"},
        {"type": "prometheus", "source": "pg-prod"},
    ],
}


def public(**user_config: Any) -> dict[str, Any]:
    """The public-network spec, with pg-prod's user_config keys replaced."""
    spec = copy.deepcopy(PUBLIC)
    spec["services"][0]["user_config"].update(user_config)
    return spec


def in_vpc(environment: str = "standard", **user_config: Any) -> dict[str, Any]:
    """pg-prod inside VPC 10.20.0.0/24 peered with 10.50.0.0/16 (no integrations)."""
    spec = public(**user_config)
    spec["vpcs"] = [{"id": "vpc-eu", "cloud": "aws-eu-west-1", "network_cidr": "10.20.0.0/24",
                     "peer_cidrs": ["10.50.0.0/16"]}]
    spec["services"] = spec["services"][:1]
    spec["integrations"] = []
    svc = spec["services"][0]
    svc["vpc"] = "vpc-eu"
    svc["environment"] = environment
    if environment == "ece":
        svc["socks5_proxy"] = "192.0.2.99:1080"
    return spec


def policy(spec: dict[str, Any], node: str = NODE) -> NodePolicy:
    return compile_node(parse_spec(spec), node)
