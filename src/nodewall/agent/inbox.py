"""The hand-over from policy sources (threads) to the kernel thread: a queue plus a wake-up pipe
the main loop selects on, so the main loop sleeps in one `select` for all its inputs.

Only the newest policy matters: `take` returns the last one put and drops older ones.
"""

from __future__ import annotations

import contextlib
import os
import queue

from nodewall.agent.answer import PolicyAnswer


class Inbox:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[PolicyAnswer] = queue.SimpleQueue()
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._read

    def put(self, answer: PolicyAnswer) -> None:
        self._queue.put(answer)
        with contextlib.suppress(BlockingIOError):  # full of wake-ups already
            os.write(self._write, b"!")

    def take(self) -> PolicyAnswer | None:
        """The newest answer put since the last take, or None."""
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
        newest = None
        while True:
            try:
                newest = self._queue.get_nowait()
            except queue.Empty:
                return newest
