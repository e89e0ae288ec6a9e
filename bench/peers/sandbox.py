"""Where the peer benchmark's tools run: per-run network namespaces, a private mount namespace
over the directories a tool keeps under /etc, timed scripts with a cut-off, Debian installs.

- `Pair`: a node namespace and a client namespace (prefix `nwpr` + random hex) joined by a veth
  pair, IPv4 and IPv6 addresses on both; deleted on exit, even after a failure.
- `run_script`: a shell script run as `unshare -m` (private mounts, the binds given) then
  `ip netns exec NODE sh SCRIPT`, under GNU time; wall time and the peak RSS of the process
  tree (the largest resident set of the script and every process it waited for); stopped
  with its whole process group at the cut-off.
- `HostFiles`: a digest of the host's files under the tools' directories, to show afterwards
  that no run changed them.

Never runs a tool in the root namespace, never writes under the host's /etc except through
`apt-get install` in `ensure_installed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .node import CLIENT_V4, NODE_V4, NODE_V6

#: the host directories and files any tool of the benchmark may keep state in
HOST_PATHS = ("/etc/ufw", "/etc/default/ufw", "/lib/ufw", "/var/lib/ufw", "/etc/ferm",
              "/etc/firewalld",
              "/etc/default/ferm")

#: extra source addresses of the client namespace, for the verdict probes
PROBE_V4 = ("192.0.2.99", "10.128.0.2", "198.51.100.5")
PROBE_V6 = ("2001:db8:bad::99", "fd00:be::2", "2001:db8:ff::5")


def sh(*argv: str, stdin: str | None = None, check: bool = True,
       env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False,
                          env=dict(env) if env is not None else None)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    return proc.stdout


def ensure_installed(commands: Mapping[str, str]) -> list[str]:
    """Install the Debian package of every command missing (command -> package); the packages
    installed. ferm is told not to start at boot (debconf), nothing is started."""
    missing = sorted({pkg for cmd, pkg in commands.items() if shutil.which(cmd) is None})
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        sh("debconf-set-selections", stdin="ferm ferm/enable boolean false\n", check=False)
        done = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                              capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            sh("apt-get", "update", env=env)
            sh("apt-get", "install", "-y", "--no-install-recommends", *missing, env=env)
    return missing


class HostFiles:
    """Digest of everything under HOST_PATHS (paths, modes, contents)."""

    def __init__(self) -> None:
        self.before = self.digest()

    @staticmethod
    def digest() -> dict[str, str]:
        out: dict[str, str] = {}
        for top in HOST_PATHS:
            root = Path(top)
            if not root.exists():
                out[top] = "absent"
                continue
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*"))
            for path in files:
                mode = oct(path.lstat().st_mode)
                body = (hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file()
                        and not path.is_symlink() else "")
                out[str(path)] = f"{mode} {body}"
        return out

    def changed(self) -> list[str]:
        after = self.digest()
        return sorted(k for k in set(self.before) | set(after)
                      if self.before.get(k) != after.get(k))


def root_ruleset() -> str:
    """The root namespace's ruleset, read only, to show no tool touched it."""
    return sh("nft", "list", "ruleset", check=False)


@dataclass
class Pair:
    """A node namespace and a client namespace on one veth link."""

    prefix: str

    @property
    def node(self) -> str:
        return f"{self.prefix}-node"

    @property
    def client(self) -> str:
        return f"{self.prefix}-client"

    def create(self) -> None:
        sh("ip", "netns", "add", self.node)
        sh("ip", "netns", "add", self.client)
        a, b = f"{self.prefix}a", f"{self.prefix}b"
        sh("ip", "link", "add", a, "netns", self.node, "type", "veth", "peer", "name", b,
           "netns", self.client)
        wiring = {self.node: (a, [NODE_V4], [NODE_V6]),
                  self.client: (b, [CLIENT_V4, *PROBE_V4], list(PROBE_V6))}
        for ns, (dev, v4, v6) in wiring.items():
            cmds = [["ip", "link", "set", "lo", "up"], ["ip", "link", "set", dev, "up"]]
            cmds += [["ip", "address", "add", f"{a4}/32", "dev", dev] for a4 in v4]
            cmds += [["ip", "address", "add", f"{a6}/128", "dev", dev, "nodad"] for a6 in v6]
            cmds += [["ip", "route", "add", "default", "dev", dev],
                     ["ip", "-6", "route", "add", "default", "dev", dev]]
            for cmd in cmds:
                sh("ip", "netns", "exec", ns, *cmd)

    def delete(self) -> None:
        for ns in (self.node, self.client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@contextlib.contextmanager
def pair(run_prefix: str) -> Iterator[Pair]:
    made = Pair(f"{run_prefix}{secrets.token_hex(2)}")
    try:
        made.create()
        yield made
    finally:
        made.delete()


def new_prefix() -> str:
    """A per-run prefix for namespace names: `nwpr` and two random hex digits."""
    return f"nwpr{secrets.token_hex(1)}"


@dataclass(frozen=True)
class Run:
    """One timed script: seconds (None when stopped at the cut-off), peak RSS in kB."""

    seconds: float | None
    max_rss_kb: int
    cutoff: float
    returncode: int
    stderr: str

    @property
    def over(self) -> bool:
        return self.seconds is None


def run_script(script: str, ns: str, work: Path, cutoff: float,
               binds: Mapping[str, Path] | None = None,
               env: Mapping[str, str] | None = None, name: str = "step") -> Run:
    """Run `script` with sh in namespace `ns`, mount binds private to it; timed."""
    path = work / f"{name}.sh"
    path.write_text(script, encoding="utf-8")
    mounts = [f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}"
              for dst, src in (binds or {}).items()]
    inner = " && ".join([*mounts, f"exec ip netns exec {shlex.quote(ns)} sh {path}"])
    rss = work / f"{name}.rss"
    # GNU time reports the peak RSS of what it started: a process forked from this interpreter
    # would count the interpreter's pages, which it shares until its exec
    argv = ["/usr/bin/time", "-f", "%M", "-o", str(rss), "unshare", "-m", "--propagation",
            "private", "sh", "-c", inner]
    err = work / f"{name}.err"
    with open(err, "wb") as errfile:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errfile,
                                env=dict(env) if env is not None else None,
                                start_new_session=True)
        stopped = threading.Event()

        def stop() -> None:
            stopped.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(cutoff, stop)
        timer.start()
        try:
            _, status, _ = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(ProcessLookupError):  # leftovers of a stopped group
        os.killpg(proc.pid, signal.SIGKILL)
    text = err.read_text(errors="replace")
    rc = proc.returncode
    if not stopped.is_set() and rc != 0:
        raise RuntimeError(f"{name} in {ns} failed ({rc}): {text.strip()[-2000:]}")
    peak = rss.read_text().split() if rss.exists() else []
    return Run(None if stopped.is_set() else seconds, int(peak[-1]) if peak else 0, cutoff, rc,
               text)


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set (VmHWM) of a running process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0
