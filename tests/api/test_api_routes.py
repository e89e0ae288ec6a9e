"""The API against a real server process, on SQLite and on PostgreSQL: the routes of SPEC
section 6, error shapes, and that bad input leaves the store exactly as it was."""

from __future__ import annotations

from typing import Any

from seed import networks, ok, seed, version
from serverproc import ServerProc

from nodewall.policy.model import NodePolicy


def test_a_project_end_to_end(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        svc = ok(c.get(s.service("pg-prod")))["service"]
        assert svc["service_type"] == "pg" and svc["project_vpc_id"] == s.vpc
        comps = {x["component"]: x for x in svc["components"]}
        assert set(comps) == {"pg", "pgbouncer"}
        assert all(14000 <= x["port"] <= 30000 and x["route"] == "client"
                   for x in comps.values())
        assert comps["pgbouncer"]["port"] == comps["pg"]["port"] + 1
        assert [n["name"] for n in svc["nodes"]] == [s.prod1, s.prod2]
        assert all(n["policy_version"] for n in svc["nodes"])

        r = c.get(f"/v1/node/{s.prod1}/policy")
        body = ok(r)
        assert r.headers["etag"] == f'"{body["version"]}"'
        policy = NodePolicy.from_dict(body["policy"])
        assert policy.version == body["version"]
        assert policy.node == s.prod1 and policy.service == "pg-prod"
        assert {cp.name: cp.port for cp in policy.components}["pg"] == comps["pg"]["port"]
        # the replica reaches the primary's pg port: the integration is in the policy
        assert "10.20.0.21/32" in networks(c, s.prod1)
        assert c.get(f"/v1/node/{s.prod1}/policy",
                     headers={"If-None-Match": r.headers["etag"]}).status_code == 304

        listed = ok(c.get(f"/v1/project/{project}/service"))["services"]
        assert [x["service_name"] for x in listed] == ["pg-prod", "pg-replica"]
        assert len(ok(c.get(f"/v1/project/{project}/vpcs"))["vpcs"]) == 1


def test_customer_descriptions_are_kept_exactly(server: ServerProc, project: str) -> None:
    nasty = "office\n'; DROP TABLE node; --\x00 \"quoted\" \u2603 " + "x" * 980
    with server.client() as c:
        s = seed(c, project)
        entry = {"network": "10.20.0.0/26", "description": nasty}
        ok(c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": [entry]}}))
        cfg = ok(c.get(s.service("pg-prod")))["service"]["user_config"]
        assert cfg["ip_filter"] == [entry]
        body = c.get(f"/v1/node/{s.prod1}/policy").text
        assert "DROP TABLE" not in body, "a customer description reached a policy"


def test_status_reports_show_in_the_service(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        v = version(c, s.prod1)
    with server.client(server.token(node=s.prod1)) as agent:
        ok(agent.post(f"/v1/node/{s.prod1}/status",
                      json={"applied_version": v, "backend": "nftables"}))
    with server.client() as c:
        nodes = ok(c.get(s.service("pg-prod")))["service"]["nodes"]
        assert nodes[0]["applied_version"] == v and nodes[0]["backend"] == "nftables"


def test_ip_filter_edit_recompiles_only_that_service(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        before = {n: version(c, n) for n in (s.prod1, s.prod2, s.rep1)}
        ok(c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": ["10.20.0.0/25"]}}))
        after = {n: version(c, n) for n in before}
        assert after[s.prod1] != before[s.prod1]
        assert after[s.prod2] != before[s.prod2]
        assert after[s.rep1] == before[s.rep1]
        cfg = ok(c.get(s.service("pg-prod")))["service"]["user_config"]
        assert cfg == {"ip_filter": ["10.20.0.0/25"]}
        # keys not given are kept; null puts a key back to its default
        ok(c.put(s.service("pg-prod"), json={"user_config": {"enable_ipv6": True}}))
        cfg = ok(c.get(s.service("pg-prod")))["service"]["user_config"]
        assert cfg == {"ip_filter": ["10.20.0.0/25"], "enable_ipv6": True}
        narrowed = version(c, s.prod1)
        ok(c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": None}}))
        cfg = ok(c.get(s.service("pg-prod")))["service"]["user_config"]
        assert cfg == {"enable_ipv6": True}
        assert version(c, s.prod1) != narrowed


def test_node_changes_reach_peers_and_partners(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        ok(c.put(s.node("pg-replica", s.rep1), json={"addresses": ["10.20.0.99"]}))
        nets = networks(c, s.prod1)
        assert "10.20.0.99/32" in nets and "10.20.0.21/32" not in nets
        ok(c.delete(s.node("pg-prod", s.prod2)))
        assert "10.20.0.12/32" not in networks(c, s.prod1)
        assert c.get(f"/v1/node/{s.prod2}/policy").status_code == 404
        ok(c.delete(s.service("pg-replica")))
        assert c.get(f"/v1/node/{s.rep1}/policy").status_code == 404
        assert "10.20.0.99/32" not in networks(c, s.prod1)


def bad_requests(project: str) -> list[tuple[str, str, dict[str, Any], str]]:
    svc = f"/v1/project/{project}/service"
    node = f"{svc}/pg-prod/node/{project}-prod-3"
    return [
        ("PUT", f"{svc}/pg-prod", {"user_config": {"ip_filter": ["10.0.0.0/8", "10.0.0.300/24"]}},
         "Invalid 'user_config': Invalid input for ip_filter[1]"),
        ("PUT", f"{svc}/pg-prod",
         {"user_config": {"ip_filter": [{"network": "10.0.0.0/8", "description": "x" * 1025}]}},
         "Invalid 'user_config': Invalid input for ip_filter[0].description"),
        ("PUT", f"{svc}/pg-prod", {"user_config": {"ip_filter": ["10.0.0.0/8"] * 8001}},
         "Invalid 'user_config': Invalid input for ip_filter"),
        ("PUT", f"{svc}/pg-prod", {"user_config": {"public_access": {"nonsense": True}}},
         "Invalid 'user_config': Invalid input for public_access.nonsense"),
        ("PUT", f"{svc}/pg-prod", {"user_config": {"kafka_rest": True}},
         "Invalid 'user_config': Invalid input for kafka_rest"),
        ("PUT", f"{svc}/pg-prod", {"user_config": "nope"}, "Invalid 'user_config'"),
        ("POST", svc, {"service_name": "x1", "service_type": "nosuch",
                       "cloud_name": "aws-eu-west-1"}, "Invalid 'service_type'"),
        ("POST", svc, {"service_name": "Bad_Name", "service_type": "pg",
                       "cloud_name": "aws-eu-west-1"}, "Invalid 'service_name'"),
        ("POST", svc, {"service_name": "x2", "service_type": "pg", "cloud_name": "aws-eu-west-1",
                       "project_vpc_id": "vpc-nope"}, "Invalid 'project_vpc_id'"),
        ("POST", svc, {"service_name": "x3", "service_type": "pg", "cloud_name": "aws-eu-west-1",
                       "environment": "ece"}, "Invalid 'project_vpc_id'"),
        ("POST", svc, {"service_name": "x4", "service_type": "pg", "cloud_name": "mars-1"},
         "Invalid 'cloud_name'"),
        ("PUT", node, {"addresses": ["10.20.0.11"]}, "10.20.0.11"),
        ("PUT", node, {"addresses": ["not-an-ip"]}, "Invalid 'addresses[0]'"),
        ("PUT", node, {"addresses": []}, "Invalid 'addresses'"),
        ("PUT", f"{svc}/pg-prod/node/Bad_Node", {"addresses": ["10.20.0.40"]}, "Invalid 'node'"),
        ("POST", f"/v1/project/{project}/integration",
         {"integration_type": "read_replica", "source_service": "pg-prod",
          "dest_service": "ghost"}, "Invalid 'dest_service'"),
        ("POST", f"/v1/project/{project}/integration",
         {"integration_type": "telepathy", "source_service": "pg-prod"},
         "Invalid 'integration_type'"),
        ("POST", f"/v1/project/{project}/vpcs",
         {"cloud_name": "aws-eu-west-1", "network_cidr": "10.0.0.0/33"},
         "Invalid 'network_cidr'"),
        ("POST", "/v1/project", {"project": f"{project}x", "base_port": 9000},
         "Invalid 'base_port'"),
        ("POST", "/v1/project", {"project": f"{project}y", "extra": 1}, "Invalid 'extra'"),
        ("PUT", "/v1/platform", {"management_networks": []}, "Invalid 'management_networks'"),
        ("PUT", "/v1/platform", {"management_networks": ["nope"]},
         "Invalid 'management_networks[0]'"),
        ("GET", f"/v1/node/{project}-prod-1/policy?wait=9999&version=x", {}, "Invalid 'wait'"),
        ("GET", "/v1/node/Bad%00Node/policy", {}, "Invalid 'node'"),
        ("GET", f"/v1/project/{project}%00/service", {}, "Invalid 'project'"),
        ("POST", svc, {"service_name": "x5", "service_type": "pg",
                       "cloud_name": "aws-eu\x00"}, "Invalid 'cloud_name'"),
        ("POST", svc, {"service_name": "x6", "service_type": "pg",
                       "cloud_name": "aws-" + "x" * 300}, "Invalid 'cloud_name'"),
        ("POST", f"/v1/node/{project}-prod-1/status", {"backend": "b" * 33}, "Invalid 'backend'"),
        ("POST", f"/v1/node/{project}-prod-1/status",
         {"backend": "nftables", "error": "\x00"}, "Invalid 'error'"),
    ]


def test_bad_input_names_the_field_and_changes_nothing(server: ServerProc, project: str) -> None:
    with server.client() as c:
        seed(c, project)
        before = server.dump()
        for method, path, body, expected in bad_requests(project):
            r = c.request(method, path, json=body or None)
            assert r.status_code == 400, f"{method} {path}: {r.status_code} {r.text[:300]}"
            answer = r.json()
            assert answer["errors"] and all(e["status"] == 400 for e in answer["errors"])
            assert any(expected in e["message"] for e in answer["errors"]), (
                f"{method} {path}: expected {expected!r} in {answer}")
        r = c.post(f"/v1/project/{project}/service", content=b"{not json",
                   headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert server.dump() == before, "a refused request changed the store"


def test_conflicts_and_unknown_objects(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        before = server.dump()
        assert c.post("/v1/project", json={"project": project}).status_code == 409
        assert c.post(f"/v1/project/{project}/service", json={
            "service_name": "pg-prod", "service_type": "pg",
            "cloud_name": "aws-eu-west-1"}).status_code == 409
        assert c.put(s.node("pg-replica", s.prod1),
                     json={"addresses": ["10.20.0.77"]}).status_code == 409
        assert c.post(f"/v1/project/{project}/integration", json={
            "integration_type": "read_replica", "source_service": "pg-prod",
            "dest_service": "pg-replica"}).status_code == 409
        for path in (f"/v1/project/{project}x/service/pg-prod", s.service("nope"),
                     f"/v1/node/{project}-nope/policy"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["errors"][0]["status"] == 404
        assert c.delete(s.node("pg-prod", "nope")).status_code == 404
        assert server.dump() == before


def test_policy_waits_for_the_platform_settings(sqlite_server: ServerProc) -> None:
    with sqlite_server.client() as c:
        ok(c.post("/v1/project", json={"project": "early"}))
        ok(c.post("/v1/project/early/service", json={
            "service_name": "kv", "service_type": "valkey", "cloud_name": "google-europe-west1"}))
        ok(c.put("/v1/project/early/service/kv/node/kv-1", json={"addresses": ["192.0.2.10"]}))
        assert c.get("/v1/node/kv-1/policy").status_code == 404
        ok(c.put("/v1/platform", json={"management_networks": ["198.51.100.0/28"]}))
        assert ok(c.get("/v1/node/kv-1/policy"))["policy"]["node"] == "kv-1"
