"""Synthetic deployment specs for benchmarks: one service with N ip_filter entries and M nodes.

Addresses are drawn from documentation and private ranges only; nothing here touches a network.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def ip_filter_entries(count: int, start: str = "100.64.0.0") -> list[Any]:
    """`count` distinct /24 ... /32 networks, every tenth with a description."""
    base = int(ipaddress.IPv4Address(start))
    entries: list[Any] = []
    for i in range(count):
        network = f"{ipaddress.IPv4Address(base + i * 256)}/{24 + i % 9}"
        entries.append({"network": network, "description": f"office {i}"} if i % 10 == 0
                       else network)
    return entries


def big_spec(entries: int, nodes: int, service_type: str = "pg") -> dict[str, Any]:
    node_base = int(ipaddress.IPv4Address("10.128.0.1"))
    return {
        "platform": {"management_networks": ["198.51.100.0/28", "2001:db8:ff::/64"]},
        "project": {"name": "bench", "base_port": 14000},
        "services": [{
            "name": "big",
            "type": service_type,
            "cloud": "aws-eu-west-1",
            "user_config": {"ip_filter": ip_filter_entries(entries)},
            "nodes": [{"name": f"big-{i}", "addresses": [str(ipaddress.IPv4Address(node_base + i)),
                                                         f"fd00:be::{i + 1:x}"]}
                      for i in range(nodes)],
        }],
    }
