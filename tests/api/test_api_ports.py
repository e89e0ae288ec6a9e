"""Port stability and allocation safety against a real server: a service's ports survive 100
unrelated changes, node replacements and a server restart; concurrent creations never give one
service (so one node) two components on one port, and one name is created once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from seed import ok, ports, seed
from serverproc import ServerProc


def test_ports_never_change(fresh_server: ServerProc) -> None:
    server = fresh_server
    with server.client() as c:
        s = seed(c, "stable")
        ok(c.post("/v1/project/stable/service", json={
            "service_name": "kafka-1", "service_type": "kafka", "cloud_name": "aws-eu-west-1",
            "project_vpc_id": s.vpc}))
        watched = {name: ports(c, "stable", name) for name in ("pg-prod", "kafka-1")}
        assert len(watched["kafka-1"]) >= 2
        for i in range(100):  # unrelated changes of every kind
            match i % 5:
                case 0:
                    ok(c.put(s.service("pg-replica"),
                             json={"user_config": {"ip_filter": [f"10.{i}.0.0/16"]}}))
                case 1:
                    ok(c.put(s.node("pg-replica", f"stable-extra-{i}"),
                             json={"addresses": [f"10.20.0.{100 + i}"]}))
                case 2:
                    ok(c.delete(s.node("pg-replica", f"stable-extra-{i - 1}")))
                case 3:
                    ok(c.post("/v1/project/stable/service", json={
                        "service_name": f"tmp-{i}", "service_type": "valkey",
                        "cloud_name": "aws-eu-west-1"}))
                case _:
                    ok(c.delete(s.service(f"tmp-{i - 1}")))
        # node replacements of the watched services and a user_config edit
        ok(c.put(s.node("pg-prod", s.prod1), json={"addresses": ["10.20.0.201"]}))
        ok(c.put(s.node("pg-prod", s.prod2), json={"addresses": ["10.20.0.202"]}))
        ok(c.put(s.service("kafka-1"), json={"user_config": {"kafka_rest": True}}))
        after = {name: ports(c, "stable", name) for name in watched}
        assert after["pg-prod"] == watched["pg-prod"]
        assert {k: v for k, v in after["kafka-1"].items() if k in watched["kafka-1"]} == \
            watched["kafka-1"]
    server.restart()
    with server.client() as c:
        assert {name: ports(c, "stable", name) for name in watched} == after
        policy = ok(c.get("/v1/node/stable-prod-1/policy"))["policy"]
        assert {cp["name"]: cp["port"] for cp in policy["components"]}["pg"] == \
            watched["pg-prod"]["pg"]


def test_concurrent_creation(server: ServerProc, project: str) -> None:
    with server.client() as c:
        ok(c.post("/v1/project", json={"project": project, "base_port": 20000}))

    def create(name: str) -> int:
        with httpx.Client(base_url=server.url, timeout=60,
                          headers={"Authorization": f"Bearer {server.admin}"}) as c:
            return c.post(f"/v1/project/{project}/service", json={
                "service_name": name, "service_type": "thanos",
                "cloud_name": "google-europe-west1"}).status_code

    names = [f"svc-{i}" for i in range(12)] + ["same"] * 6
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        codes = list(pool.map(create, names))
    assert codes[:12] == [200] * 12
    assert sorted(codes[12:]) == [200] + [409] * 5
    with server.client() as c:
        for name in {*names}:
            allocated = ports(c, project, name)
            assert len(set(allocated.values())) == len(allocated), f"{name}: {allocated}"
