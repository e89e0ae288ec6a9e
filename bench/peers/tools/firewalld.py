"""firewalld (Debian's 1.3, nftables backend) as an operator sets it up for such a node: the
permanent configuration of zone public (the default zone, every interface) with rich rules
for management, peers and clients, the peers and the ip_filter in firewalld ipsets, TCP and
UDP refused with a reset and port-unreachable (the zone's own target refuses the rest),
applied by `firewall-cmd --reload` of a running daemon. The change is the entry removed and
added with `firewall-cmd --ipset`, both runtime and `--permanent` (four commands, no reload).

The daemon runs in the node namespace on a private D-Bus system bus, its configuration
(`--system-config`) in the run's work directory; the host's /etc/firewalld is only read (its
firewalld.conf copied). Its peak RSS counts with the commands' (it does the work).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..node import NodeFacts, changed_entry
from ..sandbox import vm_hwm_kb
from .base import Case, Script, Tool

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
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


def _rule(family: str, match: str, action: str = "<accept/>", priority: str = "") -> str:
    return f'  <rule family="{family}"{priority}>{match}{action}</rule>'


def zone(facts: NodeFacts) -> str:
    rules: list[str] = []
    for family, mgmt, peers in (("ipv4", facts.mgmt_v4, "nwpeers4"),
                                ("ipv6", facts.mgmt_v6, "nwpeers6")):
        for net in mgmt:
            rules += [_rule(family, f'<source address="{net}"/><port protocol="tcp" '
                                    f'port="{p}"/>') for p in facts.mgmt_ports]
        peer = f'<source ipset="{peers}"/>'
        rules += [_rule(family, f'{peer}<port protocol="tcp" port="{p}"/>')
                  for p in facts.peer_ports]
        rules += [_rule(family, f'{peer}<port protocol="udp" port="{p}"/>') for p in (500, 4500)]
        rules.append(_rule(family, f'{peer}<protocol value="esp"/>'))
    rules += [_rule("ipv4", f'<source ipset="nwclients4"/><port protocol="tcp" port="{p}"/>')
              for p in facts.client_ports]
    last = ' priority="32767"'
    for family, unreach in (("ipv4", "icmp-port-unreachable"), ("ipv6", "icmp6-port-unreachable")):
        rules.append(_rule(family, '<protocol value="tcp"/>', '<reject type="tcp-reset"/>', last))
        rules.append(_rule(family, '<protocol value="udp"/>', f'<reject type="{unreach}"/>', last))
    body = "\n".join(rules)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<zone>\n  <short>Public</short>\n{body}\n'
            f"</zone>\n")


def ipset(kind: str, family: str, entries: tuple[str, ...]) -> str:
    option = '  <option name="family" value="inet6"/>\n' if family == "inet6" else ""
    host = "/128" if family == "inet6" else "/32"
    body = "".join(f"  <entry>{e.removesuffix(host) if kind == 'hash:ip' else e}</entry>\n"
                   for e in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<ipset type="{kind}">\n{option}{body}'
            "</ipset>\n")


class Firewalld(Tool):
    name = "firewalld"
    commands = (("firewalld", "firewalld"), ("firewall-cmd", "firewalld"),
                ("dbus-daemon", "dbus-daemon"))

    def __init__(self) -> None:
        self.daemon: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    @contextlib.contextmanager
    def session(self, ns: str, work: Path) -> Iterator[None]:
        config = work / "etc-firewalld"
        for sub in ("zones", "ipsets"):
            (config / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy("/etc/firewalld/firewalld.conf", config / "firewalld.conf")
        socket = work / "bus"
        (work / "bus.conf").write_text(BUS_CONFIG.replace("{socket}", str(socket)))
        self.env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={socket}"}
        bus = subprocess.Popen(["dbus-daemon", f"--config-file={work}/bus.conf", "--nofork",
                                "--nopidfile"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        procs = [bus]
        try:
            self._wait(socket.exists, "the D-Bus socket", work)
            self.daemon = subprocess.Popen(
                ["ip", "netns", "exec", ns, "firewalld", "--nofork", "--nopid",
                 "--system-config", str(config), "--log-target", "file", "--log-file",
                 str(work / "firewalld.log")], env=self.env, stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT)
            procs.insert(0, self.daemon)
            self._wait(lambda: self._state() == "RUNNING", "firewalld to run", work)
            yield
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            self.daemon = None

    def _state(self) -> str:
        done = subprocess.run(["firewall-cmd", "--state"], env=self.env, capture_output=True,
                              text=True, check=False)
        return "RUNNING" if done.returncode == 0 and "running" in done.stdout else ""

    def _wait(self, ready: Callable[[], bool], what: str, work: Path) -> None:
        deadline = time.monotonic() + 30
        while not ready():
            if self.daemon is not None and self.daemon.poll() is not None:
                log = work / "firewalld.log"
                raise RuntimeError(f"firewalld exited: {log.read_text() if log.exists() else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def apply(self, case: Case, work: Path) -> Script:
        config = work / "etc-firewalld"
        facts = case.facts
        (config / "ipsets" / "nwclients4.xml").write_text(
            ipset("hash:net", "inet", facts.clients_v4))
        (config / "ipsets" / "nwpeers4.xml").write_text(ipset("hash:ip", "inet", facts.peers_v4))
        (config / "ipsets" / "nwpeers6.xml").write_text(ipset("hash:ip", "inet6", facts.peers_v6))
        (config / "zones" / "public.xml").write_text(zone(facts))
        return Script("exec firewall-cmd --reload > /dev/null\n", env=self.env)

    def change(self, case: Case, work: Path) -> Script:
        removed, added = changed_entry(case.facts, case.facts_changed)
        lines = ["set -e"]
        for verb, nets in (("remove", removed), ("add", added)):
            for net in nets:
                for scope in ("", " --permanent"):
                    lines.append(f"firewall-cmd{scope} --ipset=nwclients4 --{verb}-entry={net}"
                                 f" > /dev/null")
        return Script("\n".join(lines) + "\n", env=self.env)

    def daemon_rss_kb(self) -> int:
        if self.daemon is None:
            return 0
        # `ip netns exec` execs firewalld in place: the Popen's pid is the daemon's
        return vm_hwm_kb(self.daemon.pid)
