"""Run a commit sequence in a child process that outlives its parent: crash safety of applies
that take several kernel transactions.

The iptables backend writes IPv6 and then IPv4 (two transactions), and a set-only update swaps
sets and then updates `NODEWALL-META`. A SIGKILL of `nodewall apply` between two of those steps
would leave the kernel holding part of the new policy and part of the old one, for good. So
the steps, with the verification and the rollback that follow a failure, run in a forked child
that starts its own session: a kill of the parent (or of its process group, or a Ctrl-C at its
terminal) does not reach it, and the child finishes the sequence, or rolls it back, on its own.
The parent waits for it and gets its result or its exception through a pipe, so callers see
an ordinary function call. (A kill of the whole cgroup, as systemd's stop does, still reaches
both; the agent then re-applies its cache when it starts.)

Only a single-threaded process forks (the CLI); with other threads running, forking could
copy a lock held by one of them, so the sequence then runs inline (the agent's case; see
above). The child must never print, log or run exit handlers: it leaves by `os._exit`.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable
from typing import TypeVar

from nodewall.backends.base import BackendError

T = TypeVar("T")


def run_detached(work: Callable[[], T]) -> T:
    """`work()`, run in a child in its own session when this process is single-threaded."""
    if threading.active_count() > 1:
        return work()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from this branch
        os.close(read_end)
        code = 0
        try:
            os.setsid()
            try:
                payload = pickle.dumps((True, work()))
            except BaseException as exc:  # every failure goes back to the parent
                payload = pickle.dumps((False, _portable(exc)))
            try:
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(payload)
            except OSError:
                pass  # the parent is gone; the kernel holds the outcome all the same
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise BackendError(f"the commit process died ({_describe(status)}); "
                           "read the kernel with `nodewall status`")
    ok, value = pickle.loads(data)  # our own child, through our own pipe
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def _portable(exc: BaseException) -> BaseException:
    """The exception as the parent can unpickle it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return BackendError(f"{type(exc).__name__}: {exc}")


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"
