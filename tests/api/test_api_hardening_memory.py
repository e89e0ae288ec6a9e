"""Memory under concurrent maximum-size writes, measured on a real server process from /proc:
ten parallel admin writes of the largest ip_filter (8000 entries, 1024-character descriptions)
all succeed, and afterwards the server's RSS is back within twice its idle figure (it used to
stay at ~2.2 GB). bench/server_memory.py runs the same burst with 4-byte characters (33 MB
bodies, the largest valid body in bytes)."""

from __future__ import annotations

import json
import threading
import time

from hardening import rss_mib
from seed import ok, seed
from serverproc import ServerProc

from nodewall.spec.limits import MAX_DESCRIPTION_CHARS, MAX_IP_FILTER

WRITERS = 10


def largest_update(char: str = "a") -> bytes:
    entries = [{"network": f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}/32",
                "description": char * MAX_DESCRIPTION_CHARS} for i in range(MAX_IP_FILTER)]
    return json.dumps({"user_config": {"ip_filter": entries}}, ensure_ascii=False).encode()


def test_rss_returns_after_a_burst_of_largest_writes(fresh_server: ServerProc) -> None:
    pid = fresh_server.proc.pid  # type: ignore[union-attr]
    with fresh_server.client(timeout=300) as c:
        s = seed(c, "mem")
        for _ in range(3):
            ok(c.get(s.service("pg-prod")))
    time.sleep(1)
    idle = rss_mib(pid)
    body = largest_update()
    peak = [idle]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mib(pid))

    statuses: list[int] = []

    def write() -> None:
        with fresh_server.client(timeout=300) as w:
            statuses.append(w.put(s.service("pg-prod"), content=body,
                                  headers={"content-type": "application/json"}).status_code)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    writers = [threading.Thread(target=write) for _ in range(WRITERS)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(timeout=300)
    took = time.monotonic() - start
    time.sleep(1)
    done.set()
    watcher.join()
    after = rss_mib(pid)
    print(f"{WRITERS} writes of {len(body) / 1e6:.1f} MB in {took:.1f} s: RSS idle {idle:.0f} "
          f"MiB, peak {peak[0]:.0f} MiB, after {after:.0f} MiB")
    assert statuses == [200] * WRITERS, statuses
    assert after <= 2 * idle, (f"RSS {after:.0f} MiB after the burst, idle {idle:.0f} MiB "
                               f"(peak {peak[0]:.0f} MiB)")
    with fresh_server.client() as c:
        stored = ok(c.get(s.service("pg-prod")))["service"]["user_config"]["ip_filter"]
    assert len(stored) == MAX_IP_FILTER
