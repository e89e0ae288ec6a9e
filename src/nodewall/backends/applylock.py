"""One apply at a time per network namespace: the lock every backend's apply and remove hold.

Two `nodewall apply` runs (or an agent and an operator) on one node would otherwise both read
the kernel, both work out a change from what they read, and interleave their writes: iptables
sets filled into the same spare slot, an nftables in-place batch computed from a table the
other run has just replaced. Holding this lock from the first read to the last write makes the
runs take turns, so the kernel ends with one policy whole (the one that went last).

The lock is an abstract unix socket bound to a fixed name. Abstract socket names live in the
network namespace, so the lock is per network namespace exactly as the firewall is, needs no
file, and is released by the kernel when its holder dies, even by SIGKILL (a process forked
while holding it, such as the detached iptables commit, holds it until it exits too). It is
re-entrant within one process (a rollback inside an apply takes it again). Waiting polls;
after `WAIT_SECONDS` the caller gets a `BackendError`, never a half-done apply.

It must never be held across a wait for a person (the confirm window holds it only while it
writes the kernel).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import socket
import time
from collections.abc import Iterator

from nodewall.backends.base import BackendError

#: The abstract name (a leading NUL byte: no file is made).
NAME = b"\0nodewall-apply-lock"
#: How long an apply waits for another one to finish.
WAIT_SECONDS = 60.0

_held: dict[int, tuple[socket.socket, int]] = {}  # netns inode -> (socket, depth)


def _netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@contextlib.contextmanager
def held(wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the apply lock of this thread's network namespace for the body."""
    netns = _netns()
    if netns in _held:
        sock, depth = _held[netns]
        _held[netns] = (sock, depth + 1)
        try:
            yield
        finally:
            sock, depth = _held[netns]
            _held[netns] = (sock, depth - 1)
        return
    sock = _acquire(wait)
    _held[netns] = (sock, 1)
    try:
        yield
    finally:
        del _held[netns]
        sock.close()


def _acquire(wait: float) -> socket.socket:
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.bind(NAME)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise BackendError(f"taking the apply lock failed: {exc}") from exc
        if time.monotonic() >= deadline:
            raise BackendError(
                f"another nodewall apply in this network namespace held the apply lock for "
                f"{wait:.0f} s; nothing was changed")
        time.sleep(0.005 + random.random() * 0.015)  # jitter, not a secret
