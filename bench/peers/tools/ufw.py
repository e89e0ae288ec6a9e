"""ufw (Debian's `ufw`), rule by rule as its manual and configuration tools drive it: `ufw
default reject incoming`, one `ufw allow from X to any port P proto tcp` per management
network, per peer (and its IPsec) and per ip_filter entry while ufw is disabled, a last `ufw
reject proto tcp` (ufw's default policy answers TCP with ICMP port-unreachable, not a reset),
then `ufw --force enable`. The change is `ufw delete allow ...` of the replaced entry and `ufw
prepend allow ...` of the new one (ahead of the reject) on the enabled firewall.

ufw keeps its state in /etc/ufw, /etc/default/ufw and /lib/ufw: each run has private copies
of the host's, bind-mounted over them in the run's own mount namespace, so the host's files
are never written; its sysctl file is emptied in the copy (ufw would otherwise set the
namespace's sysctls, which differ from the other tools' runs).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..node import NodeFacts, changed_entry
from .base import Case, Script, Tool


def _ports(ports: tuple[int, ...]) -> str:
    return ",".join(map(str, ports))


def _client(facts: NodeFacts, network: str) -> str:
    return f"from {network} to any port {_ports(facts.client_ports)} proto tcp"


def commands(facts: NodeFacts) -> list[str]:
    out = ["default reject incoming", "default allow outgoing"]
    for net in (*facts.mgmt_v4, *facts.mgmt_v6):
        out.append(f"allow from {net} to any port {_ports(facts.mgmt_ports)} proto tcp")
    for peer in (*facts.peers_v4, *facts.peers_v6):
        out.append(f"allow from {peer} to any port {_ports(facts.peer_ports)} proto tcp")
        out.append(f"allow from {peer} to any port 500,4500 proto udp")
        out.append(f"allow from {peer} proto esp")
    out += [f"allow {_client(facts, net)}" for net in facts.clients_v4]
    # ufw's default policy refuses TCP with ICMP port-unreachable; a reject rule sends resets
    out.append("reject proto tcp from any to any")
    return out


class Ufw(Tool):
    name = "ufw"
    commands = (("ufw", "ufw"),)

    def _private(self, work: Path) -> dict[str, Path]:
        etc, lib, default = work / "etc-ufw", work / "lib-ufw", work / "default-ufw"
        if not etc.exists():
            shutil.copytree("/etc/ufw", etc, symlinks=True)
            shutil.copytree("/lib/ufw", lib, symlinks=True)
            (etc / "sysctl-none.conf").write_text("", encoding="utf-8")
            text = Path("/etc/default/ufw").read_text(encoding="utf-8")
            default.write_text(text.replace("IPT_SYSCTL=/etc/ufw/sysctl.conf",
                                            "IPT_SYSCTL=/etc/ufw/sysctl-none.conf"),
                               encoding="utf-8")
        return {"/etc/ufw": etc, "/lib/ufw": lib, "/etc/default/ufw": default}

    def apply(self, case: Case, work: Path) -> Script:
        lines = ["set -e", *(f"ufw {c} > /dev/null" for c in commands(case.facts)),
                 "ufw --force enable > /dev/null"]
        return Script("\n".join(lines) + "\n", binds=self._private(work))

    def change(self, case: Case, work: Path) -> Script:
        removed, added = changed_entry(case.facts, case.facts_changed)
        lines = ["set -e"]
        lines += [f"ufw delete allow {_client(case.facts, n)} > /dev/null" for n in removed]
        lines += [f"ufw prepend allow {_client(case.facts, n)} > /dev/null" for n in added]
        return Script("\n".join(lines) + "\n", binds=self._private(work))
