"""Other tools' rulesets beside nodewall's in a test namespace: loaded before nodewall's first
apply, listed for comparison, removed afterwards, even when a test fails.

- `nft_tables`: rulesets from `neighbour_rulesets/*.nft`, loaded with `nft -f`;
- `docker_chains`: Docker's chains in iptables-nft's `ip filter` and `ip nat`, made with the
  `iptables-nft` commands Docker runs;
- `firewalld`: the real firewalld daemon (Debian's 1.3) in the namespace, on a private D-Bus
  system bus of its own, its configuration in a temporary directory;
- `Busy`: `nft -i` committing to its own table in a loop until stopped.

`listing` is everything in a namespace that is not `inet nodewall`, as `nft -s` prints it
(counter and quota values left out), table by table. Nothing here touches the root namespace.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from netns import sh
from normalise import nft_stateless

RULESETS = Path(__file__).resolve().parent / "neighbour_rulesets"
_TABLE = re.compile(r"^table (\S+) (\S+) \{", re.MULTILINE)


def listing(ns: str) -> dict[str, str]:
    """Every table of namespace `ns` but `inet nodewall`: its name -> its listing."""
    out = {}
    for line in sh("nft", "list", "tables", ns=ns).splitlines():
        family, name = line.split()[1:3]
        if (family, name) != ("inet", "nodewall"):
            text = sh("nft", "-s", "list", "table", family, name, ns=ns)
            out[f"{family} {name}"] = nft_stateless(text)
    return out


@contextlib.contextmanager
def nft_tables(ns: str, ruleset: str) -> Iterator[list[str]]:
    """The tables of `neighbour_rulesets/<ruleset>.nft` loaded in `ns` (their names given)."""
    text = (RULESETS / f"{ruleset}.nft").read_text()
    tables = [f"{family} {name}" for family, name in _TABLE.findall(text)]
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True,
                   check=True)
    try:
        yield tables
    finally:
        for table in tables:
            sh("nft", "delete", "table", *table.split(), ns=ns, check=False)


#: What Docker 24 runs at start (iptables-nft), one bridge and one published port.
DOCKER = [
    ["-N", "DOCKER"], ["-N", "DOCKER-ISOLATION-STAGE-1"], ["-N", "DOCKER-ISOLATION-STAGE-2"],
    ["-N", "DOCKER-USER"],
    ["-A", "FORWARD", "-j", "DOCKER-USER"],
    ["-A", "FORWARD", "-j", "DOCKER-ISOLATION-STAGE-1"],
    ["-A", "FORWARD", "-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
     "-j", "ACCEPT"],
    ["-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"],
    ["-A", "FORWARD", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT"],
    ["-A", "FORWARD", "-i", "docker0", "-o", "docker0", "-j", "ACCEPT"],
    ["-A", "DOCKER", "-d", "172.17.0.2/32", "!", "-i", "docker0", "-o", "docker0", "-p", "tcp",
     "-m", "tcp", "--dport", "80", "-j", "ACCEPT"],
    ["-A", "DOCKER-ISOLATION-STAGE-1", "-i", "docker0", "!", "-o", "docker0", "-j",
     "DOCKER-ISOLATION-STAGE-2"],
    ["-A", "DOCKER-ISOLATION-STAGE-1", "-j", "RETURN"],
    ["-A", "DOCKER-ISOLATION-STAGE-2", "-o", "docker0", "-j", "DROP"],
    ["-A", "DOCKER-ISOLATION-STAGE-2", "-j", "RETURN"],
    ["-A", "DOCKER-USER", "-j", "RETURN"],
    ["-t", "nat", "-N", "DOCKER"],
    ["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"],
    ["-t", "nat", "-A", "OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type",
     "LOCAL", "-j", "DOCKER"],
    ["-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j",
     "MASQUERADE"],
    ["-t", "nat", "-A", "DOCKER", "-i", "docker0", "-j", "RETURN"],
    ["-t", "nat", "-A", "DOCKER", "!", "-i", "docker0", "-p", "tcp", "-m", "tcp", "--dport",
     "8080", "-j", "DNAT", "--to-destination", "172.17.0.2:80"],
]


def _undo(command: list[str]) -> list[list[str]]:
    table = command[:2] if command[0] == "-t" else []
    verb, rest = command[len(table)], command[len(table) + 1:]
    if verb == "-A":
        return [[*table, "-D", *rest]]
    return [[*table, "-F", *rest], [*table, "-X", *rest]]  # -N


@contextlib.contextmanager
def docker_chains(ns: str) -> Iterator[list[str]]:
    """Docker's iptables-nft chains in `ns`; the nft tables holding them."""
    done: list[list[str]] = []
    try:
        for command in DOCKER:
            sh("iptables-nft", *command, ns=ns)
            done.append(command)
        yield ["ip filter", "ip nat"]
    finally:
        undo = [u for c in reversed(done) if "-A" in c for u in _undo(c)]
        undo += [u for c in done if "-N" in c for u in _undo(c)]
        for command in undo:
            sh("iptables-nft", *command, ns=ns, check=False)


_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/><allow own="*"/><allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

#: The default zone as an operator opens a service port in it (`--add-port`), and a
#: blocklist ipset whose sources go to zone drop.
_ZONES = {
    "zones/public.xml": """<?xml version="1.0" encoding="utf-8"?>
<zone>
  <short>Public</short>
  <service name="ssh"/>
  <service name="dhcpv6-client"/>
  <port protocol="tcp" port="{port}"/>
  <forward/>
</zone>
""",
    "zones/drop.xml": """<?xml version="1.0" encoding="utf-8"?>
<zone target="DROP">
  <short>Drop</short>
  <source ipset="nwn-blocklist"/>
  <forward/>
</zone>
""",
    "ipsets/nwn-blocklist.xml": """<?xml version="1.0" encoding="utf-8"?>
<ipset type="hash:net">
  <entry>198.18.0.0/15</entry>
  <entry>100.64.0.0/10</entry>
</ipset>
""",
}


