"""Fixtures of the agent suite: one lab (namespaces and a real server on SQLite) per session,
a fresh project with one pg service per test, agents stopped and node kernels cleaned after
each test even when it fails.

Outside CI a test that cannot run here (not root, no namespaces) is skipped; with `CI` set it
fails instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "kernel"))

from lab import HOSTS, MANAGEMENT, NODE_ROLES, Agent, Api, Lab, ok, wait_until  # noqa: E402
from netns import kernel_ready  # noqa: E402

#: Every convergence test runs with each backend.
BACKENDS = ["nftables", "iptables"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.fspath).startswith(str(HERE)) and "units" not in item.name and \
                "test_agent_units" not in str(item.fspath):
            item.add_marker(pytest.mark.kernel)


def tls_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the server's address (it is its own CA)."""
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=nodewall-test-server",
         "-addext", f"subjectAltName=IP:{HOSTS['ctl'][0]}"],
        check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    why = kernel_ready()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"agent tests must run in CI: {why}")
        pytest.skip(why)
    workdir = tmp_path_factory.mktemp("agentlab")
    made = Lab(workdir)
    try:
        made.open()
        made.start_server(None)
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def api(lab: Lab) -> Iterator[Api]:
    assert lab.server is not None
    client = lab.server.api()
    ok(client.put("/v1/platform", json={"management_networks": MANAGEMENT}))
    try:
        yield client
    finally:
        client.close()


@dataclass
class Cluster:
    """One pg service in the public network of a fresh project, nodes in namespaces n1..n3."""

    lab: Lab
    api: Api
    project: str
    service: str = "pg"
    port: int = 0

    def node(self, role: str) -> str:
        return f"{self.project}-{role}"

    def path(self, role: str | None = None) -> str:
        base = f"/v1/project/{self.project}/service/{self.service}"
        return base if role is None else f"{base}/node/{self.node(role)}"

    def add_node(self, role: str) -> None:
        ok(self.api.put(self.path(role), json={"addresses": list(HOSTS[role])}))

    def remove_node(self, role: str) -> None:
        ok(self.api.delete(self.path(role)))

    def set_ip_filter(self, ip_filter: list[str]) -> None:
        ok(self.api.put(self.path(), json={"user_config": {"ip_filter": ip_filter}}))

    def version(self, role: str) -> str:
        return str(ok(self.api.get(f"/v1/node/{self.node(role)}/policy"))["version"])

    def agent(self, role: str, backend: str, *extra: str, **kwargs: object) -> Agent:
        return self.lab.agent(role, self.node(role), backend, *extra, **kwargs)  # type: ignore[arg-type]

    def converged(self, agent: Agent, role: str, timeout: float = 15) -> str:
        """Wait until the kernel of `role` holds the server's current policy, exactly."""
        want = self.version(role)

        def holds() -> bool:
            status = agent.kernel()
            return status.version == want and not status.drift

        wait_until(holds, timeout, f"{role} kernel holding {want}", every=0.02)
        return want


@pytest.fixture
def cluster(lab: Lab, api: Api) -> Iterator[Cluster]:
    project = "p" + uuid.uuid4().hex[:8]
    ok(api.post("/v1/project", json={"project": project, "base_port": 14000}))
    made = Cluster(lab, api, project)
    ok(api.post(f"/v1/project/{project}/service", json={
        "service_name": made.service, "service_type": "pg", "cloud_name": "aws-eu-west-1",
        "user_config": {"ip_filter": ["203.0.113.0/24"]}}))
    for role in ("n1", "n2"):
        made.add_node(role)
    body = ok(api.get(made.path()))
    made.port = {c["component"]: c["port"] for c in body["service"]["components"]}["pg"]
    for role in NODE_ROLES:
        lab.listeners[role].ensure(tcp={made.port})
    try:
        yield made
    finally:
        for a in lab.agents:
            a.kill()
        lab.agents.clear()
        for role in NODE_ROLES:
            lab.reset_node(role)
        if lab.server is not None and lab.server.proc is None:
            lab.server.start()  # a test that killed it must not break the next one
