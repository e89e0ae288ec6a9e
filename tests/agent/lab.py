"""The agent lab: a segment of network namespaces (per-run prefix), a real `nodewall server`
process on SQLite inside one of them, and real `nodewall agent` processes, one per node, each
inside its node's namespace (`ip netns exec`), talking to the server over the segment.

Everything the lab makes is removed on `close()`, even after a failure. Traffic stays in the
lab's namespaces. The test process reaches the server from inside the server's namespace
(`Api` opens every connection there) and reads each node's kernel from inside its namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from netns import Listeners, Topology, entered, probe, sh

from nodewall.backends.base import Status
from nodewall.backends.registry import get_backend
from nodewall.server.auth import create_token
from nodewall.store import open_store

ROOT = Path(__file__).resolve().parents[2]

#: role -> (IPv4, IPv6). Nodes n1..n3 are one service's nodes; client is in ip_filter,
#: stranger is not; mgmt is in the management networks; ctl runs the server.
HOSTS: dict[str, tuple[str, str]] = {
    "ctl": ("10.20.0.2", "2001:db8:20::2"),
    "n1": ("10.20.0.11", "2001:db8:20::11"),
    "n2": ("10.20.0.12", "2001:db8:20::12"),
    "n3": ("10.20.0.13", "2001:db8:20::13"),
    "client": ("203.0.113.10", "2001:db8:1::10"),
    "stranger": ("192.0.2.99", "2001:db8:bad::99"),
    "mgmt": ("198.51.100.5", "2001:db8:ff::5"),
}
NODE_ROLES = ("n1", "n2", "n3")
MANAGEMENT = ["198.51.100.0/28", "2001:db8:ff::/64"]
SERVER_PORT = 8443


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, "
        f"got {response.status_code}: {response.text[:500]}")
    return response.json()


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               every: float = 0.005) -> Any:
    """Poll `check` until it returns something true; that value. AssertionError naming
    `what` (and the last value) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(every)


class Api:
    """An httpx client whose connections are all made inside the server's namespace."""

    def __init__(self, ns: str, url: str, token: str, verify: str | bool) -> None:
        self.ns = ns
        self._client = httpx.Client(base_url=url, timeout=30, verify=verify,
                                    headers={"Authorization": f"Bearer {token}"})

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with entered(self.ns):
            return self._client.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._client.close()


