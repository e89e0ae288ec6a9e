"""The agent's parts on their own (no kernel): the fail-safe policy (against the compiler and
the reference evaluator), the cache file (torn, corrupt, foreign), the answer gate, backoff,
the command line and the token file, sd_notify, the JSON log, and the HTTP client's mapping of
a real HTTP server's answers (on loopback)."""

from __future__ import annotations

import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodewall.agent import logs
from nodewall.agent.answer import BadAnswer, decode_answer, encode_answer
from nodewall.agent.backoff import Backoff
from nodewall.agent.cache import CacheUnusable, PolicyCache
from nodewall.agent.client import AuthRefused, ControlPlane, NoPolicy, Unavailable, Unchanged
from nodewall.agent.failsafe import failsafe_policy, parse_networks
from nodewall.agent.notify import Notifier
from nodewall.agent.options import UsageError, parse, read_token
from nodewall.policy.evaluator import Packet, evaluate
from nodewall.policy.model import NodePolicy, check_policy

ROOT = Path(__file__).resolve().parents[2]
MGMT = ["198.51.100.0/28", "2001:db8:ff::/64"]


def verdict(policy: NodePolicy, src: str, proto: str, dport: int | None = None,
            **kwargs: Any) -> str:
    dst = "10.20.0.11" if ":" not in src else "2001:db8:20::11"
    return evaluate(policy, Packet(src=src, dst=dst, protocol=proto, dport=dport,  # type: ignore[arg-type]
                                   **kwargs)).action


# --- fail-safe ----------------------------------------------------------------------------

def test_failsafe_base_rules_are_the_compilers() -> None:
    from nodewall.compiler.node import compile_node
    from nodewall.spec.load import load_spec

    compiled = compile_node(load_spec(ROOT / "examples" / "pg-public.yaml"), "pg-prod-1")
    mine = failsafe_policy("pg-prod-1", MGMT)
    base = [r for r in compiled.rules if r.direction == "in"][:9]
    assert [r.reason for r in base][-1] == "ping (rate-limited)"
    assert list(mine.rules[:9]) == base, "loopback, conntrack and ICMP rules as the compiler's"
    out = [r for r in compiled.rules if r.direction == "out"][:7]
    assert [r for r in mine.rules if r.direction == "out"][:7] == out, "egress head"
    for name in ("loopback_v4", "loopback_v6", "metadata_v4"):
        assert mine.set(name).networks == compiled.set(name).networks


def test_failsafe_semantics() -> None:
    policy = failsafe_policy("n", MGMT)
    check_policy(policy)
    assert verdict(policy, "198.51.100.5", "tcp", 22) == "accept"
    assert verdict(policy, "2001:db8:ff::5", "tcp", 30287) == "accept"
    assert verdict(policy, "203.0.113.10", "tcp", 22) == "reject"
    assert verdict(policy, "198.51.100.5", "tcp", 5432) == "reject"
    assert verdict(policy, "198.51.100.5", "udp", 53) == "reject"
    assert verdict(policy, "203.0.113.10", "tcp", 5432, ct_state="established") == "accept"
    assert verdict(policy, "2001:db8:1::1", "icmp", icmp_type="packet-too-big") == "accept"
    assert verdict(policy, "203.0.113.10", "tcp", 443, direction="out") == "accept"
    anywhere = failsafe_policy("n")
    assert verdict(anywhere, "203.0.113.10", "tcp", 22) == "accept"
    assert verdict(anywhere, "2001:db8:1::1", "tcp", 30287) == "accept"
    assert verdict(anywhere, "203.0.113.10", "tcp", 5432) == "reject"
    assert anywhere.version != policy.version


@pytest.mark.parametrize(("text", "why"), [("10.0.0.5/24", "host bits"), ("10.0.0.0/33", "CIDR"),
                                           ("nope", "CIDR"), ("2001:DB8::/32", "canonical")])
