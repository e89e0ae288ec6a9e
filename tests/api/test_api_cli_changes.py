"""The CLI's change preview, deletes, lists and audit trail against a real server: `--dry-run`
prints a readable diff (or JSON with `--format json`) and changes nothing, deletes refuse what
the API refuses (exit 1) and do what it does, `events` shows the accepted changes."""

from __future__ import annotations

import json

from seed import ok, seed
from serverproc import ServerProc
from test_api_cli import nodewall


def test_dry_run_previews_and_changes_nothing(sqlite_server: ServerProc) -> None:
    server = sqlite_server
    with server.client() as c:
        s = seed(c, "cli")
    before = server.dump()
    edit = 'ip_filter=["10.20.0.0/25", {"network": "10.50.0.0/16", "description": "hq"}]'
    r = nodewall(server, "service", "update", "pg-prod", "-c", edit, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "dry run" in r.stdout and "nothing was changed" in r.stdout
    assert s.prod1 in r.stdout and s.prod2 in r.stdout and s.rep1 not in r.stdout
    assert "+ 10.20.0.0/25" in r.stdout and "- 10.20.0.0/24" in r.stdout
    assert "hq" not in r.stdout, "a description reached the preview"
    assert r.stdout.count("set clients_v4") == 1, "identical diffs are shown once"
    r = nodewall(server, "service", "update", "pg-prod", "-c", edit, "--dry-run",
                 "--format", "json")
    assert r.returncode == 0, r.stderr
    preview = json.loads(r.stdout)
    assert preview["dry_run"] is True
    assert [n["node"] for n in preview["nodes"]] == [s.prod1, s.prod2]
    # no confirmation is asked for a preview of an empty ip_filter
    r = nodewall(server, "service", "update", "pg-prod", "-c", "ip_filter=[]", "--dry-run")
    assert r.returncode == 0 and "- 10.20.0.0/24" in r.stdout, r.stdout + r.stderr
    r = nodewall(server, "node", "add", "pg-prod", "cli-prod-3", "-a", "10.20.0.13",
                 "--dry-run")
    assert r.returncode == 0 and "+ 10.20.0.13/32" in r.stdout, r.stdout + r.stderr
    r = nodewall(server, "project", "delete", "cli", "--force", "--dry-run")
    assert r.returncode == 0 and "(removed)" in r.stdout, r.stdout + r.stderr
    r = nodewall(server, "service", "update", "pg-prod", "-c", edit, "--dry-run",
                 "--format", "yaml")
    assert r.returncode == 2 and "--format" in r.stderr
    r = nodewall(server, "service", "update", "pg-prod", "-c", 'ip_filter=["x"]', "--dry-run")
    assert r.returncode == 2 and "ip_filter[0]" in r.stderr
    assert server.dump() == before, "a dry run changed the store"


def test_deletes_lists_and_events(sqlite_server: ServerProc) -> None:
    server = sqlite_server
    with server.client() as c:
        s = seed(c, "cli")
        spare = ok(c.post("/v1/project/cli/vpcs", json={
            "cloud_name": "aws-eu-west-1", "network_cidr": "10.80.0.0/24"}))["project_vpc_id"]
    r = nodewall(server, "project", "list")
    assert r.returncode == 0 and r.stdout.startswith("cli\t"), r.stdout
    r = nodewall(server, "integration", "list", "--json")
    assert r.returncode == 0, r.stderr
    ident = json.loads(r.stdout)["integrations"][0]["integration_id"]
    r = nodewall(server, "project", "delete", "cli", "--yes")
    assert r.returncode == 1 and "still has 2 service(s)" in r.stderr, r.stderr
    r = nodewall(server, "vpc", "delete", s.vpc, "--yes")
    assert r.returncode == 1 and "still used by" in r.stderr, r.stderr
    r = nodewall(server, "vpc", "delete", spare, "--yes")
    assert r.returncode == 0, r.stderr
    r = nodewall(server, "integration", "delete", str(ident), "--yes")
    assert r.returncode == 0, r.stderr
    r = nodewall(server, "integration", "delete", str(ident), "--yes")
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = nodewall(server, "events", "-n", "3", "--format", "json")
    assert r.returncode == 0, r.stderr
    events = json.loads(r.stdout)["events"]
    assert [e["summary"]["action"] for e in events] == [
        "integration.delete", "vpc.delete", "vpc.create"]
    r = nodewall(server, "events")
    assert r.returncode == 0 and "integration.delete" in r.stdout and "node.add" in r.stdout
    r = nodewall(server, "project", "delete", "cli", "--force", "--yes")
    assert r.returncode == 0, r.stderr
    r = nodewall(server, "events", "-n", "1", "--format", "json")
    assert json.loads(r.stdout)["events"][0]["summary"]["action"] == "project.delete"
