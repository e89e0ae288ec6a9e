"""`nodewall token list | revoke` and the token routes, against real server processes: a list
shows ids, kinds, nodes and times but never a token; a revoked token is refused by every server
process over one database within a second, on PostgreSQL and on one SQLite file, whether it
was revoked through one server's API or on the store by the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from seed import ok
from serverproc import ROOT, ServerProc

#: SPEC section 5: a revoked token is refused by every server process within a second.
WITHIN = 1.0


def _nodewall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodewall", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


@pytest.fixture
def two_servers(database: str) -> Iterator[tuple[ServerProc, ServerProc]]:
    """Two server processes over one database (PostgreSQL, or one SQLite file)."""
    first = ServerProc(database)
    second = ServerProc(database)
    second.admin = first.admin
    for proc in (first, second):
        proc.start()
    try:
        yield first, second
    finally:
        for proc in (first, second):
            proc.stop()


def _refused_everywhere(servers: tuple[ServerProc, ...], token: str, node: str) -> float:
    """Seconds until every server answers `token` with 401 (polling each every 20 ms)."""
    start = time.monotonic()
    clients = [s.client(token, timeout=5) for s in servers]
    try:
        pending = set(range(len(clients)))
        while pending and time.monotonic() - start < 5:
            for i in list(pending):
                if clients[i].get(f"/v1/node/{node}/policy").status_code == 401:
                    pending.discard(i)
            time.sleep(0.02)
        assert not pending, f"servers {sorted(pending)} still accept the revoked token"
        return time.monotonic() - start
    finally:
        for c in clients:
            c.close()


def _id_of(server: ServerProc, node: str) -> int:
    with server.client() as c:
        tokens = ok(c.get("/v1/tokens"))["tokens"]
    return next(t["id"] for t in tokens if t["node"] == node)


def _warm(servers: tuple[ServerProc, ...], token: str, node: str) -> None:
    """Each server has just verified (and cached) the token: the worst case for revoking."""
    for s in servers:
        with s.client(token) as c:
            assert c.get(f"/v1/node/{node}/policy").status_code in (200, 404)


def test_revoked_through_one_server_refused_by_both(
        two_servers: tuple[ServerProc, ServerProc]) -> None:
    first, _ = two_servers
    node_token = first.token("rv-node")
    _warm(two_servers, node_token, "rv-node")
    token_id = _id_of(first, "rv-node")
    with first.client() as c:
        revoked = ok(c.delete(f"/v1/tokens/{token_id}"))
    assert revoked["id"] == token_id and revoked["revoked_at"] is not None
    took = _refused_everywhere(two_servers, node_token, "rv-node")
    assert took < WITHIN, f"the revocation took {took:.2f} s to reach both servers"
    print(f"revocation through the API reached both servers after {took:.2f} s")


def test_revoked_on_the_store_refused_by_both(
        two_servers: tuple[ServerProc, ServerProc]) -> None:
    first, _ = two_servers
    node_token = first.token("rv-cli")
    _warm(two_servers, node_token, "rv-cli")
    token_id = _id_of(first, "rv-cli")
    done = _nodewall("token", "revoke", str(token_id), "--database", first.database)
    assert done.returncode == 0, done.stderr
    took = _refused_everywhere(two_servers, node_token, "rv-cli")
    assert took < WITHIN, f"the revocation took {took:.2f} s to reach both servers"
    print(f"revocation on the store reached both servers after {took:.2f} s")


def test_token_list_shows_no_secret(sqlite_server: ServerProc) -> None:
    node_token = sqlite_server.token("ls-node")
    db = sqlite_server.database
    listed = _nodewall("token", "list", "--database", db)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split("\t") == ["id", "kind", "node", "created"]
    assert any(line.split("\t")[1:3] == ["node", "ls-node"] for line in lines[1:])
    as_json = json.loads(_nodewall("token", "list", "--json", "--database", db).stdout)
    via_api = json.loads(_nodewall("token", "list", "--json", "--server", sqlite_server.url,
                                   "--token", sqlite_server.admin).stdout)
    assert as_json == via_api
    assert {t["kind"] for t in as_json["tokens"]} == {"admin", "node"}
    with sqlite_server.client() as c:
        raw = c.get("/v1/tokens").text
    for text in (listed.stdout, json.dumps(as_json), raw):
        for secret in (node_token, sqlite_server.admin, node_token[3:]):
            assert secret not in text
    from nodewall.server.auth import hash_token

    assert hash_token(node_token) not in raw and "hash" not in raw


def test_revoke_through_the_cli_and_the_api_rules(sqlite_server: ServerProc) -> None:
    node_token = sqlite_server.token("rk-node")
    token_id = _id_of(sqlite_server, "rk-node")
    done = _nodewall("token", "revoke", str(token_id), "--server", sqlite_server.url,
                     "--token", sqlite_server.admin)
    assert done.returncode == 0 and f"token {token_id} revoked" in done.stdout, done.stderr
    with sqlite_server.client(node_token) as c:
        r = c.get("/v1/node/rk-node/policy")
        assert r.status_code == 401 and r.json()["message"] == "Invalid token"
    listed = _nodewall("token", "list", "--all", "--json", "--database", sqlite_server.database)
    row = next(t for t in json.loads(listed.stdout)["tokens"] if t["id"] == token_id)
    assert row["revoked_at"] is not None
    active = json.loads(_nodewall("token", "list", "--json", "--database",
                                  sqlite_server.database).stdout)["tokens"]
    assert token_id not in {t["id"] for t in active}
    again = _nodewall("token", "revoke", str(token_id), "--database", sqlite_server.database)
    assert again.returncode == 0  # revoking twice is no error
    unknown = _nodewall("token", "revoke", "999999", "--database", sqlite_server.database)
    assert unknown.returncode == 2 and "no token with id 999999" in unknown.stderr
    with sqlite_server.client() as c:
        assert c.delete("/v1/tokens/999999").status_code == 404
        admin_ids = [t["id"] for t in ok(c.get("/v1/tokens"))["tokens"] if t["kind"] == "admin"]
        assert len(admin_ids) == 1, admin_ids  # the fresh server's own
        r = c.delete(f"/v1/tokens/{admin_ids[0]}")
        assert r.status_code == 409 and "last active admin token" in r.json()["message"]
    with httpx.Client(base_url=sqlite_server.url) as anonymous:
        assert anonymous.get("/v1/tokens").status_code == 401
    with sqlite_server.client(sqlite_server.token("rk-other")) as as_node:
        assert as_node.get("/v1/tokens").status_code == 403
        assert as_node.delete(f"/v1/tokens/{token_id}").status_code == 403
