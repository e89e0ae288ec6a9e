"""The agent's main loop: boot, then apply what the sources bring, verify, repair, report.

It runs in the main thread, which alone touches the kernel (through the `Keeper`), and sleeps
in one `select` on: the inbox (a new policy), the stop pipe (SIGTERM/SIGINT), the nftables
change watcher (someone changed `inet nodewall`), with a timeout to the next timer (the verify
interval, a retry of a refused policy, a watchdog ping). Idle, it wakes only for its timer.

Boot: the cached policy (last verified here), or with none (or an unusable one) the fail-safe
policy, is applied before anything else; READY goes to systemd only once the kernel holds one.

Lock-out: a received policy that would shut every management network out is never applied
(`nodewall.agent.lockout`); it is logged (`apply_refused`), counted and reported, the rules stay,
and it is not retried (the same policy would be refused again): the next version is awaited.

Failures: a policy the kernel refuses leaves the previous one in place, is reported with the
error, and is retried after a growing delay (never a hot loop) until a newer one arrives. A
verify that finds drift re-applies (a repair, counted); repairs in quick succession (another
tool fighting over the table) are spaced out by a growing delay. Stopping keeps the rules.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from collections.abc import Callable
from typing import Protocol

from nodewall.agent import lockout, logs, metrics
from nodewall.agent.answer import PolicyAnswer, encode_answer
from nodewall.agent.backoff import Backoff
from nodewall.agent.cache import CacheUnusable, PolicyCache
from nodewall.agent.inbox import Inbox
from nodewall.agent.keeper import Keeper
from nodewall.agent.notify import Notifier
from nodewall.agent.reporter import Report
from nodewall.backends.base import ApplyResult, BackendError
from nodewall.policy.model import NodePolicy

#: After an apply, the kernel is checked again this soon.
VERIFY_SOON = 1.0
#: A change notification is acted on after this settling delay (a burst becomes one check).
WATCH_SETTLE = 0.01


class ChangeWatcher(Protocol):
    def fileno(self) -> int: ...

    def wait(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


class AgentLoop:
    def __init__(self, keeper: Keeper, cache: PolicyCache, notifier: Notifier,
                 verify_interval: float, report: Callable[[Report], None] | None = None,
                 source: str = "server",
                 lockout_networks: tuple[str, ...] | None = ()) -> None:
        self.keeper = keeper
        self.cache = cache
        self.notifier = notifier
        self.verify_interval = verify_interval
        self.report = report
        self.source = source  # where new policies come from: server or spec
        # networks no received policy may shut out; () the policy's own, None: no guard
        self.lockout_networks = lockout_networks
        self.ready_sent = False
        self.pending: PolicyAnswer | None = None
        self.retry_at = 0.0
        self.apply_backoff = Backoff(first=1.0, cap=60.0)
        self.repair_backoff = Backoff(first=0.05, cap=10.0)
        self.repair_gap = 0.0
        self.last_verify = 0.0
        self.next_verify = 0.0
        self.watch_due: float | None = None
        self.last_error: str | None = None
        self.stop_reason = ""
        self.stop_read, self.stop_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- boot -------------------------------------------------------------------------------
    def boot(self, failsafe: NodePolicy) -> str | None:
        """Apply the cached policy, else the fail-safe one; READY once one holds. The version
        held, or None when the kernel refused both (READY then waits for a later apply)."""
        try:
            why = self.keeper.resolve()
            if why:
                logs.event("backend_chosen", backend=self.keeper.backend_name, reason=why)
        except BackendError as exc:
            logs.event("backend_unusable", "error", error=str(exc))
        self.cache.sweep()
        candidates: list[tuple[PolicyAnswer, str]] = []
        try:
            cached = self.cache.load()
        except CacheUnusable as exc:
            logs.event("cache_ignored", "warning", path=str(self.cache.path), reason=str(exc))
            cached = None
        if cached is not None:
            candidates.append((cached, "cache"))
        else:
            logs.event("no_cache", path=str(self.cache.path))
        candidates.append((PolicyAnswer(failsafe.version, failsafe, None,
                                        encode_answer(failsafe, None)), "fail-safe"))
        for answer, source in candidates:
            try:
                result, took = self.keeper.apply(answer, source)
            except BackendError as exc:
                metrics.APPLY_FAILURES.inc()
                logs.event("boot_apply_failed", "error", source=source, version=answer.version,
                           error=str(exc))
                continue
            logs.event("boot_applied", source=source, version=answer.version,
                       backend=result.backend, changed=result.changed,
                       seconds=round(took, 4))
            self._held_now(result.backend)
            self.next_verify = time.monotonic() + VERIFY_SOON
            return answer.version
        self.notifier.status("the kernel refused the cached and the fail-safe policy")
        return None

    def _held_now(self, backend: str) -> None:
        """After a successful apply: READY (once), the status line, the report."""
        held = self.keeper.held
        assert held is not None
        status = f"holding {held.source} policy {held.version} ({backend})"
        if not self.ready_sent:
            failure = self.notifier.ready(status)
            self.ready_sent = True
            logs.event("ready", notified=self.notifier.enabled and failure is None,
                       **({"notify_error": failure} if failure else {}))
        else:
            self.notifier.status(status)
        self.report_state()

    def report_state(self) -> None:
        """Queue a report of what the kernel holds (and the last apply error)."""
        held = self.keeper.held
        if self.report is not None:
            self.report(Report(held.version if held else None, self.keeper.backend_name,
                               self.last_error))

    # -- running ----------------------------------------------------------------------------
    def stop(self, reason: str = "stop") -> None:
        """From a signal handler or another thread: end `run` soon. (Only a flag and a pipe
        write: a signal handler must not take the log lock the interrupted code may hold.)"""
        self.stop_reason = reason
        with contextlib.suppress(BlockingIOError):
            os.write(self.stop_write, b"!")

    def run(self, inbox: Inbox, watcher: ChangeWatcher | None = None) -> None:
        selector = selectors.DefaultSelector()
        selector.register(inbox.fileno(), selectors.EVENT_READ, "inbox")
        selector.register(self.stop_read, selectors.EVENT_READ, "stop")
        if watcher is not None:
            selector.register(watcher.fileno(), selectors.EVENT_READ, "kernel")
        watchdog_every = self.notifier.watchdog_every
        next_watchdog = time.monotonic() if watchdog_every else None
        try:
            while True:
                now = time.monotonic()
                dues = [self.next_verify]
                if self.pending is not None:
                    dues.append(self.retry_at)
                if self.watch_due is not None:
                    dues.append(self.watch_due)
                if next_watchdog is not None:
                    dues.append(next_watchdog)
                for key, _ in selector.select(max(0.0, min(dues) - now)):
                    if key.data == "stop":
                        logs.event("stopping", reason=self.stop_reason, rules="kept",
                                   version=self.keeper.held.version if self.keeper.held
                                   else None)
                        self.notifier.stopping()
                        return
                    if key.data == "inbox":
                        self._received(inbox.take())
                    elif key.data == "kernel" and watcher is not None and watcher.wait(0):
                        now = time.monotonic()
                        due = max(now + WATCH_SETTLE, self.last_verify + self.repair_gap)
                        self.watch_due = due if self.watch_due is None else min(
                            self.watch_due, due)
                now = time.monotonic()
                if self.pending is not None and now >= self.retry_at:
                    self._apply_pending()
                now = time.monotonic()
                if now >= self.next_verify or (self.watch_due is not None
                                               and now >= self.watch_due):
                    self._verify(timer=now >= self.next_verify)
                if next_watchdog is not None and watchdog_every is not None and \
                        time.monotonic() >= next_watchdog:
                    self.notifier.watchdog()
                    next_watchdog = time.monotonic() + watchdog_every
        finally:
            selector.close()

    def _received(self, answer: PolicyAnswer | None) -> None:
        if answer is None:
            return
        if self.pending is None or self.pending.version != answer.version:
            self.apply_backoff.reset()
        self.pending = answer
        self.retry_at = 0.0

    def _apply_pending(self) -> None:
        answer = self.pending
        assert answer is not None
        if self.lockout_networks is not None:
            why = lockout.refusal(answer.policy, self.lockout_networks)
            if why is not None:
                self._refuse(answer, why)
                return
        try:
            result, took = self.keeper.apply(answer, self.source)
        except BackendError as exc:
            metrics.APPLY_FAILURES.inc()
            delay = self.apply_backoff.next()
            self.retry_at = time.monotonic() + delay
            self.last_error = f"policy {answer.version} refused: {exc}"[:4000]
            held = self.keeper.held
            logs.event("apply_failed", "error", version=answer.version, error=str(exc),
                       kept=held.version if held else None, attempt=self.apply_backoff.failures,
                       retry_in=round(delay, 2))
            self.report_state()
            return
        verified = time.time()
        self.pending = None
        self.apply_backoff.reset()
        self.last_error = None
        latency = None
        if answer.changed_at is not None:
            latency = max(0.0, verified - answer.changed_at)
            metrics.CHANGE_TO_KERNEL.observe(latency)
        logs.event("applied", version=answer.version, backend=result.backend,
                   changed=result.changed, kind=_kind(result), seconds=round(took, 4),
                   flows_cut=result.flows_cut,
                   change_to_kernel=None if latency is None else round(latency, 4))
        try:
            self.cache.store(answer.body)
        except OSError as exc:
            logs.event("cache_write_failed", "error", path=str(self.cache.path),
                       error=exc.strerror or type(exc).__name__)
        self._held_now(result.backend)
        self.next_verify = min(self.next_verify, time.monotonic() + VERIFY_SOON)

    def _refuse(self, answer: PolicyAnswer, why: str) -> None:
        """Not applied: the policy would shut every management network out."""
        metrics.APPLY_FAILURES.inc()
        self.pending = None
        held = self.keeper.held
        self.last_error = f"policy {answer.version} refused: {why}"[:4000]
        logs.event("apply_refused", "error", version=answer.version, reason="lockout",
                   error=why, kept=held.version if held else None)
        self.report_state()

    def _verify(self, timer: bool) -> None:
        now = time.monotonic()
        self.last_verify = now
        self.watch_due = None
        if timer:
            self.next_verify = now + self.verify_interval
        if self.keeper.held is None:
            return
        try:
            repaired = self.keeper.verify()
        except BackendError as exc:
            metrics.APPLY_FAILURES.inc()
            self.repair_gap = self.repair_backoff.next()
            self.next_verify = min(self.next_verify, now + max(self.repair_gap, 1.0))
            logs.event("repair_failed", "error", version=self.keeper.held.version,
                       error=str(exc))
            return
        if repaired is None:
            self.repair_backoff.reset()
            self.repair_gap = 0.0
        else:
            metrics.DRIFT_REPAIRS.inc()
            self.repair_gap = self.repair_backoff.next()
            logs.event("drift_repaired", "warning", version=self.keeper.held.version,
                       backend=repaired.backend, kind=_kind(repaired),
                       flows_cut=repaired.flows_cut, trigger="timer" if timer else "kernel")
            self.report_state()
        if timer:
            counts = self.keeper.rejected_packets()
            if counts is not None:
                metrics.REJECTED.update(counts)


def _kind(result: ApplyResult) -> str:
    if not result.changed:
        return "unchanged"
    return "in-place" if result.incremental else "full"