def firewalld_missing() -> str | None:
    """None when firewalld can run here, else what is missing."""
    for tool in ("firewalld", "firewall-cmd", "dbus-daemon", "dbus-send"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages firewalld, dbus)"
    return None


class Firewalld:
    """Real firewalld running in a namespace (see `firewalld`)."""

    def __init__(self, ns: str, workdir: Path, port: int) -> None:
        self.ns, self.workdir = ns, workdir
        config = workdir / "etc"
        for sub in ("zones", "ipsets"):
            (config / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy("/etc/firewalld/firewalld.conf", config / "firewalld.conf")
        for name, text in _ZONES.items():
            (config / name).write_text(text.replace("{port}", str(port)))
        self.socket = workdir / "bus"
        (workdir / "bus.conf").write_text(_BUS_CONFIG.replace("{socket}", str(self.socket)))
        self.env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.socket}"}
        self.bus: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.bus = subprocess.Popen(["dbus-daemon", f"--config-file={self.workdir}/bus.conf",
                                     "--nofork", "--nopidfile"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        self._wait(lambda: self.socket.exists(), "the D-Bus socket")
        log = self.workdir / "firewalld.log"
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "firewalld", "--nofork", "--nopid",
             "--system-config", str(self.workdir / "etc"), "--log-target", "file",
             "--log-file", str(log)], env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT)
        self._wait(lambda: self.state() == "RUNNING", "firewalld to reach state RUNNING")

    def state(self) -> str:
        done = subprocess.run(
            ["dbus-send", "--system", "--print-reply=literal",
             "--dest=org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1",
             "org.freedesktop.DBus.Properties.Get", "string:org.fedoraproject.FirewallD1",
             "string:state"], env=self.env, capture_output=True, text=True, check=False)
        return done.stdout.split()[-1] if done.returncode == 0 and done.stdout.split() else ""

    def cmd(self, *args: str) -> str:
        done = subprocess.run(["firewall-cmd", *args], env=self.env, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"firewall-cmd {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def _wait(self, ready: object, what: str, seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while not ready():  # type: ignore[operator]
            if self.daemon is not None and self.daemon.poll() is not None:
                log = (self.workdir / "firewalld.log")
                raise RuntimeError(f"firewalld exited ({self.daemon.returncode}): "
                                   f"{log.read_text() if log.exists() else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in (self.daemon, self.bus):
            if proc is not None and proc.poll() is None:
                proc.terminate()  # firewalld removes its table on SIGTERM (CleanupOnExit)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        sh("nft", "delete", "table", "inet", "firewalld", ns=self.ns, check=False)


@contextlib.contextmanager
def firewalld(ns: str, workdir: Path, port: int) -> Iterator[Firewalld]:
    """firewalld running in `ns` with zone public opening tcp `port`; stopped afterwards."""
    daemon = Firewalld(ns, workdir, port)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


_LOOP = """n=0
{
  while [ ! -e "$1/stop" ]; do
    n=$((n + 1))
    echo "add element inet nwn_busy seen { 10.77.$((n / 250 % 250)).$((n % 250)) }"
    echo "flush chain inet nwn_busy work"
    echo "add rule inet nwn_busy work ip saddr 10.77.0.1 counter"
    echo "add chain inet nwn_busy passing"
    echo "delete chain inet nwn_busy passing"
    [ $((n % 50)) -ne 0 ] || echo "$n" > "$1/progress"
  done
  echo "$n" > "$1/sent"
} | nft -i > /dev/null
"""


class Busy:
    """A neighbour committing to its own table (`inet nwn_busy`) as fast as `nft -i` runs
    commands (each line its own transaction, five a round: add an element, flush a chain, add
    a rule, add a chain and delete it), until `stop`, which returns (rounds sent, rounds
    committed, nft's errors): each round adds a new element, so the set's size counts the
    rounds committed. Its table holds enough chains that a chain dump of the family comes in
    several parts, which the chain coming and going shifts (see
    `nodewall.backends.nftables.dump`)."""

    def __init__(self, ns: str, workdir: Path) -> None:
        self.ns, self.workdir = ns, workdir
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "sh", "-c", _LOOP, "sh",
                                      str(self.workdir)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    def rounds(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int((self.workdir / "progress").read_text())
        return 0

    def stop(self) -> tuple[int, int, str]:
        (self.workdir / "stop").touch()
        assert self.proc is not None
        _, err = self.proc.communicate(timeout=20)
        sent = int((self.workdir / "sent").read_text())
        held = sh("nft", "list", "set", "inet", "nwn_busy", "seen", ns=self.ns)
        return sent, held.count("10.77."), err


@contextlib.contextmanager
def busy(ns: str, workdir: Path) -> Iterator[Busy]:
    """`Busy` on table `inet nwn_busy` (loaded here), started; stopped and removed after."""
    with nft_tables(ns, "inet_busy"):
        idle = "".join(f"add chain inet nwn_busy idle{i:03d}\n" for i in range(400))
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=idle, text=True,
                       check=True)
        loop = Busy(ns, workdir)
        loop.start()
        try:
            yield loop
        finally:
            if loop.proc is not None and loop.proc.poll() is None:
                (workdir / "stop").touch()
                try:
                    loop.proc.wait(20)
                except subprocess.TimeoutExpired:
                    loop.proc.kill()
                    loop.proc.wait()
