"""The cut ends revoked sessions for both ends, also when the node speaks next (issue 9).

Real programs on both sides: a real PostgreSQL server in the node namespace, real `psql`
clients in the client namespaces (one busy in a long query, one idle), and a server that pushes
on its own every 100 ms. The internet host is then removed from ip_filter: within 1 s of apply
returning its sessions are told (a busy psql fails, the idle connection is gone, the pushed
stream stops with a reset) and nothing of them passes afterwards; the office, still allowed, and
the management session keep working. Before the fix a psql busy in `select pg_sleep(15)` got its
result 15 s later and kept its session: deleting the conntrack entry let the server's next
packet re-create the flow from the node's side. The existing cut tests had the client speak
first, which meets the new ruleset as a new flow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Node
from kspecs import policy, public
from netns import HOSTS, Topology, entered, sh

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG, PUSH = 15432, 15433  # pg and pgbouncer pinned where the harness's echo servers are not

WIDE = ["203.0.113.0/24", "2001:db8:1::/48", "192.0.2.0/24", "2001:db8:bad::/48"]
NARROW = ["203.0.113.0/24", "2001:db8:1::/48"]  # the internet host leaves


def spec(ip_filter: list[str]) -> dict[str, object]:
    doc = public(ip_filter=ip_filter)
    doc["services"][0]["ports"] = {"pg": PG, "pgbouncer": PUSH}  # type: ignore[index]
    return doc


def _need_postgres() -> None:
    if not (PG_BIN / "postgres").exists() or shutil.which("psql") is None:
        why = "PostgreSQL 15 server or psql missing"
        if os.environ.get("CI"):
            pytest.fail(f"kernel test cannot run under CI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def postgres(topology: Topology) -> Iterator[None]:
    """A real PostgreSQL server in the node namespace on both node addresses, trust auth."""
    _need_postgres()
    base = Path(tempfile.mkdtemp(prefix="nwpg", dir="/tmp"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    shutil.chown(base, "postgres")
    shutil.chown(sock, "postgres")
    run = ["runuser", "-u", "postgres", "--"]
    proc = None
    try:
        subprocess.run([*run, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-N"], check=True, capture_output=True)
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 0.0.0.0/0 trust\n"
                                          "host all all ::/0 trust\n")
        node4, node6 = HOSTS["node"]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", topology.ns("node"), *run, str(PG_BIN / "postgres"),
             "-D", str(data), "-p", str(PG), "-k", str(sock), "-c", "fsync=off",
             "-c", f"listen_addresses={node4},{node6}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while subprocess.run(["ip", "netns", "exec", topology.ns("node"),
                              str(PG_BIN / "pg_isready"), "-q", "-h", node4, "-p", str(PG)],
                             check=False).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.1)
        yield
    finally:
        if proc is not None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


def psql(topo: Topology, role: str, fam: int, sql: str | None) -> subprocess.Popen[str]:
    """psql from `role`'s namespace to the node: running `sql`, or idle on a pipe."""
    argv = ["ip", "netns", "exec", topo.ns(role), "psql", "-X", "-q", "-A", "-t",
            "-h", HOSTS["node"][fam], "-p", str(PG), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
    argv += ["-c", sql] if sql is not None else []
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PGCONNECT_TIMEOUT": "3"})


def established(topo: Topology, role: str, port: int) -> int:
    """How many TCP connections `role` holds to the node's `port`."""
    out = sh("ss", "-Htn", "state", "established", f"( dport = :{port} )", ns=topo.ns(role))
    return len([line for line in out.splitlines() if line.strip()])


def wait_until(check: object, limit: float) -> float:
    """Seconds until `check()` is true, failing after `limit`."""
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - start < limit, f"not within {limit} s"
        time.sleep(0.02)
    return time.monotonic() - start


class Pusher:
    """A server in the node namespace that writes to each client every 100 ms, unasked."""

    def __init__(self, topo: Topology) -> None:
        self.socks: list[socket.socket] = []
        self.conns: list[socket.socket] = []
        for fam, af in ((0, socket.AF_INET), (1, socket.AF_INET6)):
            with entered(topo.ns("node")):
                s = socket.socket(af, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((HOSTS["node"][fam], PUSH))
            s.listen(16)
            self.socks.append(s)
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                self.conns.append(conn)
                threading.Thread(target=self._push, args=(conn,), daemon=True).start()

    @staticmethod
    def _push(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            while True:
                conn.sendall(b"tick\n")
                time.sleep(0.1)

    def close(self) -> None:
        for s in [*self.socks, *self.conns]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class Listener:
    """A client of the pusher, reading everything in a thread: when data stopped, and how."""

    def __init__(self, topo: Topology, role: str, fam: int) -> None:
        with entered(topo.ns(role)):
            self.sock = socket.socket(socket.AF_INET6 if fam else socket.AF_INET)
        self.sock.settimeout(3)
        self.sock.connect((HOSTS["node"][fam], PUSH))
        self.ended: str | None = None
        self.last = time.monotonic()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    self.ended = "closed"
                    return
                self.last = time.monotonic()
        except ConnectionResetError:
            self.ended = "reset"
        except OSError as exc:
            self.ended = type(exc).__name__

    def close(self) -> None:
        self.sock.close()

    def flowing(self) -> bool:
        return self.ended is None and time.monotonic() - self.last < 0.5


def test_revoked_sessions_end_for_both_ends_whoever_speaks_next(
        node: Node, postgres: None) -> None:
    topo = node.topo
    node.apply(policy(spec(WIDE)))
    pusher = Pusher(topo)
    procs: list[subprocess.Popen[str]] = []
    streams: dict[tuple[str, int], Listener] = {}
    try:
        busy = [psql(topo, "internet", fam, "select pg_sleep(15)") for fam in (0, 1)]
        idle = [psql(topo, "internet", fam, None) for fam in (0, 1)]
        kept_busy = [psql(topo, "office", fam, "select pg_sleep(2), 'done'") for fam in (0, 1)]
        kept_idle = psql(topo, "office", 0, None)
        procs = [*busy, *idle, *kept_busy, kept_idle]
        streams = {(role, fam): Listener(topo, role, fam)
                   for role in ("internet", "office") for fam in (0, 1)}
        with entered(topo.ns("mgmt")):
            mgmt = socket.create_connection((HOSTS["node"][0], 22), timeout=2)
        wait_until(lambda: established(topo, "internet", PG) == 4, 5)
        wait_until(lambda: all(s.flowing() for s in streams.values()), 2)
        assert all(p.poll() is None for p in procs), "every session is up before the change"

        result = node.apply(policy(spec(NARROW)))
        applied = time.monotonic()
        assert result.sockets_closed is not None and result.sockets_closed >= 6, result
        # the revoked ends are told at once, whoever would have spoken next
        for fam in (0, 1):
            assert busy[fam].wait(1.0) != 0, f"IPv{4 + 2 * fam} busy psql must fail at once"
            assert "pg_sleep" not in busy[fam].stdout.read(), "no result may arrive"  # type: ignore[union-attr]
        wait_until(lambda: established(topo, "internet", PG) == 0, 1.0 - (time.monotonic()
                                                                         - applied) + 0.2)
        for fam in (0, 1):
            wait_until(lambda f=fam: streams[("internet", f)].ended is not None, 1.0)  # type: ignore[misc]
            assert streams[("internet", fam)].ended == "reset"
        # and nothing of theirs passes afterwards: the idle psql's next query fails
        out, _ = idle[0].communicate("select 'still here';\n", timeout=5)
        assert idle[0].returncode != 0 and "still here" not in out
        # the office and the management session are untouched
        for fam in (0, 1):
            assert streams[("office", fam)].flowing(), "a still-allowed stream must flow"
            out, err = kept_busy[fam].communicate(timeout=10)
            assert kept_busy[fam].returncode == 0 and "done" in out, err
        out, err = kept_idle.communicate("select 40 + 2;\n", timeout=5)
        assert kept_idle.returncode == 0 and "42" in out, err
        mgmt.sendall(b"ping")
        assert mgmt.recv(16) == b"ping", "the management session must survive"
        mgmt.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for stream in streams.values():
            stream.close()
        pusher.close()
