"""Boot: before any contact with the server the agent applies the policy it last verified
(its cache), or with none the fail-safe policy, and only then tells systemd READY. A reboot is
a fresh network namespace (an empty kernel, no route to the server) with the same state
directory; the test binds the unix datagram socket `$NOTIFY_SOCKET` names and, the moment
READY=1 arrives, reads the kernel: it must already hold the policy."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BACKENDS, Cluster
from lab import MANAGEMENT, Agent, kernel_status, reach
from netns import HOSTS as KERNEL_HOSTS
from netns import ping, sh

from nodewall.agent.failsafe import failsafe_policy
from nodewall.backends.base import Status


class NotifySocket:
    """A unix datagram socket like systemd's notify socket; on READY=1 it reads the kernel of
    `ns` at once (before anything else can happen) and keeps what it found."""

    def __init__(self, path: Path, ns: str, backend: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.ns, self.backend = ns, backend
        self.messages: list[tuple[float, str]] = []
        self.kernel_at_ready: Status | None = None
        self.stop = False
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.stop:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "READY=1" in data.split("\n") and self.kernel_at_ready is None:
                self.kernel_at_ready = kernel_status(self.ns, self.backend)
            self.messages.append((time.monotonic(), data))

    def ready_count(self) -> int:
        return sum("READY=1" in m.split("\n") for _, m in self.messages)

    def wait_ready(self, timeout: float = 15) -> Status:
        deadline = time.monotonic() + timeout
        while self.kernel_at_ready is None:
            assert time.monotonic() < deadline, f"no READY=1 within {timeout} s: {self.messages}"
            time.sleep(0.01)
        return self.kernel_at_ready

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=2)
        self.sock.close()


@contextlib.contextmanager
def fresh_namespace(prefix: str) -> Iterator[str]:
    """A namespace as a node has at boot: loopback only, an empty firewall."""
    name = f"{prefix}-boot{secrets.token_hex(2)}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "set", "lo", "up", ns=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def rebooted(cluster: Cluster, role: str, backend: str, ns: str, tmp: Path,
             *extra: str) -> tuple[Agent, NotifySocket]:
    """The agent of `role` started in namespace `ns` (same state dir), READY awaited."""
    template = cluster.agent(role, backend, *extra)
    agent = Agent(ns, template.node, backend, cluster.lab.workdir, template.args,
                  env={"NOTIFY_SOCKET": str(tmp / "notify")}, tag="-rebooted")
    cluster.lab.agents.append(agent)
    listener = NotifySocket(tmp / "notify", ns, backend)
    agent.start()
    return agent, listener


@pytest.mark.parametrize("backend", BACKENDS)
def test_reboot_applies_the_cached_policy_before_ready(cluster: Cluster, backend: str,
                                                       tmp_path: Path) -> None:
    first = cluster.agent("n1", backend).start()
    version = cluster.converged(first, "n1")
    first.wait_event("reported", match=lambda e: e["applied_version"] == version)
    assert first.stop() == 0, "SIGTERM: a clean stop"
    assert first.kernel().version == version, "stopping keeps the rules"
    assert any(e["event"] == "stopping" and e["rules"] == "kept" for e in first.events())

    with fresh_namespace(cluster.lab.topo.prefix) as ns:
        assert not kernel_status(ns, backend).present
        agent, listener = rebooted(cluster, "n1", backend, ns, tmp_path)
        try:
            held = listener.wait_ready()
            assert (held.version, held.drift) == (version, ()), (
                f"at READY the kernel must hold the cached policy {version}: {held}")
            boot = agent.wait_event("boot_applied")
            assert boot["source"] == "cache" and boot["version"] == version
            agent.wait_event("server_unavailable")  # no route from here: it keeps trying
            assert agent.kernel().version == version
            assert listener.ready_count() == 1
        finally:
            listener.close()
            agent.kill()


@pytest.mark.parametrize("backend", BACKENDS)
def test_reboot_without_cache_applies_the_failsafe_before_ready(cluster: Cluster,
                                                                backend: str,
                                                                tmp_path: Path) -> None:
    with fresh_namespace(cluster.lab.topo.prefix) as ns:
        agent, listener = rebooted(cluster, "n1", backend, ns, tmp_path,
                                   "--management-network", *MANAGEMENT)
        try:
            held = listener.wait_ready()
            want = failsafe_policy(cluster.node("n1"), MANAGEMENT).version
            assert (held.version, held.drift) == (want, ()), (
                f"at READY the kernel must hold the fail-safe policy {want}: {held}")
            assert agent.wait_event("boot_applied")["source"] == "fail-safe"
            assert agent.wait_event("no_cache")
            assert any("STATUS=holding fail-safe policy" in m for _, m in listener.messages)
        finally:
            listener.close()
            agent.kill()


@pytest.mark.parametrize("backend", BACKENDS)
def test_failsafe_policy_enforced(cluster: Cluster, backend: str) -> None:
    """Server unreachable, no cache: management reaches 22 and 30287 from its networks only,
    every other port and source is rejected, the needed ICMP passes."""
    lab = cluster.lab
    mgmt_v4 = KERNEL_HOSTS["mgmt"][0]
    assert mgmt_v4.startswith("198.51.100.")
    agent = cluster.agent("n1", backend, "--management-network", *MANAGEMENT,
                          server_url="https://10.20.0.2:1").start()
    agent.wait_event("boot_applied")
    agent.wait_event("server_unavailable")
    for port in (22, 30287):
        assert reach(lab, "mgmt", "n1", port) == "open"
        assert reach(lab, "client", "n1", port) == "refused"
    for src in ("mgmt", "client", "n2"):
        assert reach(lab, src, "n1", cluster.port) == "refused"
    assert ping(lab.ns("client"), "203.0.113.10", "10.20.0.11") == "open"
    agent.kill()
    lab.reset_node("n1")

    anywhere = cluster.agent("n1", backend, server_url="https://10.20.0.2:1", tag="-anywhere")
    anywhere.state_dir = anywhere.state_dir.with_name(anywhere.state_dir.name + "-anywhere")
    anywhere.start()
    anywhere.wait_event("boot_applied")
    assert reach(lab, "client", "n1", 22) == "open", "no management network: from anywhere"
    assert reach(lab, "client", "n1", cluster.port) == "refused"
