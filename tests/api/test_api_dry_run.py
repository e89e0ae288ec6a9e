"""`?dry_run=true` against a real server on SQLite and on PostgreSQL: every state-changing route
answers a preview and leaves a full dump of the database as it was (refusals included: a dry
run of a 404 or 409 is that 404 or 409); the preview of an ip_filter edit, a node added and an
integration deleted names exactly the nodes, networks, ports and versions the real change then
gives."""

from __future__ import annotations

import subprocess
from typing import Any
from urllib.parse import urlsplit

import httpx
from pgserver import pg_bindir
from seed import MANAGEMENT, ok, seed, version
from serverproc import ServerProc


def changes(project: str, vpc: str, integration: int) -> list[tuple[str, str, Any]]:
    p = f"/v1/project/{project}"
    return [
        ("PUT", "/v1/platform", {"management_networks": [*MANAGEMENT, "203.0.113.0/28"]}),
        ("POST", "/v1/project", {"project": project + "b"}),
        ("DELETE", p, None),
        ("DELETE", f"{p}?force=true", None),
        ("POST", f"{p}/vpcs", {"cloud_name": "aws-eu-west-1", "network_cidr": "10.90.0.0/24"}),
        ("DELETE", f"{p}/vpcs/{vpc}", None),
        ("POST", f"{p}/service", {"service_name": "kv", "service_type": "valkey",
                                  "cloud_name": "aws-eu-west-1"}),
        ("PUT", f"{p}/service/pg-prod", {"user_config": {"ip_filter": ["10.20.0.0/25"]}}),
        ("DELETE", f"{p}/service/pg-replica", None),
        ("PUT", f"{p}/service/pg-prod/node/{project}-prod-3", {"addresses": ["10.20.0.13"]}),
        ("DELETE", f"{p}/service/pg-prod/node/{project}-prod-2", None),
        ("DELETE", f"{p}/service/pg-prod/node/{project}-nope", None),
        ("POST", f"{p}/integration", {"integration_type": "prometheus",
                                      "source_service": "pg-prod"}),
        ("DELETE", f"{p}/integration/{integration}", None),
        ("DELETE", f"{p}/integration/{integration + 1000}", None),
    ]


def _integration(c: httpx.Client, project: str) -> int:
    listed = ok(c.get(f"/v1/project/{project}/integration"))["integrations"]
    return int(listed[0]["integration_id"])


