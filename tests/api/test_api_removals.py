"""Deleting projects, VPCs and integrations, and the paginated list routes, against a real
server on SQLite and on PostgreSQL: 404 for unknown objects, 409 while still in use (and the
store untouched then), policies of the nodes concerned updated, pages that cover every item
once."""

from __future__ import annotations

from seed import networks, ok, seed, version
from serverproc import ServerProc


def test_a_project_with_services_is_deleted_only_when_forced(server: ServerProc,
                                                               project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        before = server.dump()
        r = c.delete(f"/v1/project/{project}")
        assert r.status_code == 409, r.text
        assert "pg-prod" in r.json()["message"] and "force" in r.json()["message"]
        assert c.delete(f"/v1/project/{project}x").status_code == 404
        assert c.delete(f"/v1/project/{project}x?force=true").status_code == 404
        assert server.dump() == before, "a refused delete changed the store"

        ok(c.delete(f"/v1/project/{project}?force=true"))
        assert c.get(s.service("pg-prod")).status_code == 404
        assert c.get(f"/v1/project/{project}/vpcs").status_code == 404
        for node in (s.prod1, s.prod2, s.rep1):
            assert c.get(f"/v1/node/{node}/policy").status_code == 404
        assert c.delete(f"/v1/project/{project}").status_code == 404
        # the name is free again, and nothing of the old project comes back
        ok(c.post("/v1/project", json={"project": project}))
        assert ok(c.get(f"/v1/project/{project}/service"))["services"] == []
        ok(c.delete(f"/v1/project/{project}"))  # no services: no force needed


def test_a_vpc_is_deleted_only_when_no_service_uses_it(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        spare = ok(c.post(f"/v1/project/{project}/vpcs", json={
            "cloud_name": "google-europe-west1", "network_cidr": "10.70.0.0/24"}))
        before = server.dump()
        r = c.delete(f"/v1/project/{project}/vpcs/{s.vpc}")
        assert r.status_code == 409 and "pg-prod" in r.json()["message"], r.text
        assert c.delete(f"/v1/project/{project}/vpcs/vpc-0000000000000000").status_code == 404
        assert c.delete(f"/v1/project/{project}x/vpcs/{s.vpc}").status_code == 404
        assert server.dump() == before
        ok(c.delete(f"/v1/project/{project}/vpcs/{spare['project_vpc_id']}"))
        vpcs = ok(c.get(f"/v1/project/{project}/vpcs"))["vpcs"]
        assert [v["project_vpc_id"] for v in vpcs] == [s.vpc]
        assert c.delete(f"/v1/project/{project}/vpcs/{spare['project_vpc_id']}"
                        ).status_code == 404
        ok(c.delete(s.service("pg-replica")))
        ok(c.delete(s.service("pg-prod")))
        ok(c.delete(f"/v1/project/{project}/vpcs/{s.vpc}"))


def test_an_integration_is_deleted_by_id(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        listed = ok(c.get(f"/v1/project/{project}/integration"))["integrations"]
        assert [(i["integration_type"], i["source_service"], i["dest_service"])
                for i in listed] == [("read_replica", "pg-prod", "pg-replica")]
        ident = listed[0]["integration_id"]
        assert "10.20.0.21/32" in networks(c, s.prod1)
        before = server.dump()
        assert c.delete(f"/v1/project/{project}/integration/{ident + 1000}").status_code == 404
        assert c.delete(f"/v1/project/{project}x/integration/{ident}").status_code == 404
        assert c.delete(f"/v1/project/{project}/integration/0").status_code == 400
        assert server.dump() == before
        replica_version = version(c, s.rep1)
        ok(c.delete(f"/v1/project/{project}/integration/{ident}"))
        assert "10.20.0.21/32" not in networks(c, s.prod1), "the replica still reaches pg-prod"
        assert version(c, s.rep1) == replica_version  # the replica's own policy is unchanged
        assert ok(c.get(f"/v1/project/{project}/integration"))["integrations"] == []
        assert c.delete(f"/v1/project/{project}/integration/{ident}").status_code == 404


def test_lists_come_in_pages(server: ServerProc, project: str) -> None:
    with server.client() as c:
        seed(c, project)
        for i in range(5):
            ok(c.post(f"/v1/project/{project}/service", json={
                "service_name": f"kv-{i}", "service_type": "valkey",
                "cloud_name": "google-europe-west1"}))
        names: list[str] = []
        cursor = None
        pages = 0
        while True:
            query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
            page = ok(c.get(f"/v1/project/{project}/service{query}"))
            assert len(page["services"]) <= 2
            names += [x["service_name"] for x in page["services"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert names == ["pg-prod", "pg-replica"] + [f"kv-{i}" for i in range(5)]
        assert pages == 4
        whole = ok(c.get(f"/v1/project/{project}/service"))
        assert whole["next_cursor"] is None and len(whole["services"]) == 7
        # projects: ours is somewhere in the pages, exactly once
        seen: list[str] = []
        cursor = None
        while True:
            query = f"?limit=3&cursor={cursor}" if cursor else "?limit=3"
            page = ok(c.get(f"/v1/project{query}"))
            seen += [p["project_name"] for p in page["projects"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen.count(project) == 1 and len(seen) == len(set(seen))
        for bad in ("?limit=0", "?limit=1001", "?cursor=0", "?cursor=x", "?cursor=2147483648"):
            r = c.get(f"/v1/project/{project}/service{bad}")
            assert r.status_code == 400, (bad, r.text)
        assert c.get(f"/v1/project/{project}x/integration").status_code == 404
