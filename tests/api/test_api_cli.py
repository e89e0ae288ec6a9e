"""The platform CLI against a real server: project, vpc, service, node and integration commands,
`-c` user_config edits, exit 2 on invalid input, and the confirmation before emptying ip_filter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from seed import MANAGEMENT, ok
from serverproc import ServerProc


def nodewall(server: ServerProc, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODEWALL_SERVER": server.url, "NODEWALL_TOKEN": server.admin,
           "NODEWALL_PROJECT": "cli"}
    return subprocess.run([sys.executable, "-m", "nodewall", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_drives_the_api(sqlite_server: ServerProc) -> None:
    server = sqlite_server
    with server.client() as c:
        ok(c.put("/v1/platform", json={"management_networks": MANAGEMENT}))
    assert nodewall(server, "project", "create", "cli", "--base-port", "15000").returncode == 0
    r = nodewall(server, "vpc", "create", "--cloud", "aws-eu-west-1",
                 "--network-cidr", "10.30.0.0/24", "--peer-cidr", "10.60.0.0/16")
    assert r.returncode == 0, r.stderr
    vpc = json.loads(r.stdout)["project_vpc_id"]
    r = nodewall(server, "service", "create", "kafka-1", "-t", "kafka", "--cloud", "aws-eu-west-1",
                 "--project-vpc-id", vpc, "-c",
                 'ip_filter=["10.30.0.0/24", {"network": "10.60.1.0/24", "description": "app"}]',
                 "-c", "kafka_rest=true", "-c", "public_access.kafka=true", "--json")
    assert r.returncode == 0, r.stderr
    svc = json.loads(r.stdout)["service"]
    assert svc["user_config"]["public_access"] == {"kafka": True}
    assert "kafka_rest" in {x["component"] for x in svc["components"]}
    r = nodewall(server, "node", "add", "kafka-1", "kafka-1-a", "-a", "10.30.0.5")
    assert r.returncode == 0, r.stderr
    assert nodewall(server, "node", "replace", "kafka-1", "kafka-1-a",
                    "-a", "10.30.0.6").returncode == 0
    r = nodewall(server, "service", "create", "connect", "-t", "kafka_connect",
                 "--cloud", "aws-eu-west-1", "--project-vpc-id", vpc)
    assert r.returncode == 0, r.stderr
    r = nodewall(server, "integration", "create", "-t", "kafka_connect", "-s", "kafka-1",
                 "-d", "connect")
    assert r.returncode == 0, r.stderr
    # a nested edit keeps the sibling keys
    r = nodewall(server, "service", "update", "kafka-1", "-c", "public_access.kafka_rest=true",
                 "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["service"]["user_config"]["public_access"] == {
        "kafka": True, "kafka_rest": True}
    r = nodewall(server, "service", "get", "kafka-1")
    assert r.returncode == 0 and "component kafka:" in r.stdout and "10.30.0.6" in r.stdout
    r = nodewall(server, "service", "list")
    assert r.returncode == 0 and "kafka-1" in r.stdout and "connect" in r.stdout

    # invalid input: exit 2, the field named, nothing changed
    before = server.dump()
    r = nodewall(server, "service", "update", "kafka-1", "-c", 'ip_filter=["10.0.0.0/40"]')
    assert r.returncode == 2 and "Invalid 'user_config': Invalid input for ip_filter[0]" in r.stderr
    r = nodewall(server, "node", "add", "kafka-1", "kafka-1-b", "-a", "nope")
    assert r.returncode == 2 and "addresses[0]" in r.stderr
    # emptying ip_filter asks first; "no" changes nothing
    r = nodewall(server, "service", "update", "kafka-1", "-c", "ip_filter=[]", stdin="n\n")
    assert r.returncode != 0 and "no client" in r.stdout + r.stderr
    assert server.dump() == before
    r = nodewall(server, "service", "update", "kafka-1", "-c", "ip_filter=[]", "--yes", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["service"]["user_config"]["ip_filter"] == []
    assert nodewall(server, "node", "remove", "kafka-1", "kafka-1-a").returncode == 0


def test_token_create_works_before_the_server_and_is_accepted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ}
    made = subprocess.run([sys.executable, "-m", "nodewall", "token", "create", "--admin",
                           "--database", url], capture_output=True, text=True, env=env,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("nw_")
    assert subprocess.run([sys.executable, "-m", "nodewall", "token", "create", "--database",
                           url], capture_output=True, text=True, timeout=60).returncode == 2
    server = ServerProc(url)
    server.admin = token
    server.start()
    try:
        with server.client() as c:
            ok(c.post("/v1/project", json={"project": "tok"}))
    finally:
        server.stop()
