"""The serverless mode's policy source: compile this node's policy from a local spec file, and
again whenever the file changes.

A thread waits on inotify for the file's directory (so an editor's write-and-rename and a
config-management tool's replace are both seen), checks the file's identity (inode, size,
mtime) and, when it changed, loads and compiles it. A file that does not validate, or that no
longer names this node, is logged with its errors and skipped: the kernel keeps what it holds.
Without inotify it checks the file's identity every few seconds instead.

This is the only part of the agent that loads the spec model and the compiler, and only when
the agent runs with `--spec`.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
from pathlib import Path

from nodewall.agent import logs
from nodewall.agent.answer import PolicyAnswer, encode_answer
from nodewall.agent.inbox import Inbox

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
#: IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_ATTRIB, IN_MOVED_FROM
_MASK = 0x8 | 0x80 | 0x100 | 0x200 | 0x4 | 0x40
#: Seconds between identity checks without inotify, and after a change before reading it.
POLL_EVERY = 5.0
SETTLE = 0.05


def _inotify(directory: Path) -> int | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(directory), _MASK) < 0:
            os.close(fd)
            return None
        return fd
    except (OSError, AttributeError):
        return None


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def compile_file(path: Path, node: str, changed: bool = True) -> PolicyAnswer | None:
    """The node's policy from the file as an answer, or None (the problems logged). With
    `changed`, the file's mtime is the answer's `changed_at` (a change seen while running);
    the first read at start carries none (the file may be years old)."""
    from nodewall.compiler.node import compile_node
    from nodewall.errors import SpecError
    from nodewall.spec.load import load_spec

    try:
        mtime = path.stat().st_mtime
        spec = load_spec(path)
    except SpecError as exc:
        logs.event("spec_invalid", "error", path=str(path), errors=exc.lines()[:50],
                   rules="kept")
        return None
    except OSError as exc:
        logs.event("spec_unreadable", "error", path=str(path), error=exc.strerror, rules="kept")
        return None
    if node not in spec.node_names:
        logs.event("spec_invalid", "error", path=str(path),
                   errors=[f"--node: the spec has no node {node!r}"], rules="kept")
        return None
    policy = compile_node(spec, node)
    changed_at = mtime if changed else None
    return PolicyAnswer(policy.version, policy, changed_at, encode_answer(policy, changed_at))


class SpecSource(threading.Thread):
    def __init__(self, path: Path, node: str, inbox: Inbox, stop: threading.Event) -> None:
        super().__init__(name="nodewall-spec", daemon=True)
        self.path = path.absolute()
        self.node = node
        self.inbox = inbox
        self.stop = stop
        self._seen: tuple[int, int, int] | None = None

    def run(self) -> None:
        fd = _inotify(self.path.parent)
        if fd is None:
            logs.event("spec_watch_polling", "warning", every=POLL_EVERY)
        try:
            self._check()
            while not self.stop.is_set():
                if fd is None:
                    self.stop.wait(POLL_EVERY)
                elif self._wait(fd):
                    self.stop.wait(SETTLE)
                self._check()
        finally:
            if fd is not None:
                os.close(fd)

    def _wait(self, fd: int) -> bool:
        """Block until an event about our file (True) or the periodic check is due."""
        readable, _, _ = select.select([fd], [], [], POLL_EVERY * 12)
        if not readable:
            return False
        name = os.fsencode(self.path.name)
        mine = False
        try:
            while data := os.read(fd, 65536):
                offset = 0
                while offset + 16 <= len(data):
                    _wd, _mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                    raw = data[offset + 16: offset + 16 + length].rstrip(b"\0")
                    mine = mine or raw == name
                    offset += 16 + length
        except BlockingIOError:
            pass
        return mine

    def _check(self) -> None:
        seen = _identity(self.path)
        if seen is None or seen == self._seen:
            return
        first = self._seen is None
        self._seen = seen
        answer = compile_file(self.path, self.node, changed=not first)
        if answer is not None:
            logs.event("spec_compiled", path=str(self.path), version=answer.version)
            self.inbox.put(answer)
