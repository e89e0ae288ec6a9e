"""The server's own hygiene, on a real server process: store files readable by their owner
only, credentials never in its log wherever a client put them, no plain HTTP on a non-loopback
address unless asked for, status reports naming only a known backend, `token create --node`
checking the node's name."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from seed import ok, seed
from serverproc import ROOT, ServerProc

from nodewall.backends.registry import BACKENDS
from nodewall.server.schemas import KNOWN_BACKENDS


def _nodewall(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodewall", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def test_sqlite_files_are_created_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files would be 0644 without nodewall's care
    try:
        db = tmp_path / "state" / "server.db"
        proc = ServerProc(f"sqlite:///{db}")
        proc.start()
    finally:
        os.umask(old)
    try:
        with proc.client() as c:
            ok(c.post("/v1/project", json={"project": "files"}))  # the -wal file is written
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == 0o600, f"{path.name}: mode {mode:o}, expected 600"
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    finally:
        proc.stop()


def test_an_existing_world_readable_store_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    proc = ServerProc(f"sqlite:///{db}")  # creates and migrates it
    db.chmod(0o644)
    proc.start()
    try:
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
    finally:
        proc.stop()


def test_credentials_never_reach_the_log(tmp_path: Path) -> None:
    proc = ServerProc(f"sqlite:///{tmp_path / 'server.db'}", args=("--access-log",))
    proc.start()
    node_token = proc.token("log-node")
    try:
        with proc.client(token=None) as c:
            for path in (f"/v1/node/log-node/policy?token={node_token}",
                         f"/v1/node/log-node/policy?version=1&access_token={proc.admin}",
                         f"/v1/platform?api_key={node_token}&x=1",
                         f"/v1/{proc.admin}/x", f"/healthz?{node_token}"):
                c.get(path)
            c.get("/v1/platform", headers={"Authorization": f"Bearer {proc.admin}"})
            c.get("/v1/platform", headers={"Authorization": f"Bearer {node_token}x"})
            c.post("/v1/project", json={"project": "x"},
                   headers={"Authorization": f"Bearer {node_token}"})
    finally:
        proc.stop()
    log = proc.log.read_text()
    assert log.count('"GET /v1/') >= 6, f"no access log lines:\n{log[-2000:]}"
    for secret in (proc.admin, node_token, proc.admin[3:], node_token[3:]):
        assert secret not in log, f"a token reached the log:\n{log[-3000:]}"
    assert "token=<redacted>" in log and "access_token=<redacted>" in log
    assert "version=1" in log  # the rest of the URL stays readable


@pytest.mark.parametrize("listen", ["0.0.0.0:9780", "[::]:9780", "192.0.2.1:9780"])
def test_plain_http_is_refused_off_loopback(listen: str) -> None:
    done = _nodewall("server", "--database", "sqlite:///:memory:", "--listen", listen,
                     timeout=30)
    assert done.returncode == 2, done.stderr
    assert "not a loopback address" in done.stderr and "--insecure-http" in done.stderr


def test_insecure_http_off_loopback_is_allowed_when_asked(tmp_path: Path) -> None:
    """In a network namespace of its own (only its loopback exists), the server listens on
    0.0.0.0 when given --insecure-http, and says so in its log."""
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--net", "sh", "-c",
             f"ip link set lo up && exec {sys.executable} -m nodewall server --database "
             f"sqlite:///{tmp_path / 'db.sqlite'} --listen 0.0.0.0:9780 --insecure-http"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        import time

        deadline = time.monotonic() + 30
        while "Uvicorn running" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "Uvicorn running on http://0.0.0.0:9780" in text, text
        assert "plain HTTP on 0.0.0.0 (--insecure-http)" in text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_loopback_names_serve_plain_http() -> None:
    from nodewall.server.run import check_listen

    for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
        assert check_listen(host, tls=False, insecure_http=False) is None, host
    assert check_listen("0.0.0.0", tls=True, insecure_http=False) is None


def test_known_backends_are_the_registry() -> None:
    assert set(KNOWN_BACKENDS) == set(BACKENDS)


@pytest.mark.parametrize("backend", ["nft", "iptables-legacy", "<script>", ""])
def test_a_status_report_names_a_known_backend(server: ServerProc, project: str,
                                               backend: str) -> None:
    with server.client() as c:
        s = seed(c, project)
    with server.client(server.token(s.prod1)) as agent:
        r = agent.post(f"/v1/node/{s.prod1}/status", json={"backend": backend})
        assert r.status_code == 400, r.text
        assert "'backend'" in r.json()["message"] and "nftables" in r.json()["message"]
        for known in KNOWN_BACKENDS:
            ok(agent.post(f"/v1/node/{s.prod1}/status", json={"backend": known}))


def test_token_create_checks_the_node(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'server.db'}"
    proc = ServerProc(url)
    proc.start()
    try:
        with proc.client() as c:
            s = seed(c, "tok")
    finally:
        proc.stop()
    bad = _nodewall("token", "create", "--node", "Not_A;Name", "--database", url)
    assert bad.returncode == 2 and "is not a node name" in bad.stderr and not bad.stdout
    unknown = _nodewall("token", "create", "--node", "tok-nowhere", "--database", url)
    assert unknown.returncode == 2 and "no node 'tok-nowhere'" in unknown.stderr
    assert not unknown.stdout
    made = _nodewall("token", "create", "--node", s.prod1, "--database", url)
    assert made.returncode == 0 and made.stdout.startswith("nw_"), made.stderr
    early = _nodewall("token", "create", "--node", "tok-later", "--allow-unknown-node",
                      "--database", url)
    assert early.returncode == 0 and early.stdout.startswith("nw_"), early.stderr
