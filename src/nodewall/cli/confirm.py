"""`nodewall apply --confirm S` and `nodewall confirm`: apply, and roll back by itself unless
someone confirms within S seconds (as `iptables-apply` does).

How it works. `apply --confirm` forks a *watcher* that starts its own session, with stdin,
stdout and stderr on /dev/null, and then only relays what the watcher tells it through a pipe.
The watcher, under the apply lock, snapshots what the backend holds (`backends.rollback`) and
applies the policy; it then writes `pending.json` in the state directory and waits. `nodewall
confirm` (another shell, same node, same state directory) renames `pending.json` to
`confirmed.json`; at the deadline the watcher renames it to `expired.json` itself. Renames are
atomic, so exactly one of the two wins: a confirmation is either in time (the new policy stays)
or too late (the previous ruleset is restored from the snapshot, exactly: both backends, and
"nothing of nodewall's" when nothing was there). The outcome is written to `last.json`.

Because the watcher is the one that waits and rolls back, a SIGKILL of the `apply --confirm`
process (or of its process group, or a lost terminal) changes nothing: the watcher still rolls
back at the deadline, and `nodewall confirm` still works. What is not covered: a kill of the
watcher itself (systemd stopping the whole cgroup, or `kill -9` of its pid): the new policy then
stays, `pending.json` names a dead pid, and `nodewall confirm` reports that the watcher is gone.

State directory: `--state-dir`, default `/run/nodewall/netns-<inode of the network namespace>`
(volatile like the rules themselves, and one per namespace so labs do not collide).
Exit codes: 0 applied and confirmed; 1 rolled back, or the kernel refused; 2 bad input.
It must never print customer text, and the watcher must never write to the terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nodewall.cli.common import REFUSED, fail

if TYPE_CHECKING:
    from nodewall.backends.base import Backend
    from nodewall.policy.model import NodePolicy

StateDirOpt = Annotated[Path | None, typer.Option(
    "--state-dir", help="Where a pending confirmation is kept (default: per network namespace "
    "under /run/nodewall).")]

PENDING, CONFIRMED, EXPIRED, LAST = "pending.json", "confirmed.json", "expired.json", "last.json"
POLL_SECONDS = 0.05


def default_state_dir() -> Path:
    return Path("/run/nodewall") / f"netns-{os.stat('/proc/self/ns/net').st_ino}"


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    """True while the watcher runs: the pid is a live nodewall process (a zombie, dead but not
    reaped yet, counts as gone, and so does another program that reuses the pid)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and b"nodewall" in argv


def apply_with_confirm(backend: Backend, policy: NodePolicy, seconds: int,
                       state_dir: Path | None) -> None:
    """Run the watcher and relay its news; exits with the outcome's code."""
    where = state_dir or default_state_dir()
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    held = _read(where / PENDING)
    if held is not None and _alive(int(held.get("pid", 0))):
        fail(REFUSED, f"an apply awaits confirmation in {where} (policy {held.get('version')}, "
                      f"watcher pid {held.get('pid')}): run `nodewall confirm` or wait")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        status = 0
        try:
            _detach()
            with os.fdopen(write_end, "w", buffering=1) as news:
                _watch(backend, policy, seconds, where, news)
        except BaseException:  # the watcher must not unwind into the CLI
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    code: int | None = None
    with os.fdopen(read_end) as news:
        for line in news:
            event = json.loads(line)
            typer.echo(event["text"], err=event["code"] != 0)
            code = event["code"]
    os.waitpid(pid, 0)
    if code is None:
        fail(REFUSED, "the confirm watcher ended without a word; read the kernel with "
                      "`nodewall status`")
    raise typer.Exit(code)


def _detach() -> None:
    """A session of its own, the standard streams on /dev/null: no signal or hang-up meant
    for the terminal's foreground reaches the watcher, and nobody waits on its output."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _tell(news: Any, text: str, code: int | None = None) -> None:
    with contextlib.suppress(OSError):  # the apply process may be gone; carry on
        news.write(json.dumps({"text": text, "code": code if code is not None else 0}) + "\n")
        news.flush()


def _watch(backend: Backend, policy: NodePolicy, seconds: int, where: Path, news: Any) -> None:
    from nodewall.backends import applylock, rollback
    from nodewall.backends.base import BackendError

    try:
        with applylock.held():
            before = rollback.take(backend)
            result = backend.apply(policy)
    except BackendError as exc:
        _tell(news, f"error: {exc}", REFUSED)
        return
    deadline = time.time() + seconds
    _write(where / PENDING, {"pid": os.getpid(), "version": result.version,
                             "backend": result.backend, "deadline": deadline})
    _tell(news, f"applied policy {result.version} with {result.backend} "
                f"({result.flows_cut} flow(s) cut); run `nodewall confirm` within {seconds} s "
                "or the previous ruleset comes back")
    while time.time() < deadline and (where / PENDING).exists():
        time.sleep(POLL_SECONDS)
    try:
        (where / PENDING).rename(where / EXPIRED)
    except FileNotFoundError:  # `nodewall confirm` renamed it first
        (where / CONFIRMED).unlink(missing_ok=True)
        _write(where / LAST, {"outcome": "confirmed", "version": result.version,
                              "at": time.time()})
        _tell(news, f"confirmed: policy {result.version} stays")
        return
    previous = "nothing of nodewall's" if before.empty else "the previous ruleset"
    try:
        rollback.restore(before)
    except BackendError as exc:
        _write(where / LAST, {"outcome": "rollback failed", "version": result.version,
                              "at": time.time()})
        (where / EXPIRED).unlink(missing_ok=True)
        _tell(news, f"error: no confirmation within {seconds} s, and the rollback failed: {exc}",
              REFUSED)
        return
    _write(where / LAST, {"outcome": "rolled back", "version": result.version,
                          "at": time.time()})
    (where / EXPIRED).unlink(missing_ok=True)
    _tell(news, f"no confirmation within {seconds} s: rolled back to {previous} "
                f"({before.backend})", REFUSED)


def confirm_cmd(state_dir: StateDirOpt = None) -> None:
    """Keep the policy a running `nodewall apply --confirm` applied."""
    where = state_dir or default_state_dir()
    held = _read(where / PENDING)
    if held is not None and not _alive(int(held.get("pid", 0))):
        (where / PENDING).unlink(missing_ok=True)
        fail(REFUSED, f"the watcher of policy {held.get('version')} (pid {held.get('pid')}) is "
                      "gone: nothing will roll back, the policy it applied stays")
    try:
        (where / PENDING).rename(where / CONFIRMED)
    except FileNotFoundError:
        last = _read(where / LAST)
        if last is not None and last.get("outcome") != "confirmed":
            fail(REFUSED, f"nothing awaits confirmation: policy {last.get('version')} was "
                          f"{last.get('outcome')} (too late)")
        fail(REFUSED, f"nothing awaits confirmation in {where}")
    version = held.get("version") if held else "?"
    typer.echo(f"confirmed policy {version}")