def test_management_network_checked(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_networks([text])


# --- answers and cache --------------------------------------------------------------------

def test_answer_round_trip_and_gate() -> None:
    policy = failsafe_policy("n1", MGMT)
    body = encode_answer(policy, 1700000000.5)
    answer = decode_answer(body, "n1")
    assert (answer.version, answer.policy, answer.changed_at) == (policy.version, policy,
                                                                  1700000000.5)
    data = json.loads(body)
    bad: list[tuple[bytes, str]] = [
        (b"{", "not JSON"), (b"[]", "not a JSON object"), (b'{"version": 1}', "missing"),
        (json.dumps({**data, "changed_at": "soon"}).encode(), "changed_at"),
        (json.dumps({**data, "version": "0" * 16}).encode(), "the answer says"),
        (json.dumps({**data, "policy": {**data["policy"], "rules": []}}).encode(), "unusable"),
        (json.dumps({**data, "policy": {**data["policy"], "sets": [{}]}}).encode(), "unusable"),
    ]
    rules = data["policy"]["rules"]
    for field, value in (("action", "allow"), ("family", 5), ("dports", [0]), ("uid", -1),
                         ("protocol", "sctp"), ("direction", True)):
        changed = [dict(r) for r in rules]
        changed[0][field] = value
        bad.append((json.dumps({**data, "policy": {**data["policy"], "rules": changed}})
                    .encode(), "unusable"))
    for raw, why in bad:
        with pytest.raises(BadAnswer, match=why):
            decode_answer(raw, "n1")
    with pytest.raises(BadAnswer, match="for node 'n1', not 'n2'"):
        decode_answer(body, "n2")


def test_cache_round_trip_torn_corrupt_and_foreign(tmp_path: Path) -> None:
    cache = PolicyCache(tmp_path / "state", "n1")
    assert cache.load() is None
    policy = failsafe_policy("n1", MGMT)
    body = encode_answer(policy, None)
    cache.store(body)
    assert oct(cache.path.stat().st_mode & 0o777) == "0o600"
    assert oct(cache.dir.stat().st_mode & 0o777) == "0o700"
    loaded = cache.load()
    assert loaded is not None and loaded.version == policy.version and loaded.body == body
    whole = cache.path.read_bytes()
    for broken, why in ((whole[:len(whole) // 2], "torn"), (whole[:10], "header"),
                        (whole.replace(b'"loopback"', b'"loopbacK"', 1), "digest"),
                        (b"", "header")):
        cache.path.write_bytes(broken)
        with pytest.raises(CacheUnusable, match=why):
            cache.load()
    PolicyCache(cache.dir, "n2").store(encode_answer(failsafe_policy("n2"), None))
    with pytest.raises(CacheUnusable, match="not 'n1'"):
        cache.load()
    (cache.dir / ".policy.cache.123.tmp").write_bytes(b"half")
    cache.sweep()
    assert sorted(p.name for p in cache.dir.iterdir()) == ["policy.cache"]


# --- backoff ------------------------------------------------------------------------------

def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    b = Backoff(first=0.5, cap=8.0)
    delays = [b.next() for _ in range(10)]
    for n, d in enumerate(delays):
        nominal = min(8.0, 0.5 * 2 ** n)
        assert nominal / 2 <= d <= nominal
    assert max(delays) <= 8.0 and min(delays[5:]) >= 4.0
    assert len({round(d, 6) for d in delays[5:]}) > 1, "jitter"
    b.reset()
    assert b.next() <= 0.5


# --- command line -------------------------------------------------------------------------

def token_file(tmp_path: Path, mode: int = 0o600, text: str = "nwt_abc\n") -> Path:
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_options_ok(tmp_path: Path) -> None:
    opts = parse(["--server", "https://cp.example:8443/", "--node", "pg-1", "--token-file",
                  str(token_file(tmp_path)), "--management-network", "198.51.100.0/28",
                  "--management-network", "2001:db8:ff::/64", "10.0.0.0/8",
                  "--metrics-address", "[::1]:9274", "--verify-interval", "2.5"])
    assert opts.state_dir == Path("/var/lib/nodewall/agent/pg-1")
    assert opts.management_networks == ("198.51.100.0/28", "2001:db8:ff::/64", "10.0.0.0/8")
    assert opts.metrics_address == ("::1", 9274) and opts.verify_interval == 2.5
    assert opts.backend == "auto"


@pytest.mark.parametrize(("argv", "message"), [
    (["--node", "n"], "--server / --spec: give exactly one"),
    (["--node", "n", "--server", "ftp://x"], "--server: 'ftp://x' is not an http"),
    (["--node", "n", "--server", "https://x"], "--token-file: required with --server"),
    (["--node", "N!", "--spec", "/etc/hostname"], "--node: 'N!' is not a node name"),
    (["--node", "n", "--spec", "/nonexistent"], "--spec: /nonexistent is not a file"),
    (["--node", "n", "--spec", "/etc/hostname", "--backend", "pf"], "--backend: 'pf'"),
    (["--node", "n", "--spec", "/etc/hostname", "--verify-interval", "0"], "--verify-interval"),
    (["--node", "n", "--spec", "/etc/hostname", "--metrics-address", "9274"],
     "--metrics-address: '9274' is not HOST:PORT"),
    (["--node", "n", "--spec", "/etc/hostname", "--management-network", "10.0.0.1/8"],
     "--management-network: '10.0.0.1/8'"),
    (["--node", "n", "--spec", "/etc/hostname", "--ca-file", "/etc/hostname"],
     "--ca-file: only with --server"),
])
def test_options_refused(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(argv)
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_token_file_rules(tmp_path: Path) -> None:
    assert read_token(token_file(tmp_path)) == "nwt_abc"
    assert read_token(token_file(tmp_path, 0o400)) == "nwt_abc"
    for mode in (0o640, 0o604, 0o660, 0o644, 0o606):
        with pytest.raises(UsageError, match=f"mode {mode:04o}"):
            read_token(token_file(tmp_path, mode))
    for text in ("", "\n", "two words\n"):
        with pytest.raises(UsageError, match="does not hold one token") as caught:
            read_token(token_file(tmp_path, 0o600, text))
        assert "two" not in str(caught.value.problems)
    link = tmp_path / "link"
    link.symlink_to(token_file(tmp_path))
    with pytest.raises(UsageError, match="cannot open"):
        read_token(link)
    with pytest.raises(UsageError, match="cannot open"):
        read_token(tmp_path / "absent")


def test_cli_refuses_readable_token_file_with_exit_2(tmp_path: Path) -> None:
    path = token_file(tmp_path, 0o644, "nwt_topsecret\n")
    done = subprocess.run([sys.executable, "-m", "nodewall", "agent", "--server",
                           "https://127.0.0.1:1", "--node", "n1", "--token-file", str(path)],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --token-file: ") and "chmod 600" in done.stderr
    assert "topsecret" not in done.stderr + done.stdout


# --- sd_notify and logs -------------------------------------------------------------------

@pytest.mark.parametrize("abstract", [False, True])
def test_notify_reaches_the_socket(tmp_path: Path, abstract: bool) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = f"@nodewall-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    listener.bind("\0" + address[1:] if abstract else address)
    listener.settimeout(2)
    try:
        notifier = Notifier(address)
        assert notifier.ready("holding cache policy x") is None
        assert listener.recv(256) == b"READY=1\nSTATUS=holding cache policy x"
    finally:
        listener.close()
    assert Notifier("").ready("x") is None and not Notifier("").enabled
    assert Notifier(str(tmp_path / "absent")).ready("x") is not None  # reported, not raised


def test_logs_are_one_json_object_per_line() -> None:
    out = io.StringIO()
    logs.configure(out, node="n1")
    logs.event("applied", version="abc", name="shadowing is fine", seconds=0.5)
    import logging

    logging.getLogger("nodewall.backends.auto").info("chose %s", "nftables")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["applied", "log"]
    assert lines[0]["node"] == "n1" and lines[0]["name"] == "shadowing is fine"
    assert lines[1]["message"] == "chose nftables" and lines[1]["level"] == "info"
    assert lines[0]["time"].endswith("Z")


# --- the HTTP client against a real HTTP server -------------------------------------------

@pytest.fixture
def http_server() -> Iterator[tuple[str, list[tuple[int, bytes, dict[str, str]]], list[Any]]]:
    """A loopback HTTP server answering from a list (status, body, headers); it records the
    requests it got (method, path, headers)."""
    answers: list[tuple[int, bytes, dict[str, str]]] = []
    seen: list[Any] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
            status, body, headers = answers.pop(0)
            self.send_response(status)
            for k, v in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", answers, seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_client_maps_answers(http_server: Any) -> None:
    url, answers, seen = http_server
    good = encode_answer(failsafe_policy("n1"), 5.0)
    answers += [(200, good, {}), (304, b"", {}), (401, b'{"message": "bad token"}', {}),
                (403, b'{"message": "not yours"}', {}), (404, b"{}", {}),
                (502, b"<html>bad gateway</html>", {}), (200, b"garbage", {}),
                (200, b'{"node": "n1"}', {})]
    client = ControlPlane(url + "/", "n1", "nwt_secret")
    answer = client.fetch_policy(None, 0)
    assert not isinstance(answer, Unchanged) and answer.changed_at == 5.0
    assert client.fetch_policy(answer.version, 30) == Unchanged(answer.version)
    with pytest.raises(AuthRefused, match="401: bad token"):
        client.fetch_policy(None, 0)
    with pytest.raises(AuthRefused, match="403: not yours"):
        client.fetch_policy(None, 0)
    with pytest.raises(NoPolicy):
        client.fetch_policy(None, 0)
    with pytest.raises(Unavailable, match=r"HTTP 502: \(24-byte answer\)"):
        client.fetch_policy(None, 0)
    with pytest.raises(Unavailable, match="bad policy answer"):
        client.fetch_policy(None, 0)
    client.report("v1", "nftables", None)
    first, second = seen[0], seen[1]
    assert first[1] == "/v1/node/n1/policy" and first[2]["Authorization"] == "Bearer nwt_secret"
    assert second[1] == f"/v1/node/n1/policy?version={answer.version}&wait=30"
    assert second[2]["If-None-Match"] == f'"{answer.version}"'
    assert seen[-1][0] == "POST" and json.loads(seen[-1][3]) == {
        "applied_version": "v1", "backend": "nftables", "error": None}


def test_client_unreachable_and_slow() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable, match="refused"):
        ControlPlane(f"http://127.0.0.1:{port}", "n1", "t").fetch_policy(None, 0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        import nodewall.agent.client as client_module

        client = ControlPlane(f"http://127.0.0.1:{silent.getsockname()[1]}", "n1", "t")
        old = client_module.READ_MARGIN
        client_module.READ_MARGIN = 0.3
        try:
            with pytest.raises(Unavailable, match="timed out"):
                client.fetch_policy(None, 0)
        finally:
            client_module.READ_MARGIN = old
    finally:
        silent.close()


# --- packaging ----------------------------------------------------------------------------

def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """The unit as systemd reads it: no unknown settings, ordering before network-pre."""
    unit = (ROOT / "packaging" / "nodewall-agent.service").read_text()
    for needed in ("Type=notify", "Before=network-pre.target", "Wants=network-pre.target",
                   "ProtectSystem=strict", "StateDirectory=nodewall/agent",
                   "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW", "NoNewPrivileges=yes"):
        assert needed in unit.splitlines(), needed
    local = tmp_path / "nodewall-agent.service"
    local.write_text(unit.replace("/etc/nodewall/agent.env",
                                  str(ROOT / "packaging" / "nodewall-agent.env"))
                     .replace("/usr/bin/nodewall", sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                          text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if "nodewall-agent" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


def test_client_speaks_https_with_the_ca_file(tmp_path: Path) -> None:
    """HTTPS against a real TLS server on loopback: trusted through --ca-file; refused (as
    unavailable, never as an answer) without it or for another name."""
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=nodewall-test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    body = encode_answer(failsafe_policy("n1"), None)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        answer = ControlPlane(url, "n1", "t", ca_file=str(cert)).fetch_policy(None, 0)
        assert not isinstance(answer, Unchanged) and answer.body == body
        with pytest.raises(Unavailable, match="not trusted"):
            ControlPlane(url, "n1", "t").fetch_policy(None, 0)
        wrong = url.replace("127.0.0.1", "localhost")
        with pytest.raises(Unavailable, match="not trusted"):
            ControlPlane(wrong, "n1", "t", ca_file=str(cert)).fetch_policy(None, 0)
    finally:
        httpd.shutdown()
        httpd.server_close()
