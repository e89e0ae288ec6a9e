"""Test data for the API tests: a project with a VPC, a pg service with two nodes, a read
replica integrated with it, and helpers that assert on answers with a useful message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

MANAGEMENT = ["198.51.100.0/28", "2001:db8:ff::/64"]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, "
        f"got {response.status_code}: {response.text[:500]}")
    return response.json()


@dataclass(frozen=True)
class Seeded:
    project: str
    vpc: str

    @property
    def prod1(self) -> str:
        return f"{self.project}-prod-1"

    @property
    def prod2(self) -> str:
        return f"{self.project}-prod-2"

    @property
    def rep1(self) -> str:
        return f"{self.project}-rep-1"

    def service(self, name: str) -> str:
        return f"/v1/project/{self.project}/service/{name}"

    def node(self, service: str, node: str) -> str:
        return f"/v1/project/{self.project}/service/{service}/node/{node}"


def seed(c: httpx.Client, project: str) -> Seeded:
    ok(c.put("/v1/platform", json={"management_networks": MANAGEMENT}))
    ok(c.post("/v1/project", json={"project": project, "base_port": 14000}))
    vpc = ok(c.post(f"/v1/project/{project}/vpcs", json={
        "cloud_name": "aws-eu-west-1", "network_cidr": "10.20.0.0/24",
        "peer_cidrs": ["10.50.0.0/16"]}))
    s = Seeded(project, vpc["project_vpc_id"])
    ok(c.post(f"/v1/project/{project}/service", json={
        "service_name": "pg-prod", "service_type": "pg", "cloud_name": "aws-eu-west-1",
        "project_vpc_id": s.vpc,
        "user_config": {"ip_filter": ["10.20.0.0/24",
                                      {"network": "10.50.1.0/24", "description": "office"}]}}))
    ok(c.post(f"/v1/project/{project}/service", json={
        "service_name": "pg-replica", "service_type": "pg", "cloud_name": "aws-eu-west-1",
        "project_vpc_id": s.vpc}))
    ok(c.put(s.node("pg-prod", s.prod1), json={"addresses": ["10.20.0.11"]}))
    ok(c.put(s.node("pg-prod", s.prod2), json={"addresses": ["10.20.0.12"]}))
    ok(c.put(s.node("pg-replica", s.rep1), json={"addresses": ["10.20.0.21"]}))
    ok(c.post(f"/v1/project/{project}/integration", json={
        "integration_type": "read_replica", "source_service": "pg-prod",
        "dest_service": "pg-replica"}))
    return s


def ports(c: httpx.Client, project: str, service: str) -> dict[str, int]:
    body = ok(c.get(f"/v1/project/{project}/service/{service}"))
    return {x["component"]: x["port"] for x in body["service"]["components"]}


def version(c: httpx.Client, node: str) -> str:
    return str(ok(c.get(f"/v1/node/{node}/policy"))["version"])


def networks(c: httpx.Client, node: str) -> set[str]:
    from nodewall.policy.model import NodePolicy

    policy = NodePolicy.from_dict(ok(c.get(f"/v1/node/{node}/policy"))["policy"])
    return {n for s in policy.sets for n in s.networks}