def test_a_dry_run_writes_nothing_on_any_route(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        ident = _integration(c, project)
        node_token = server.token(node=s.prod1)
        before = server.dump()
        for method, path, body in changes(project, s.vpc, ident):
            dry = path + ("&" if "?" in path else "?") + "dry_run=true"
            r = c.request(method, dry, json=body)
            if path.endswith(("-nope", f"/{ident + 1000}")):
                assert r.status_code == 404, (method, path, r.text)
            elif (method, path) == ("DELETE", f"/v1/project/{project}") or path.endswith(
                    f"/vpcs/{s.vpc}"):
                assert r.status_code == 409, (method, path, r.text)
            else:
                answer = ok(r)
                assert answer["dry_run"] is True and "result" in answer, (method, path)
                assert isinstance(answer["nodes"], list)
            assert server.dump() == before, f"the dry run of {method} {path} wrote"
        with server.client(node_token) as agent:
            r = agent.post(f"/v1/node/{s.prod1}/status", params={"dry_run": "true"},
                           json={"applied_version": "x", "backend": "nftables"})
            assert ok(r)["dry_run"] is True
        assert server.dump() == before, "the dry run of a status report wrote"


def tool_dump(database: str) -> list[str]:
    """The database as its own tool dumps it: `sqlite3 FILE .dump`, or `pg_dump` (schema and
    data). PostgreSQL sequences are not transactional, so a rolled-back insert may move one:
    their `setval` lines are left out (docs/control-plane.md, "Change preview"), and so are
    the `\\restrict` lines with the random key pg_dump writes anew for every dump."""
    if database.startswith("sqlite"):
        path = database.split(":///", 1)[1]
        out = subprocess.run(["sqlite3", path, ".dump"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        return out.splitlines()
    url = urlsplit(database)
    bindir = pg_bindir()
    assert bindir is not None
    out = subprocess.run([str(bindir / "pg_dump"), "-h", url.hostname or "", "-p",
                          str(url.port), "-U", "postgres", url.path.lstrip("/")],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [line for line in out.splitlines() if not line.startswith(
        ("SELECT pg_catalog.setval", "\\restrict ", "\\unrestrict "))]


def test_a_dry_run_leaves_the_tools_dump_unchanged(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        before = tool_dump(server.database)
        assert any("pg-prod" in line for line in before), "the dump holds no data"
        for method, path, body in changes(project, s.vpc, _integration(c, project)):
            dry = path + ("&" if "?" in path else "?") + "dry_run=true"
            c.request(method, dry, json=body)
        assert tool_dump(server.database) == before
        # and the dump does see a real change
        ok(c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": ["10.20.0.0/25"]}}))
        assert tool_dump(server.database) != before


def _versions(c: httpx.Client, nodes: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for node in nodes:
        r = c.get(f"/v1/node/{node}/policy")
        found[node] = r.json()["version"] if r.status_code == 200 else None
    return found


def test_the_preview_names_what_the_change_does(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        nodes = [s.prod1, s.prod2, s.rep1, f"{project}-prod-3"]
        edit = {"user_config": {"ip_filter": ["10.20.0.0/25", "10.50.0.0/16"]}}
        preview = ok(c.put(s.service("pg-prod"), params={"dry_run": "true"}, json=edit))
        assert [n["node"] for n in preview["nodes"]] == [s.prod1, s.prod2]
        entry = preview["nodes"][0]
        assert entry["version_before"] == version(c, s.prod1)
        assert {"set": "clients_v4", "added": ["10.20.0.0/25", "10.50.0.0/16"],
                "removed": ["10.20.0.0/24", "10.50.1.0/24"]} in entry["sets"]
        assert entry["ports_opened"] == entry["ports_closed"] == []
        assert preview["summary"]["ip_filter"]["removed"] == ["10.20.0.0/24", "10.50.1.0/24"]
        real = ok(c.put(s.service("pg-prod"), json=edit))
        assert preview["result"] == real
        after = _versions(c, nodes)
        assert {n["node"]: n["version_after"] for n in preview["nodes"]} == {
            s.prod1: after[s.prod1], s.prod2: after[s.prod2]}

        # a node added: its peers and the integrated replica change, the new node appears
        before = _versions(c, nodes)
        body = {"addresses": ["10.20.0.13"]}
        path = s.node("pg-prod", nodes[3])
        preview = ok(c.put(path, params={"dry_run": "true"}, json=body))
        ok(c.put(path, json=body))
        after = _versions(c, nodes)
        assert {n["node"]: (n["version_before"], n["version_after"])
                for n in preview["nodes"]} == {
            n: (before[n], after[n]) for n in nodes if before[n] != after[n]}
        new = next(n for n in preview["nodes"] if n["node"] == nodes[3])
        assert new["version_before"] is None and new["ports_closed"] == []
        assert any(p["from"] == "clients_v4" for p in new["ports_opened"])
        peer = next(n for n in preview["nodes"] if n["node"] == s.prod1)
        assert {"set": "peers_v4", "added": ["10.20.0.13/32"], "removed": []} in peer["sets"]

        # a prometheus integration opens 9273 on pg-prod's nodes
        body = {"integration_type": "prometheus", "source_service": "pg-prod"}
        preview = ok(c.post(f"/v1/project/{project}/integration", params={"dry_run": "true"},
                            json=body))
        opened = {(p["port"], p["protocol"]) for n in preview["nodes"]
                  for p in n["ports_opened"]}
        assert (9273, "tcp") in opened, preview["nodes"]
        assert c.get(f"/v1/project/{project}/integration").json()["integrations"][-1][
            "integration_type"] == "read_replica", "the dry run created the integration"
