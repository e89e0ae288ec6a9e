"""Request bodies against a real server process over real sockets: the token is checked before
a byte of the body is read, a body over its limit is refused at once (Content-Length) or as soon
as it passes the limit (chunked), without the server holding it, and API bodies are read as
strictly as spec files (a key given twice, NaN, nesting too deep: 400 naming the path)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from hardening import connect, head, read_answer, rss_mib
from seed import ok, seed
from serverproc import ServerProc

from nodewall.spec.limits import MAX_BODY_BYTES, NODE_BODY_BYTES

MIB = 1 << 20


def test_no_token_no_body_read(sqlite_server: ServerProc) -> None:
    """Six 100 MB POSTs at once without a valid token (none, or a wrong one) are each answered
    401 before a byte of their bodies is sent, and closed: each client, then pushing its
    100 MB as fast as it can, gets no further than the socket buffers, and the server's memory
    stays where it was."""
    pid = sqlite_server.proc.pid  # type: ignore[union-attr]
    before = rss_mib(pid)
    total = 100 * 10**6
    socks, answers, pushed = [], [], []
    for token in (None, "nw_not-a-token") * 3:
        sock = connect(sqlite_server.port, timeout=10)
        headers = {"Content-Type": "application/json", "Content-Length": str(total)}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        sock.sendall(head("POST", "/v1/project", headers))
        socks.append(sock)

    def push(sock: socket.socket) -> None:
        sent = 0
        try:
            while sent < total:
                sent += sock.send(b" " * MIB)
        except OSError:  # the server closed the connection
            pass
        pushed.append(sent)

    for sock in socks:  # the answer comes before any body byte is sent
        answers.append(read_answer(sock))
    pushers = [threading.Thread(target=push, args=(sock,), daemon=True) for sock in socks]
    for t in pushers:
        t.start()
    for t in pushers:
        t.join(timeout=30)
    for sock in socks:
        sock.close()
    grown = rss_mib(pid) - before
    print(f"6 anonymous 100 MB POSTs: 401, at most {max(pushed) / MIB:.0f} MiB pushed into "
          f"the sockets; RSS {grown:+.1f} MiB")
    for status, headers, body in answers:
        assert status == 401 and headers.get("connection") == "close", body
    assert len(pushed) == 6 and max(pushed) < total / 4, pushed
    assert grown < 20, f"RSS grew from {before:.0f} MiB by {grown:.0f} MiB"


def test_content_length_over_the_limit_is_413_at_once(shared_sqlite_server: ServerProc) -> None:
    for token, limit in ((shared_sqlite_server.admin, MAX_BODY_BYTES),
                         (shared_sqlite_server.token("some-node"), NODE_BODY_BYTES)):
        sock = connect(shared_sqlite_server.port, timeout=10)
        sock.sendall(head("PUT", "/v1/platform", {
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Content-Length": str(limit + 1)}))
        status, headers, body = read_answer(sock)
        sock.close()
        assert status == 413 and headers.get("connection") == "close", body
        assert f"larger than the {limit} bytes" in body["message"]


def test_a_chunked_body_is_cut_off_when_it_passes_the_limit(sqlite_server: ServerProc) -> None:
    """Chunks of 1 MiB are sent until the server answers; it answers 413 once the limit is
    passed, before much more than the limit (plus socket buffers) has been sent, and gives
    the memory of what it read back afterwards."""
    pid = sqlite_server.proc.pid  # type: ignore[union-attr]
    before = rss_mib(pid)
    sock = connect(sqlite_server.port, timeout=30)
    sock.sendall(head("PUT", "/v1/platform", {
        "Authorization": f"Bearer {sqlite_server.admin}", "Content-Type": "application/json",
        "Transfer-Encoding": "chunked"}))
    answer: list[tuple[int, float]] = []
    sent = [0]

    def reader() -> None:
        status, _, _ = read_answer(sock)
        answer.append((status, sent[0]))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    chunk = b"%x\r\n" % MIB + b" " * MIB + b"\r\n"
    try:
        while not answer and sent[0] < 3 * MAX_BODY_BYTES:
            sock.sendall(chunk)
            sent[0] += MIB
    except (BrokenPipeError, ConnectionResetError):
        pass
    t.join(timeout=30)
    sock.close()
    assert answer, "no answer to an endless chunked body"
    status, at = answer[0]
    assert status == 413
    assert at <= MAX_BODY_BYTES + 16 * MIB, f"answered only after {at / MIB:.0f} MiB"
    time.sleep(0.5)  # the refused request's memory is given back after its answer
    grown = rss_mib(pid) - before
    print(f"chunked body: 413 after {at / MIB:.0f} MiB sent (limit {MAX_BODY_BYTES / MIB:.0f} "
          f"MiB), RSS afterwards {grown:+.0f} MiB")
    assert grown < 16, f"the server kept {grown:.0f} MiB of a refused body"


def test_a_node_token_may_send_only_small_bodies(shared_sqlite_server: ServerProc) -> None:
    node_token = shared_sqlite_server.token("n-small")
    with shared_sqlite_server.client(node_token) as c:
        r = c.post("/v1/node/n-small/status", json={"backend": "nftables",
                                                    "error": "x" * 4096, "pad": "y" * 70000})
    assert r.status_code == 413, r.text


@pytest.mark.parametrize("body, path", [
    (b'{"management_networks": ["10.0.0.0/8"], "management_networks": ["0.0.0.0/0"]}',
     "'management_networks'"),
    (b'{"user_config": {"ip_filter": ["10.0.0.0/8"], "ip_filter": ["0.0.0.0/0"]}}',
     "Invalid 'user_config': Invalid input for ip_filter"),
])
def test_keys_given_twice_are_400_naming_them(server: ServerProc, project: str, body: bytes,
                                              path: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        before = ok(c.get(s.service("pg-prod")))
        route = ("/v1/platform" if b"management" in body else s.service("pg-prod"))
        r = c.put(route, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert path in r.json()["message"] and "given twice" in r.json()["message"]
        assert ok(c.get(s.service("pg-prod"))) == before


@pytest.mark.parametrize("body, words", [
    (b'{"project": "x", "base_port": NaN}', "NaN is not a JSON number"),
    (b'{"project": "x", "base_port": ' + b"1" * 50 + b"}", "more than 40 digits"),
    (b'{"project": ' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper than 32 levels"),
    (b'{"project": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested deeper than"),
    (b'{"project": "x",}', "invalid JSON at line 1"),
    (b'{"project": "\\ud800"}', "lone UTF-16 surrogate"),
])
def test_api_bodies_are_read_strictly(shared_sqlite_server: ServerProc, body: bytes,
                                      words: str) -> None:
    with shared_sqlite_server.client() as c:
        r = c.post("/v1/project", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert words in r.json()["message"]
    assert "Traceback" not in r.text


def test_a_good_body_still_works_after_the_guard(shared_sqlite_server: ServerProc) -> None:
    """The guard hands the parsed body on (no second read): chunked and plain bodies work."""
    with shared_sqlite_server.client() as c:
        ok(c.post("/v1/project", json={"project": "plain"}))

        def chunks() -> object:
            yield b'{"project": '
            time.sleep(0.2)
            yield b'"chunked"}'

        ok(c.post("/v1/project", content=chunks(),  # type: ignore[arg-type]
                  headers={"content-type": "application/json"}))
        names = {p for p in ("plain", "chunked")
                 if c.get(f"/v1/project/{p}/vpcs").status_code == 200}
    assert names == {"plain", "chunked"}


def test_query_parameters_are_read_strictly(shared_sqlite_server: ServerProc) -> None:
    """A misspelt `?dry-run=true` must not make the real change: a query parameter the route
    does not take, or one given twice, is a 400 naming it, and nothing is written."""
    with shared_sqlite_server.client() as c:
        s = seed(c, "qstrict")
        before = shared_sqlite_server.dump()
        change = {"user_config": {"ip_filter": ["0.0.0.0/0"]}}
        for query, words in (("dry-run=true", "Invalid query parameter dry-run: not one"),
                             ("dry_run=true&dry_run=false", "dry_run: given twice"),
                             ("=x", "<empty name>"),
                             ("a%20b=1", "[<key of 3 characters>]")):
            r = c.put(f"{s.service('pg-prod')}?{query}", json=change)
            assert r.status_code == 400, (query, r.text)
            assert words in r.json()["message"], (query, r.text)
        assert "(it takes: dry_run)" in r.json()["message"]
        assert shared_sqlite_server.dump() == before
        ok(c.get(f"/v1/node/{s.prod1}/policy", params={"version": "x", "wait": 0}))