class ControlServer:
    """`nodewall server` on SQLite inside namespace `ns`, listening on `address`."""

    def __init__(self, ns: str, address: str, workdir: Path,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.ns = ns
        self.address = address
        self.database = f"sqlite:///{workdir / 'server.db'}"
        self.log = workdir / "server.log"
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin = self.token(None)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}:{SERVER_PORT}"

    @property
    def ca_file(self) -> Path | None:
        return self.tls[0] if self.tls else None

    def token(self, node: str | None) -> str:
        store = open_store(self.database)
        try:
            return create_token(store, node=node)
        finally:
            store.dispose()

    def api(self) -> Api:
        return Api(self.ns, self.url, self.admin, str(self.ca_file) if self.tls else False)

    def start(self) -> None:
        cmd = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "nodewall", "server",
               "--database", self.database, "--listen", f"{self.address}:{SERVER_PORT}",
               "--insecure-http"]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        api = self.api()
        try:
            def healthy() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
                try:
                    return api.get("/healthz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(healthy, 30, "server healthy", every=0.05)
        finally:
            api.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


def kernel_status(ns: str, backend: str) -> Status:
    """What the kernel of namespace `ns` holds, read by a fresh backend object there."""
    with entered(ns):
        return get_backend(backend).status()


class Agent:
    """One `nodewall agent` process inside a node namespace, its log a file of JSON lines."""

    def __init__(self, ns: str, node: str, backend: str, workdir: Path,
                 args: list[str], env: dict[str, str] | None = None, tag: str = "") -> None:
        self.ns = ns
        self.node = node
        self.backend = backend
        self.state_dir = workdir / f"state-{node}"
        self.log = workdir / f"agent-{node}{tag}.log"
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._events: list[dict[str, Any]] = []

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, sys.executable, "-m", "nodewall", "agent",
                "--node", self.node, "--backend", self.backend, "--state-dir",
                str(self.state_dir), *self.args]

    def start(self) -> Agent:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out, cwd=ROOT,
                                         env={**os.environ, **self.env})
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        self.proc = None
        return code

    def events(self) -> list[dict[str, Any]]:
        """Every log line so far, parsed (a line that is not JSON fails the test)."""
        with self.log.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            try:
                self._events.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"agent {self.node}: log line is not JSON: {line[:300]!r}"
                                     ) from None
        return self._events

    def wait_event(self, name: str, timeout: float = 10,
                   match: Callable[[dict[str, Any]], bool] = lambda e: True,
                   after: int = 0, every: float = 0.005) -> dict[str, Any]:
        """The first event `name` (from index `after`) that `match`es, waiting for it."""
        def found() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent {self.node} exited ({self.proc.returncode}) "
                                     f"waiting for {name}: {self.tail()}")
            for e in self.events()[after:]:
                if e.get("event") == name and match(e):
                    return e
            return None

        return wait_until(found, timeout, f"agent {self.node}: event {name}",  # type: ignore[no-any-return]
                          every=every)

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else "(no log)"

    def kernel(self) -> Status:
        return kernel_status(self.ns, self.backend)

    def metrics(self, port: int = 9274) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The agent's metrics (scraped on the node's loopback), by (name, sorted labels)."""
        from prometheus_client.parser import text_string_to_metric_families

        with entered(self.ns):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}


class Lab:
    """The namespaces, echo listeners on every node, and the server."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.topo = Topology(hosts=dict(HOSTS))
        self.listeners: dict[str, Listeners] = {}
        self.server: ControlServer | None = None
        self.agents: list[Agent] = []

    def ns(self, role: str) -> str:
        return self.topo.ns(role)

    def open(self) -> Lab:
        self.topo.open()
        for role in NODE_ROLES:
            # short TIME_WAIT, so probes' thousands of connections do not pile up
            sh("nft", "add", "table", "inet", "nwn_ct_warmup", ns=self.ns(role))
            sh("nft", "delete", "table", "inet", "nwn_ct_warmup", ns=self.ns(role))
            sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1",
               ns=self.ns(role), check=False)
            self.listeners[role] = Listeners(self.ns(role))
            self.listeners[role].ensure(tcp={22, 30287})
        return self

    def start_server(self, tls: tuple[Path, Path] | None = None) -> ControlServer:
        self.server = ControlServer(self.ns("ctl"), HOSTS["ctl"][0], self.workdir, tls)
        self.server.start()
        return self.server

    def agent(self, role: str, node: str, backend: str, *extra: str,
              token: str | None = None, env: dict[str, str] | None = None,
              server_url: str | None = None, tag: str = "") -> Agent:
        """A (not yet started) agent for `node` in namespace `role`, talking to the server."""
        assert self.server is not None
        token_file = self.workdir / f"token-{node}"
        token_file.write_text((token or self.server.token(node)) + "\n")
        token_file.chmod(0o600)
        args = ["--server", server_url or self.server.url, "--token-file", str(token_file),
                "--metrics-address", "127.0.0.1:9274", *extra]
        if self.server.ca_file is not None and server_url is None:
            args += ["--ca-file", str(self.server.ca_file)]
        made = Agent(self.ns(role), node, backend, self.workdir, args, env, tag)
        self.agents.append(made)
        return made

    def reset_node(self, role: str) -> None:
        """Remove whatever firewall a test left in the node's namespace, and its flows."""
        with entered(self.ns(role)):
            for name in ("nftables", "iptables"):
                with contextlib.suppress(Exception):
                    get_backend(name).remove()
        sh("conntrack", "-F", ns=self.ns(role), check=False)

    def close(self) -> None:
        for a in self.agents:
            with contextlib.suppress(Exception):
                a.kill()
        self.agents.clear()
        if self.server is not None:
            self.server.stop()
        for listeners in self.listeners.values():
            listeners.close()
        self.topo.close()


def reach(lab: Lab, src: str, dst: str, port: int, timeout: float = 0.3) -> str:
    """A new TCP connection from host `src` to host `dst` (IPv4): open, refused or timeout."""
    return probe(lab.ns(src), HOSTS[src][0], HOSTS[dst][0], "tcp", port, timeout=timeout)


@contextlib.contextmanager
def connection(lab: Lab, src: str, dst: str, port: int) -> Iterator[socket.socket]:
    """An established TCP connection src -> dst:port (the node's echo listener answers)."""
    with entered(lab.ns(src)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.bind((HOSTS[src][0], 0))
        s.connect((HOSTS[dst][0], port))
        s.sendall(b"hello")
        assert s.recv(16) == b"hello"
        yield s
    finally:
        s.close()


def alive(s: socket.socket, timeout: float = 0.3) -> bool:
    """Send one message: True when it is echoed within `timeout`, False on a reset or none."""
    s.settimeout(timeout)
    try:
        s.sendall(b"again")
        return s.recv(16) == b"again"
    except OSError:
        return False
