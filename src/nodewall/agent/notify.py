"""systemd notifications (sd_notify) over `$NOTIFY_SOCKET`: READY, STATUS, WATCHDOG, STOPPING.

A unit of `Type=notify` is started only when READY=1 arrives; the agent sends it once the
kernel holds a policy (the cached or the fail-safe one), so `network-pre.target` waits for the
firewall. Without `$NOTIFY_SOCKET` (not under systemd) every call is a no-op. The socket is a
unix datagram socket; a name starting with `@` is in the abstract namespace. It never raises:
a lost notification is logged by the caller, never fatal.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or (pid.isdigit() and int(pid) == os.getpid())
        #: seconds between watchdog pings (half systemd's WatchdogSec), None without one
        self.watchdog_every = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine \
            else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *assignments: str) -> str | None:
        """Send `KEY=value` lines; None on success (or no socket), else why it failed."""
        if not self.address:
            return None
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(assignments).encode(), target)
        except OSError as exc:
            return exc.strerror or type(exc).__name__
        return None

    def ready(self, status: str) -> str | None:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> str | None:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> str | None:
        return self.send("WATCHDOG=1")

    def stopping(self) -> str | None:
        return self.send("STOPPING=1")
