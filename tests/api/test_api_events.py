"""The audit trail against a real server on SQLite and on PostgreSQL: every accepted change is
an event (time, token id, route, summary, resulting versions), newest first and paginated;
refused requests and dry runs are not stored (refusals are counted in /metrics); customer
descriptions never reach an event; a deleted project's events stay readable."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import httpx
from seed import ok, seed, version
from serverproc import ServerProc
from sqlalchemy import create_engine, select

from nodewall.server.auth import hash_token
from nodewall.store import normalise_url
from nodewall.store.models import TokenRow


def token_id(server: ServerProc, token: str) -> int:
    engine = create_engine(normalise_url(server.database))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(TokenRow.id).where(
                TokenRow.token_hash == hash_token(token))).scalar_one())
    finally:
        engine.dispose()


def project_events(c: httpx.Client, project: str) -> list[dict[str, Any]]:
    """All events of the project (its own, not the platform-wide ones), following pages."""
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = ok(c.get(f"/v1/project/{project}/events",
                        params={"limit": 3, **({"cursor": cursor} if cursor else {})}))
        assert len(page["events"]) <= 3
        events += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            return [e for e in events if e["project"] == project]


def refused_count(c: httpx.Client, route: str, status: int) -> float:
    text = c.get("/metrics").text
    pattern = (r'^nodewall_changes_refused_total\{[^}]*route="' + re.escape(route)
               + r'"[^}]*status="' + str(status) + r'"[^}]*\} ([0-9.e+]+)$')
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_every_accepted_change_is_an_event(server: ServerProc, project: str) -> None:
    started = time.time()
    with server.client() as c:
        s = seed(c, project)
        events = project_events(c, project)
        assert [e["summary"]["action"] for e in events] == [
            "integration.create", "node.add", "node.add", "node.add", "service.create",
            "service.create", "vpc.create", "project.create"]
        ids = [e["id"] for e in events]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
        admin = token_id(server, server.admin)
        assert all(e["token_id"] == admin for e in events)
        node_add = events[1]
        assert node_add["method"] == "PUT"
        assert node_add["route"] == "/v1/project/{project}/service/{service}/node/{node}"
        assert node_add["path"] == s.node("pg-replica", s.rep1)
        assert node_add["summary"]["addresses"] == ["10.20.0.21"]
        integ = events[0]
        assert integ["versions"][s.prod1] == version(c, s.prod1)
        for e in events:
            at = datetime.fromisoformat(e["at"]).timestamp()
            assert started - 5 <= at <= time.time() + 5, e["at"]
        assert "token" not in json.dumps(events).replace("token_id", "")
        assert server.admin not in json.dumps(events)


def test_descriptions_never_reach_an_event(server: ServerProc, project: str) -> None:
    secret = "CUSTOMER-SECRET-7f3a office\n'; --"
    with server.client() as c:
        s = seed(c, project)
        ok(c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": [
            "10.20.0.0/26", {"network": "10.20.0.64/26", "description": secret}]}}))
        ok(c.post(f"/v1/project/{project}/service", json={
            "service_name": "kv", "service_type": "valkey", "cloud_name": "aws-eu-west-1",
            "user_config": {"ip_filter": [{"network": "192.0.2.0/24", "description": secret}]}}))
        events = project_events(c, project)
        update = next(e for e in events if e["summary"]["action"] == "service.update")
        assert update["summary"]["ip_filter"] == {
            "added": ["10.20.0.0/26", "10.20.0.64/26"],
            "removed": ["10.20.0.0/24", "10.50.1.0/24"]}
        assert set(update["versions"]) == {s.prod1, s.prod2}
        assert "CUSTOMER-SECRET" not in json.dumps(events)
        assert "CUSTOMER-SECRET" not in repr(server.dump()["event"])


def test_refusals_and_dry_runs_are_not_stored(server: ServerProc, project: str) -> None:
    route = "/v1/project/{project}/service/{service}"
    with server.client() as c:
        s = seed(c, project)
        before = project_events(c, project)
        bad = refused_count(c, route, 400)
        missing = refused_count(c, route, 404)
        r = c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": ["10.0.0.0/40"]}})
        assert r.status_code == 400
        assert c.put(s.service("nope"), json={"user_config": {}}).status_code == 404
        assert c.post(f"/v1/project/{project}/service", json={
            "service_name": "pg-prod", "service_type": "pg",
            "cloud_name": "aws-eu-west-1"}).status_code == 409
        ok(c.put(s.service("pg-prod"), params={"dry_run": "true"},
                 json={"user_config": {"ip_filter": ["10.20.0.0/25"]}}))
        # a change that changes nothing is not an event either
        ok(c.put(s.node("pg-prod", s.prod1), json={"addresses": ["10.20.0.11"]}))
        assert project_events(c, project) == before
        assert refused_count(c, route, 400) == bad + 1
        assert refused_count(c, route, 404) == missing + 1
        assert refused_count(c, "/v1/project/{project}/service", 409) >= 1
    with server.client(server.token(node=s.prod1)) as agent:
        assert agent.get(f"/v1/project/{project}/events").status_code == 403


def test_a_deleted_projects_events_stay_readable(server: ServerProc, project: str) -> None:
    with server.client() as c:
        assert c.get(f"/v1/project/{project}/events").status_code == 404
        s = seed(c, project)
        ok(c.delete(f"/v1/project/{project}?force=true"))
        events = project_events(c, project)
        assert events[0]["summary"]["action"] == "project.delete"
        assert events[0]["summary"]["nodes"] == sorted([s.prod1, s.prod2, s.rep1])
        assert events[0]["versions"] == {s.prod1: None, s.prod2: None, s.rep1: None}
        assert len(events) == 9
        assert c.get(f"/v1/project/{project}/events?limit=0").status_code == 400
