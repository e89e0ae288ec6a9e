"""Memory of the control plane under bursts of the largest writes: a real `nodewall server`
process (SQLite file, or a throwaway PostgreSQL server), N parallel admin writes of the largest
ip_filter (8000 entries, 1024-character descriptions), its RSS read from /proc before (idle),
during (peak, sampled every 50 ms) and after the burst; then M unauthenticated 100 MB POSTs at
once (answered 401 before their bodies are read).

    .venv/bin/python bench/server_memory.py                       # ASCII and 4-byte characters
    .venv/bin/python bench/server_memory.py --char a --writers 20 --backend postgresql

tests/api/test_api_hardening_memory.py runs the ASCII burst of 10 in CI. Everything is on
127.0.0.1; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "api"))
sys.path.insert(0, str(ROOT / "tests" / "store"))

from hardening import connect, head, read_answer, rss_mib  # noqa: E402
from pgserver import running_postgres  # noqa: E402
from seed import ok, seed  # noqa: E402
from serverproc import ServerProc  # noqa: E402
from test_api_hardening_memory import largest_update  # noqa: E402


def burst(server: ServerProc, char: str, writers: int, anonymous: int) -> None:
    pid = server.proc.pid  # type: ignore[union-attr]
    with server.client(timeout=600) as c:
        s = seed(c, f"bench{time.time_ns() % 10**8}")
        for _ in range(3):
            ok(c.get(s.service("pg-prod")))
    time.sleep(1)
    idle = rss_mib(pid)
    body = largest_update(char)
    peak, stop, statuses = [idle], threading.Event(), []

    def watch() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], rss_mib(pid))

    def write() -> None:
        with server.client(timeout=600) as w:
            statuses.append(w.put(s.service("pg-prod"), content=body,
                                  headers={"content-type": "application/json"}).status_code)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    time.sleep(1)
    after = rss_mib(pid)
    socks = []
    for _ in range(anonymous):
        sock = connect(server.port)
        sock.sendall(head("POST", "/v1/project", {"Content-Length": str(100 * 10**6)}))
        socks.append(sock)
    refused = [read_answer(sock)[0] for sock in socks]
    for sock in socks:
        sock.close()
    stop.set()
    watcher.join()
    print(f"{server.database.split(':')[0]:10} {writers} writes of {len(body) / 1e6:.1f} MB "
          f"({'ASCII' if char.isascii() else 'UTF-8 x' + str(len(char.encode()))}): "
          f"{took:.1f} s, statuses {sorted(set(statuses))}; RSS idle {idle:.0f} MiB, peak "
          f"{peak[0]:.0f} MiB, after {after:.0f} MiB ({after / idle:.2f}x); {anonymous} "
          f"anonymous 100 MB POSTs: {sorted(set(refused))}, RSS then {rss_mib(pid):.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--char", action="append", help="description character (repeat)")
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--anonymous", type=int, default=5)
    args = parser.parse_args()
    chars = args.char or ["a", "\U0001F600"]
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        urls = []
        if args.backend in ("sqlite", "both"):
            urls.append(lambda: f"sqlite:///{tmp}/bench-{time.time_ns()}.db")
        if args.backend in ("postgresql", "both"):
            pg = stack.enter_context(running_postgres())
            urls.append(pg.new_database)
        for url in urls:
            for char in chars:
                server = ServerProc(url())
                server.start()
                try:
                    burst(server, char, args.writers, args.anonymous)
                finally:
                    server.stop()


if __name__ == "__main__":
    main()
