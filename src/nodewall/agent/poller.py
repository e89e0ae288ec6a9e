"""The policy long-poll: a thread that holds `GET /v1/node/N/policy?version=V&wait=S` open and
puts every new version into the inbox.

It knows only the version it last handed over (not what the kernel holds): a version the
kernel refused is not fetched again; the poll waits for the next one. Failures (no server, a
slow or garbled answer, 401/403, 404) are logged once per streak with the attempt count, and
retried after an exponential, jittered, capped backoff; it never touches the kernel, so the
rules stay as they are. A poll that comes back early without news is spaced out too, so a
server that ignores `wait` cannot make it spin. On 401/403 the token file is read again before
the next attempt (a rotated token is picked up without a restart).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from nodewall.agent import logs, metrics
from nodewall.agent.backoff import Backoff
from nodewall.agent.client import AuthRefused, ControlPlane, NoPolicy, Unavailable, Unchanged
from nodewall.agent.inbox import Inbox

#: Seconds the server may hold a poll (its limit is 300).
POLL_WAIT = 60.0
#: Polls that bring nothing new are at least this far apart.
MIN_POLL_SPACING = 1.0


class Poller(threading.Thread):
    def __init__(self, client: ControlPlane, inbox: Inbox, known: str | None,
                 reload_token: Callable[[], str | None], stop: threading.Event,
                 backoff: Backoff | None = None) -> None:
        super().__init__(name="nodewall-poll", daemon=True)
        self.client = client
        self.inbox = inbox
        self.known = known
        self.reload_token = reload_token
        self.stop = stop
        self.backoff = backoff or Backoff()
        self._failing: str | None = None  # the kind of the current failure streak

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._poll_once()
            except Exception as exc:  # a bug must not end the polling: log, back off, go on
                self._failed("internal_error", "error", f"{type(exc).__name__}: {exc}")

    def _poll_once(self) -> None:
        started = time.monotonic()
        try:
            got = self.client.fetch_policy(self.known, POLL_WAIT)
        except AuthRefused as exc:
            self._failed("auth_refused", "error", str(exc))
            token = self.reload_token()
            if token is not None:
                self.client.set_token(token)
            return
        except NoPolicy as exc:
            self._failed("no_policy", "warning", str(exc))
            return
        except Unavailable as exc:
            self._failed("server_unavailable", "warning", str(exc))
            return
        metrics.LAST_CONTACT.set_to_current_time()
        if self._failing is not None:
            logs.event("server_back", after_attempts=self.backoff.failures)
            self._failing = None
        self.backoff.reset()
        if isinstance(got, Unchanged) or got.version == self.known:
            spare = MIN_POLL_SPACING - (time.monotonic() - started)
            if spare > 0:
                self.stop.wait(spare)
            return
        self.known = got.version
        logs.event("policy_received", version=got.version, changed_at=got.changed_at,
                   bytes=len(got.body), decode_seconds=round(self.client.last_decode_seconds, 4))
        self.inbox.put(got)

    def _failed(self, kind: str, level: str, reason: str) -> None:
        delay = self.backoff.next()
        if self._failing != kind or self.backoff.failures in (2, 5) or \
                self.backoff.failures % 20 == 0:
            logs.event(kind, level, reason=reason, attempt=self.backoff.failures,
                       retry_in=round(delay, 2), rules="kept")
        self._failing = kind
        self.stop.wait(delay)
