"""The lab's processes: the control plane, the agents, PostgreSQL servers, the SOCKS5 proxy and
the stand-in listeners, each started inside its namespace in a session of its own (so it
outlives `lab up` when asked to) and recorded in the lab's state; and their end.

PostgreSQL runs as the `postgres` user (it refuses root), from one `initdb` copied per node.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from nodewall.lab.netns import LabError, sh
from nodewall.lab.state import LabState


def start(state: LabState, name: str, ns: str, cmd: list[str], user: str | None = None) -> int:
    """Start `cmd` inside namespace `ns` (as `user` when given), its output in
    `<workdir>/logs/<name>.log`; records and returns its pid."""
    logs = Path(state.workdir) / "logs"
    logs.mkdir(exist_ok=True)
    # setpriv execs the command (runuser would stay as a parent that delays every stop by 2 s)
    as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"] if user else []
    full = ["ip", "netns", "exec", ns, *as_user, *cmd]
    with (logs / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    state.pids[name] = proc.pid
    state.save()
    return proc.pid


def alive(pid: int) -> bool:
    """Is `pid` running? A zombie is not (in a container nobody may ever reap an orphan)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    if zombie:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return not zombie


def stop(state: LabState, name: str, timeout: float = 5) -> None:
    """Stop the process (group) `name` and forget it."""
    stop_all(state, [name], timeout)


def stop_all(state: LabState, names: list[str], timeout: float = 5) -> None:
    """SIGTERM the process groups of `names` at once, SIGKILL those left after `timeout`."""
    pids = [state.pids[n] for n in names if n in state.pids]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    for n in names:
        state.pids.pop(n, None)
    state.save()


def nodewall_cmd(*args: str) -> list[str]:
    return python_module("nodewall", *args)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def make_certificate(state: LabState, address: str) -> None:
    """A self-signed certificate for the server's address (it is its own CA), key 0600."""
    key = state.run_dir / "server.key"
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-keyout", str(key), "-out", str(state.ca_file), "-days", "7",
       "-subj", "/CN=nodewall-lab", "-addext", f"subjectAltName=IP:{address}")
    key.chmod(0o600)


def pg_bindir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    raise LabError("PostgreSQL server binaries not found (apt-get install postgresql; "
                   "scripts/setup.sh installs it)")


def _traversable_by(path: Path, uid: int) -> bool:
    for part in [path, *path.parents]:
        st = part.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            return False
    return True


def postgres_template(state: LabState) -> Path:
    """One initdb'd data directory (trust auth on every address: a lab), owned by postgres."""
    user = pwd.getpwnam("postgres")
    base = state.run_dir / "pg"
    base.mkdir(exist_ok=True)
    if not _traversable_by(base.parent, user.pw_uid):
        raise LabError(f"the work directory {state.workdir} is not reachable by the postgres "
                       "user (a parent directory is not world-searchable); choose another "
                       "with --workdir")
    os.chown(base, user.pw_uid, user.pw_gid)
    template = base / "template"
    if not (template / "PG_VERSION").exists():
        subprocess.run(["runuser", "-u", "postgres", "--", str(pg_bindir() / "initdb"), "-D",
                        str(template), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True)
        with (template / "pg_hba.conf").open("a") as f:
            f.write("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n")
    return template


def start_postgres(state: LabState, node: str, ns: str, port: int) -> None:
    template = postgres_template(state)
    data = template.parent / node
    if data.exists():
        shutil.rmtree(data)
    subprocess.run(["runuser", "-u", "postgres", "--", "cp", "-a", str(template), str(data)],
                   check=True)
    start(state, f"postgres-{node}", ns, [
        str(pg_bindir() / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data),
        "-c", "listen_addresses=*", "-c", "fsync=off", "-c", "max_connections=50",
        "-c", "shared_buffers=16MB"], user="postgres")


def wait_postgres(ns: str, address: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(["ip", "netns", "exec", ns, "pg_isready", "-q", "-h", address,
                               "-p", str(port), "-t", "1"], capture_output=True, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise LabError(f"postgres on {address}:{port} did not start within {timeout} s")
        time.sleep(0.1)
