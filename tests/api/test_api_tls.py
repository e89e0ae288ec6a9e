"""`nodewall server --tls-cert F --tls-key F` serves HTTPS: a client that trusts the certificate
(httpx, and the agent's own client with --ca-file) gets its answers; one that does not is
refused at the handshake. The certificate is made in the test with openssl."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from seed import ok, seed
from serverproc import ROOT, free_port

from nodewall.agent.client import ControlPlane, Unavailable
from nodewall.server.auth import create_token
from nodewall.store import open_store


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("openssl missing under CI")
        pytest.skip("openssl missing")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    database = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(database)
    try:
        admin = create_token(store, node=None)
    finally:
        store.dispose()
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodewall", "server", "--database", database,
             "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                trust = ssl.create_default_context(cafile=str(cert))
                if httpx.get(f"{url}/healthz", verify=trust, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.05)
        yield url, cert, admin
    finally:
        proc.terminate()
        proc.wait(10)


def test_https_with_the_ca_and_refused_without(tls_server: tuple[str, Path, str]) -> None:
    url, cert, admin = tls_server
    headers = {"Authorization": f"Bearer {admin}"}
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=url, verify=trust, headers=headers, timeout=30) as c:
        s = seed(c, "tls")
        assert ok(c.get(f"/v1/node/{s.prod1}/policy"))["version"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=5)  # the system's CAs do not know this certificate
    trusted = ControlPlane(url, s.prod1, admin, ca_file=str(cert))
    try:
        answer = trusted.fetch_policy(None, 0)
        assert getattr(answer, "version", None)
    finally:
        trusted.close()
    untrusted = ControlPlane(url, s.prod1, admin)
    try:
        with pytest.raises(Unavailable):
            untrusted.fetch_policy(None, 0)
    finally:
        untrusted.close()


def test_tls_options_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    done = subprocess.run([sys.executable, "-m", "nodewall", "server", "--tls-cert", str(cert)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "--tls-cert and --tls-key go together" in done.stderr
