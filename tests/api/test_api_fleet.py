"""The fleet view against a real server (SQLite and PostgreSQL): `GET
/v1/project/{project}/nodes/status` and `nodewall node status` show per node the desired and
applied versions and flag the nodes whose agent has not reported the desired one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from seed import ok, seed, version
from serverproc import ServerProc


def test_nodes_lag_until_their_agent_reports_the_desired_version(server: ServerProc,
                                                                 project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        nodes = ok(c.get(f"/v1/project/{project}/nodes/status"))["nodes"]
        prod1 = next(n for n in nodes if n["node"] == s.prod1)
        assert prod1["lagging"] and prod1["applied_version"] is None, prod1
        assert prod1["desired_version"] == version(c, s.prod1)
        assert prod1["reported_at"] is None and prod1["behind_seconds"] >= 0
        with server.client(server.token(s.prod1)) as agent:
            ok(agent.post(f"/v1/node/{s.prod1}/status",
                          json={"applied_version": version(c, s.prod1), "backend": "nftables"}))
        only = ok(c.get(f"/v1/project/{project}/nodes/status",
                        params={"service": "pg-prod"}))["nodes"]
        assert {n["service"] for n in only} == {"pg-prod"}
        prod1 = next(n for n in only if n["node"] == s.prod1)
        assert not prod1["lagging"] and prod1["backend"] == "nftables", prod1
        assert prod1["behind_seconds"] is None and prod1["reported_at"] is not None
        # a change makes it lag again until the next report
        ok(c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": ["10.20.0.0/28"]}}))
        again = ok(c.get(f"/v1/project/{project}/nodes/status"))["nodes"]
        assert next(n for n in again if n["node"] == s.prod1)["lagging"]
        assert c.get(f"/v1/project/{project}/nodes/status",
                     params={"service": "nope"}).status_code == 404
        with server.client(server.token(s.prod1)) as agent:
            assert agent.get(f"/v1/project/{project}/nodes/status").status_code == 403

        env = {**os.environ, "NODEWALL_SERVER": server.url, "NODEWALL_TOKEN": server.admin,
               "COLUMNS": "250"}
        done = subprocess.run([sys.executable, "-m", "nodewall", "node", "status",
                               "--project", project, "--json"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 1, done.stderr  # nodes lag
        assert {n["node"] for n in json.loads(done.stdout)["nodes"]} >= {s.prod1, s.prod2}
        done = subprocess.run([sys.executable, "-m", "nodewall", "node", "status",
                               "--project", project], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1 and "lagging" in done.stdout and s.prod1 in done.stdout
