"""The status report: a thread that POSTs `{applied_version, backend, error}` to
`/v1/node/N/status` after every apply, so the control plane knows what each kernel holds.

Only the newest report matters: a report waiting to be sent is replaced by a newer one. A
failed send is retried with backoff (the newest report then), so an outage ends with one
report of the current state. It never touches the kernel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from nodewall.agent import logs, metrics
from nodewall.agent.backoff import Backoff
from nodewall.agent.client import ControlPlane


@dataclass(frozen=True)
class Report:
    applied_version: str | None
    backend: str
    error: str | None


class Reporter(threading.Thread):
    def __init__(self, client: ControlPlane, stop: threading.Event,
                 backoff: Backoff | None = None) -> None:
        super().__init__(name="nodewall-report", daemon=True)
        self.client = client
        self.stop = stop
        self.backoff = backoff or Backoff()
        self._cond = threading.Condition()
        self._pending: Report | None = None

    def submit(self, report: Report) -> None:
        with self._cond:
            self._pending = report
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def run(self) -> None:
        while not self.stop.is_set():
            with self._cond:
                while self._pending is None and not self.stop.is_set():
                    self._cond.wait()
                report, self._pending = self._pending, None
            if report is None:
                return
            try:
                self.client.report(report.applied_version, report.backend, report.error)
            except Exception as exc:  # refused, unreachable, or a bug: never end the thread
                delay = self.backoff.next()
                if self.backoff.failures in (1, 5) or self.backoff.failures % 20 == 0:
                    logs.event("report_failed", "warning", reason=str(exc),
                               attempt=self.backoff.failures, retry_in=round(delay, 2))
                with self._cond:
                    if self._pending is None:
                        self._pending = report
                self.stop.wait(delay)
                continue
            self.backoff.reset()
            metrics.LAST_CONTACT.set_to_current_time()
            logs.event("reported", applied_version=report.applied_version,
                       backend=report.backend, error=report.error is not None)
