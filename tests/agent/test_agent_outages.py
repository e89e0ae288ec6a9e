"""Outages and bad answers: with the server SIGKILLed the nodes keep their rules and converge
once it is back; a server answering garbage or 500s leaves the rules alone and is retried with
growing, jittered delays; a policy the kernel refuses leaves the previous one in place, is
reported with the error and retried with backoff, never in a hot loop."""

from __future__ import annotations

import http.server
import itertools
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKENDS, Cluster
from lab import HOSTS, Lab, reach, wait_until
from netns import entered

from nodewall.agent.answer import encode_answer
from nodewall.agent.failsafe import failsafe_policy


@pytest.mark.parametrize("backend", BACKENDS)
def test_server_killed_rules_kept_then_converge(cluster: Cluster, backend: str) -> None:
    lab = cluster.lab
    assert lab.server is not None
    agents = {role: cluster.agent(role, backend).start() for role in ("n1", "n2")}
    held = {role: cluster.converged(agent, role) for role, agent in agents.items()}

    lab.server.kill()
    for agent in agents.values():
        agent.wait_event("server_unavailable", timeout=10)
    time.sleep(1.5)  # a few retries
    for role, agent in agents.items():
        status = agent.kernel()
        assert (status.version, status.drift) == (held[role], ()), f"{role} must keep its rules"
        assert reach(lab, "client", role, cluster.port) == "open"
        assert reach(lab, "stranger", role, cluster.port) == "refused"
        assert agent.proc is not None and agent.proc.poll() is None

    lab.server.start()
    cluster.set_ip_filter(["192.0.2.0/24"])
    for role, agent in agents.items():
        agent.wait_event("server_back", timeout=40)
        cluster.converged(agent, role, timeout=40)
        assert reach(lab, "stranger", role, cluster.port) == "open"
        assert reach(lab, "client", role, cluster.port) == "refused"


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class FakeControlPlane:
    """A control plane that answers from a script, in the server's namespace: failure
    injection for what the real server never does. Records every request with its time."""

    def __init__(self, lab: Lab, port: int, script: Callable[[str, int], tuple[int, bytes]]
                 ) -> None:
        self.requests: list[tuple[float, str, str, bytes]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append((time.monotonic(), self.command, self.path, body))
                same = sum(1 for r in fake.requests if r[1] == self.command)
                status, data = script(self.command, same)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        with entered(lab.ns("ctl")):
            self.httpd = _Server((HOSTS["ctl"][0], port), Handler)
        self.url = f"http://{HOSTS['ctl'][0]}:{port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def polls(self) -> list[float]:
        return [t for t, method, path, _ in self.requests if method == "GET"]

    def reports(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, method, _, b in self.requests if method == "POST"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[
        Callable[[Callable[[str, int], tuple[int, bytes]]], FakeControlPlane]]:
    made: list[FakeControlPlane] = []

    def start(script: Callable[[str, int], tuple[int, bytes]]) -> FakeControlPlane:
        made.append(FakeControlPlane(cluster.lab, 8600 + len(made), script))
        return made[-1]

    try:
        yield start
    finally:
        for f in made:
            f.close()


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_garbage_and_500s_keep_rules_and_back_off(cluster: Cluster, fake: Any,
                                                  tmp_path: Path) -> None:
    node = cluster.node("n1")
    good = encode_answer(failsafe_policy(node, ["198.51.100.0/28"]), time.time())
    bad = [b"{not json", b'{"version": "x", "policy": {}}', b"<html>proxy</html>"]

    def script(method: str, n: int) -> tuple[int, bytes]:
        if method == "POST":
            return 200, b'{"node": "x", "applied_version": null, "backend": null, "error": null}'
        if n <= 5:  # the n-th poll
            return (500, b'{"message": "boom"}') if n % 2 else (200, bad[n // 2])
        return 200, good

    server = fake(script)
    agent = cluster.agent("n1", "nftables", server_url=server.url).start()
    boot = agent.wait_event("boot_applied")
    assert boot["source"] == "fail-safe"
    agent.wait_event("applied", timeout=40, match=lambda e: e["version"] != boot["version"])
    polls = server.polls()
    assert len(polls) >= 6
    gaps = _gaps(polls[:6])
    assert min(gaps) > 0.2, f"retries must be spaced out (backoff), got gaps {gaps}"
    assert gaps[-1] > gaps[0] * 2, f"the delay must grow, got gaps {gaps}"
    failures = [e for e in agent.events() if e["event"] == "server_unavailable"]
    assert failures, "bad answers must be logged"
    assert any("bad policy answer" in e["reason"] for e in failures)
    assert any("HTTP 500" in e["reason"] for e in failures)
    assert all(e["rules"] == "kept" for e in failures)


def test_refused_policy_keeps_previous_reports_and_backs_off(cluster: Cluster,
                                                            fake: Any) -> None:
    node = cluster.node("n1")
    refused = failsafe_policy(node, ["198.51.100.0/28"])
    # A set element no kernel takes: the backend refuses the whole policy.
    sets = list(refused.sets)
    sets[0] = type(sets[0]).of(sets[0].name, sets[0].family, False, sets[0].purpose,
                               ["10.0.0.0/33"], [("x",)])
    broken = type(refused)(refused.node, refused.service, refused.service_type,
                           refused.environment, tuple(sets), refused.rules)
    body = encode_answer(broken, time.time())

    def script(method: str, n: int) -> tuple[int, bytes]:
        if method == "POST":
            return 200, b"{}"
        return 200, body

    server = fake(script)
    agent = cluster.agent("n1", "nftables", server_url=server.url).start()
    boot = agent.wait_event("boot_applied")
    first = agent.wait_event("apply_failed", timeout=10)
    assert first["kept"] == boot["version"] and first["version"] == broken.version
    time.sleep(4)
    attempts = [e for e in agent.events() if e["event"] == "apply_failed"]
    assert 2 <= len(attempts) <= 4, f"refused policy retried {len(attempts)} times in ~4 s"
    assert all(b["retry_in"] >= a["retry_in"] / 2 for a, b in itertools.pairwise(attempts))
    status = agent.kernel()
    assert (status.version, status.drift) == (boot["version"], ()), "previous policy kept"
    wait_until(lambda: any(r.get("error") for r in server.reports()), 10,
               "the refusal reported to the server")
    report = next(r for r in server.reports() if r.get("error"))
    assert report["applied_version"] == boot["version"]
    assert broken.version in report["error"]
    assert len(server.polls()) <= 6, "the refused version is not fetched again and again"


def test_refused_token_keeps_rules_then_a_rotated_token_is_picked_up(cluster: Cluster) -> None:
    lab = cluster.lab
    assert lab.server is not None
    other = lab.server.token(cluster.node("n2"))  # a real token, of another node: 403
    agent = cluster.agent("n1", "nftables", "--management-network", "198.51.100.0/28",
                          token=other).start()
    boot = agent.wait_event("boot_applied")
    refused = agent.wait_event("auth_refused")
    assert refused["reason"].startswith("403") and refused["rules"] == "kept"
    time.sleep(1)
    assert agent.kernel().version == boot["version"], "the fail-safe rules are kept"
    assert other not in agent.log.read_text()

    token_file = next(Path(a) for a in agent.args if a.endswith(f"token-{cluster.node('n1')}"))
    token_file.write_text(lab.server.token(cluster.node("n1")) + "\n")  # rotated in place
    cluster.converged(agent, "n1", timeout=40)
    assert any(e["event"] == "server_back" for e in agent.events())


def test_a_policy_that_shuts_management_out_is_never_applied(cluster: Cluster,
                                                             fake: Any) -> None:
    """A served policy that admits the management ports only from a network the agent was not
    told of is refused once (not retried), reported, the kernel keeping its rules; the next
    version is applied; `--allow-lockout` applies such a policy."""
    node = cluster.node("n1")
    locked = failsafe_policy(node, ["203.0.113.0/28"])  # management moved out of reach
    good = failsafe_policy(node, ["198.51.100.0/28", "203.0.113.0/28"])
    serving = [encode_answer(locked, time.time())]

    def script(method: str, n: int) -> tuple[int, bytes]:
        return (200, b"{}") if method == "POST" else (200, serving[0])

    server = fake(script)
    agent = cluster.agent("n1", "nftables", "--management-network", "198.51.100.0/28",
                          server_url=server.url).start()
    boot = agent.wait_event("boot_applied")
    refused = agent.wait_event("apply_refused", timeout=10)
    assert (refused["reason"], refused["version"], refused["kept"]) == (
        "lockout", locked.version, boot["version"])
    assert "198.51.100.0/28: SSH 22/tcp from 198.51.100.0 rejected" in refused["error"]
    wait_until(lambda: any(locked.version in (r.get("error") or "") for r in server.reports()),
               10, "the refusal reported to the server")
    time.sleep(2)
    events = agent.events()
    assert sum(e["event"] == "apply_refused" for e in events) == 1, "refused once, not retried"
    assert not any(e["event"] == "applied" for e in events)
    assert (agent.kernel().version, agent.kernel().drift) == (boot["version"], ())

    serving[0] = encode_answer(good, time.time())
    agent.wait_event("applied", timeout=15, match=lambda e: e["version"] == good.version)
    agent.stop()

    serving[0] = encode_answer(locked, time.time())
    forced = cluster.agent("n1", "nftables", "--management-network", "198.51.100.0/28",
                           "--allow-lockout", server_url=server.url, tag="forced").start()
    forced.wait_event("applied", timeout=15, match=lambda e: e["version"] == locked.version)
    assert agent.kernel().version == locked.version
