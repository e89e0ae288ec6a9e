"""Long-polls against a real server: held until the version changes, answered at once when the
caller is behind, answered unchanged when the wait runs out; a removed node's poll ends in 404."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from seed import ok, seed, version
from serverproc import ServerProc


def hold(server: ServerProc, node: str, current: str, wait: float,
         out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        started = time.monotonic()
        with server.client(timeout=wait + 20) as c:
            r = c.get(f"/v1/node/{node}/policy", params={"version": current, "wait": wait})
        out["status"], out["seconds"] = r.status_code, time.monotonic() - started
        out["body"] = r.json()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_change_wakes_the_held_poll(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        old = version(c, s.prod1)
        out: dict[str, Any] = {}
        thread = hold(server, s.prod1, old, 30, out)
        time.sleep(0.5)
        assert thread.is_alive(), f"the poll was answered before any change: {out}"
        changed_at = time.monotonic()
        ok(c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": ["10.20.0.0/26"]}}))
        thread.join(timeout=30)
        woke_after = time.monotonic() - changed_at
        assert out["status"] == 200 and out["body"]["version"] != old
        assert out["body"]["version"] == version(c, s.prod1)
        assert woke_after < 5, f"woke {woke_after:.2f}s after the change"


def test_behind_answers_at_once_and_timeout_answers_unchanged(server: ServerProc,
                                                              project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        current = version(c, s.prod1)
        started = time.monotonic()
        r = c.get(f"/v1/node/{s.prod1}/policy", params={"version": "0000", "wait": 30})
        assert ok(r)["version"] == current and time.monotonic() - started < 5
        started = time.monotonic()
        r = c.get(f"/v1/node/{s.prod1}/policy", params={"version": current, "wait": 1})
        assert ok(r)["version"] == current and 0.9 <= time.monotonic() - started < 10
        # an unrelated change does not answer the poll early
        out: dict[str, Any] = {}
        thread = hold(server, s.prod1, current, 2, out)
        time.sleep(0.3)
        ok(c.put(s.service("pg-replica"), json={"user_config": {"ip_filter": ["10.0.0.0/8"]}}))
        thread.join(timeout=20)
        assert out["body"]["version"] == current and out["seconds"] >= 1.9


def test_removing_the_node_ends_its_poll(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        out: dict[str, Any] = {}
        thread = hold(server, s.prod2, version(c, s.prod2), 30, out)
        time.sleep(0.3)
        ok(c.delete(s.node("pg-prod", s.prod2)))
        thread.join(timeout=30)
        assert out["status"] == 404


def test_many_polls_on_one_node_all_wake(server: ServerProc, project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        old = version(c, s.prod1)
    results: list[str] = []

    def poll() -> None:
        with httpx.Client(base_url=server.url, timeout=40,
                          headers={"Authorization": f"Bearer {server.admin}"}) as c:
            results.append(ok(c.get(f"/v1/node/{s.prod1}/policy",
                                     params={"version": old, "wait": 30}))["version"])

    threads = [threading.Thread(target=poll) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with server.client() as c:
        ok(c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": ["10.20.0.0/27"]}}))
        new = version(c, s.prod1)
    for t in threads:
        t.join(timeout=40)
    assert results == [new] * 20


def test_each_version_carries_the_time_of_the_change_that_made_it(server: ServerProc,
                                                                  project: str) -> None:
    with server.client() as c:
        s = seed(c, project)
        first = ok(c.get(f"/v1/node/{s.prod1}/policy"))["changed_at"]
        assert isinstance(first, float) and abs(time.time() - first) < 120
        time.sleep(0.2)
        before = time.time()
        ok(c.put(s.service("pg-prod"), json={"user_config": {"ip_filter": ["10.20.0.0/27"]}}))
        after = time.time()
        changed = ok(c.get(f"/v1/node/{s.prod1}/policy"))["changed_at"]
        assert before - 0.05 <= changed <= after + 0.05, (before, changed, after)
        # a change that leaves this node's version alone leaves its time alone
        ok(c.put(s.service("pg-replica"), json={"user_config": {"ip_filter": ["10.9.0.0/16"]}}))
        assert ok(c.get(f"/v1/node/{s.prod1}/policy"))["changed_at"] == changed
