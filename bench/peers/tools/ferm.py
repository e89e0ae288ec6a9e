"""ferm (Debian's `ferm`): the node's rules as a ferm.conf, one `domain` block per family,
ip_filter and peers as lists (ferm writes a rule per list item), loaded by `ferm` through
iptables-restore. A change is the edited file loaded again, as ferm always works. Run with a
private /etc/ferm (ferm itself reads only the file it is given)."""

from __future__ import annotations

from pathlib import Path

from ..node import NodeFacts
from .base import Case, Script, Tool
from .iptables_script import ICMP4, ICMP6


def _list(items: tuple[str, ...] | tuple[int, ...]) -> str:
    return "(" + " ".join(map(str, items)) + ")"


def conf(facts: NodeFacts) -> str:
    blocks = []
    for domain, v6 in (("ip", False), ("ip6", True)):
        icmp = "ipv6-icmp" if v6 else "icmp"
        kind = "icmpv6-type" if v6 else "icmp-type"
        mgmt = facts.mgmt_v6 if v6 else facts.mgmt_v4
        peers = facts.peers_v6 if v6 else facts.peers_v4
        unreach, prohibited = (("icmp6-port-unreachable", "icmp6-adm-prohibited") if v6 else
                               ("icmp-port-unreachable", "icmp-admin-prohibited"))
        body = [
            "policy ACCEPT;",
            "interface lo ACCEPT;",
            f"saddr {'::1/128' if v6 else '127.0.0.0/8'} DROP;",
            "mod conntrack ctstate (RELATED ESTABLISHED) ACCEPT;",
            "mod conntrack ctstate INVALID DROP;",
            f"proto {icmp} {kind} {_list(ICMP6 if v6 else ICMP4)} ACCEPT;",
            f"proto {icmp} {kind} echo-request mod limit limit 10/sec ACCEPT;",
            f"saddr {_list(mgmt)} proto tcp mod multiport destination-ports "
            f"{_list(facts.mgmt_ports)} ACCEPT;",
        ]
        if peers:
            body.append(f"saddr {_list(peers)} {{ proto tcp mod multiport destination-ports "
                        f"{_list(facts.peer_ports)} ACCEPT; proto udp mod multiport "
                        f"destination-ports (500 4500) ACCEPT; proto esp ACCEPT; }}")
        if not v6 and facts.clients_v4:
            body.append(f"saddr {_list(facts.clients_v4)} proto tcp mod multiport "
                        f"destination-ports {_list(facts.client_ports)} ACCEPT;")
        body += ["proto tcp REJECT reject-with tcp-reset;",
                 f"proto udp REJECT reject-with {unreach};",
                 f"REJECT reject-with {prohibited};"]
        inner = "\n    ".join(body)
        blocks.append(f"domain {domain} table filter chain INPUT {{\n    {inner}\n}}\n")
    return "\n".join(blocks)


class Ferm(Tool):
    name = "ferm"
    commands = (("ferm", "ferm"),)

    def _load(self, facts: NodeFacts, work: Path, name: str) -> Script:
        etc = work / "etc-ferm"
        etc.mkdir(exist_ok=True)
        path = etc / f"{name}.conf"
        path.write_text(conf(facts), encoding="utf-8")
        return Script(f"exec ferm /etc/ferm/{name}.conf\n", binds={"/etc/ferm": etc})

    def apply(self, case: Case, work: Path) -> Script:
        return self._load(case.facts, work, "ferm")

    def change(self, case: Case, work: Path) -> Script:
        return self._load(case.facts_changed, work, "changed")
