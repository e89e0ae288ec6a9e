"""`nodewall agent`: parse the options, check the token file, then boot and run the loop.

Threads: the main thread owns the kernel (the loop); the poller holds the long-poll; the
reporter sends status reports; prometheus-client serves metrics. SIGTERM and SIGINT stop the
agent and keep the rules. Exit status: 0 after a stop, 2 for bad input (nothing changed),
1 when the agent cannot start (metrics address taken, state directory unusable).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from nodewall.agent import logs
from nodewall.agent.options import Options, UsageError, parse, read_token

if TYPE_CHECKING:
    from nodewall.agent.keeper import Keeper
    from nodewall.agent.loop import ChangeWatcher


def main(argv: list[str]) -> int:
    try:
        options = parse(argv)
        token = read_token(options.token_file) if options.token_file is not None else None
    except UsageError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    logs.configure(node=options.node)
    return run(options, token)


def run(options: Options, token: str | None) -> int:
    from nodewall.agent import metrics
    from nodewall.agent.cache import PolicyCache
    from nodewall.agent.failsafe import failsafe_policy
    from nodewall.agent.inbox import Inbox
    from nodewall.agent.keeper import Keeper
    from nodewall.agent.loop import AgentLoop
    from nodewall.agent.notify import Notifier

    stop = threading.Event()
    try:
        keeper = Keeper(options.backend)
    except ValueError as exc:
        logs.event("bad_backend", "error", error=str(exc))
        return 2
    cache = PolicyCache(options.state_dir, options.node)
    try:
        options.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        logs.event("state_dir_unusable", "error", path=str(options.state_dir),
                   error=exc.strerror)
        return 1
    logs.event("starting", mode="server" if options.server else "spec",
               server=options.server, spec=str(options.spec) if options.spec else None,
               backend=options.backend, state_dir=str(options.state_dir),
               verify_interval=options.verify_interval)
    if options.server is not None and _plain_http_off_host(options.server):
        logs.event("plain_http", "warning", server=options.server,
                   reason="the token crosses the network unencrypted; use https:// and "
                          "--ca-file")
    if options.metrics_address is not None:
        try:
            metrics.serve(options.metrics_address)
        except OSError as exc:
            logs.event("metrics_unavailable", "error", address=options.metrics_address,
                       error=exc.strerror)
            return 1
    reporter = None
    loop = AgentLoop(keeper, cache, Notifier(), options.verify_interval,
                     source="server" if options.server else "spec",
                     lockout_networks=None if options.allow_lockout
                     else options.management_networks)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        loop.stop(signal.Signals(signum).name)
        if reporter is not None:
            reporter.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop.boot(failsafe_policy(options.node, options.management_networks))
    inbox = Inbox()
    if options.server is not None:
        assert token is not None and options.token_file is not None
        from nodewall.agent.client import ControlPlane
        from nodewall.agent.poller import Poller
        from nodewall.agent.reporter import Reporter

        ca = str(options.ca_file) if options.ca_file else None
        reporter = Reporter(ControlPlane(options.server, options.node, token, ca), stop)
        loop.report = reporter.submit
        loop.report_state()  # what boot put in the kernel
        token_file = options.token_file
        cached = keeper.held.version if keeper.held and keeper.held.source == "cache" else None
        poller = Poller(ControlPlane(options.server, options.node, token, ca), inbox,
                        cached, lambda: _reread_token(token_file), stop)
        reporter.start()
        poller.start()
    else:
        assert options.spec is not None
        from nodewall.agent.specsource import SpecSource

        SpecSource(options.spec, options.node, inbox, stop).start()
    try:
        loop.run(inbox, _watcher(keeper))
    except Exception as exc:  # a bug: say so in the log's shape; systemd restarts the agent
        import traceback

        logs.event("internal_error", "critical", error=f"{type(exc).__name__}: {exc}",
                   at=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}"
                       for f in traceback.extract_tb(exc.__traceback__)[-4:]], rules="kept")
        return 1
    finally:
        stop.set()
    return 0


def _plain_http_off_host(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    try:
        return not ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return parts.hostname != "localhost"


def _reread_token(path: Path) -> str | None:
    try:
        return read_token(path)
    except UsageError as exc:
        logs.event("token_file_unusable", "error", problems=exc.problems)
        return None


def _watcher(keeper: Keeper) -> ChangeWatcher | None:
    """The nftables change watcher when the backend is nftables, else None."""
    if keeper.backend_name != "nftables":
        return None
    from nodewall.backends.nftables.events import NftChangeWatcher

    try:
        return NftChangeWatcher()
    except OSError as exc:
        logs.event("kernel_watch_unavailable", "warning", reason=exc.strerror)
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
