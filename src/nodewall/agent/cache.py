"""The agent's state cache: the last policy verified in this node's kernel, for the next boot.

One file, `<state dir>/policy.cache`: a header line `nodewall-agent-cache 1 <bytes> <sha256>`
and then the policy answer exactly as the server sent it (`{"version", "policy", ...}`). It is
written atomically (a temporary file in the same directory, fsync, rename over the old one,
fsync of the directory), so after a crash or power loss the file is the old one or the new one
whole. On read the length and digest are checked and the answer decoded as a server answer; a
torn, corrupt or foreign file is ignored (the caller logs why) and never applied.

It must never hold a token, and never hand out a policy it has not checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from nodewall.agent.answer import BadAnswer, PolicyAnswer, decode_answer

MAGIC = b"nodewall-agent-cache 1"
FILENAME = "policy.cache"


class CacheUnusable(Exception):
    """The cache exists but cannot be used; the message says why."""


class PolicyCache:
    def __init__(self, state_dir: Path, node: str) -> None:
        self.dir = state_dir
        self.node = node
        self.path = state_dir / FILENAME

    def load(self) -> PolicyAnswer | None:
        """The cached answer; None when there is none; CacheUnusable when it is torn,
        corrupt, or another node's."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheUnusable(f"cannot read {self.path}: {exc.strerror}") from None
        header, sep, body = data.partition(b"\n")
        parts = header.split(b" ")
        if not sep or len(parts) != 4 or b" ".join(parts[:2]) != MAGIC:
            raise CacheUnusable("header missing or not a nodewall agent cache")
        if not parts[2].isdigit() or int(parts[2]) != len(body):
            raise CacheUnusable(f"torn: {len(body)} bytes after the header, "
                                f"{parts[2].decode(errors='replace')[:20]} recorded")
        if hashlib.sha256(body).hexdigest().encode() != parts[3]:
            raise CacheUnusable("digest mismatch: the file is corrupt")
        try:
            return decode_answer(body, self.node)
        except BadAnswer as exc:
            raise CacheUnusable(f"content unusable: {exc}") from None

    def store(self, body: bytes) -> None:
        """Replace the cache with `body` (a policy answer), atomically; OSError on failure."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        header = b"%s %d %s\n" % (MAGIC, len(body), hashlib.sha256(body).hexdigest().encode())
        temp = self.dir / f".{FILENAME}.{os.getpid()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=True) as out:
                out.write(header)
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def sweep(self) -> None:
        """Remove temporary files a killed agent left behind."""
        with contextlib.suppress(OSError):
            for leftover in self.dir.glob(f".{FILENAME}.*.tmp"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
