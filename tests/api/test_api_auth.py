"""Bearer tokens against a real server: 401 without a valid token, 403 for a node token outside
its own node, and refused requests change nothing."""

from __future__ import annotations

from seed import ok, seed
from serverproc import ServerProc


def test_unauthenticated_requests_get_401(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
    before = server.dump()
    for token in (None, "nw_not-a-real-token", "nw_"):
        with server.client(token) as anon:
            for method, path, body in (
                ("GET", f"/v1/node/{s.prod1}/policy", None),
                ("GET", s.service("pg-prod"), None),
                ("PUT", s.service("pg-prod"), {"user_config": {"ip_filter": []}}),
                ("POST", "/v1/project", {"project": "intruder"}),
                ("POST", f"/v1/node/{s.prod1}/status", {"backend": "nftables"}),
            ):
                r = anon.request(method, path, json=body)
                assert r.status_code == 401, f"{method} {path} with {token!r}: {r.status_code}"
                assert r.json()["errors"][0]["status"] == 401
                assert r.headers.get("www-authenticate") == "Bearer"
    with server.client() as c:
        r = c.get(f"/v1/node/{s.prod1}/policy", headers={"Authorization": "Basic eDp5"})
        assert r.status_code == 401
    assert server.dump() == before


def test_a_node_token_reads_only_its_own_policy(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
    token = server.token(node=s.prod1)
    before = server.dump()
    with server.client(token) as agent:
        assert ok(agent.get(f"/v1/node/{s.prod1}/policy"))["policy"]["node"] == s.prod1
        forbidden = [
            ("GET", f"/v1/node/{s.prod2}/policy", None),
            ("GET", "/v1/node/no-such-node/policy", None),
            ("POST", f"/v1/node/{s.prod2}/status", {"backend": "nftables"}),
            ("GET", s.service("pg-prod"), None),
            ("GET", f"/v1/project/{project}/service", None),
            ("PUT", s.service("pg-prod"), {"user_config": {"ip_filter": ["0.0.0.0/0"]}}),
            ("DELETE", s.service("pg-prod"), None),
            ("PUT", s.node("pg-prod", s.prod1), {"addresses": ["10.20.0.50"]}),
            ("DELETE", s.node("pg-prod", s.prod2), None),
            ("POST", "/v1/project", {"project": "mine"}),
            ("POST", f"/v1/project/{project}/vpcs",
             {"cloud_name": "aws-eu-west-1", "network_cidr": "10.9.0.0/24"}),
            ("POST", f"/v1/project/{project}/integration",
             {"integration_type": "prometheus", "source_service": "pg-prod"}),
            ("PUT", "/v1/platform", {"management_networks": ["0.0.0.0/0"]}),
            # invalid input from a node token is still a 403, never a 400 that probes the state
            ("PUT", s.service("pg-prod"), {"user_config": {"ip_filter": ["bad"]}}),
        ]
        for method, path, body in forbidden:
            r = agent.request(method, path, json=body)
            assert r.status_code == 403, f"{method} {path}: {r.status_code} {r.text[:200]}"
            assert r.json()["errors"][0]["status"] == 403
    assert server.dump() == before
    with server.client(token) as agent:
        ok(agent.post(f"/v1/node/{s.prod1}/status",
                      json={"applied_version": None, "backend": "iptables", "error": "x\n'y"}))
