"""A plain iptables command script, as an operator writes one: one `iptables -A` (and
`ip6tables -A`) per rule in INPUT, a rule per management network, per peer and per ip_filter
entry, a REJECT catch-all (TCP reset, UDP port-unreachable, the rest admin-prohibited). The
change deletes the replaced entry's rule and inserts the new one before the catch-all."""

from __future__ import annotations

from pathlib import Path

from ..node import NodeFacts, changed_entry
from .base import Case, Script, Tool

ICMP4 = ("destination-unreachable", "time-exceeded", "parameter-problem")
ICMP6 = ("destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem",
         "router-solicitation", "router-advertisement", "neighbour-solicitation",
         "neighbour-advertisement")


def _ports(ports: tuple[int, ...]) -> str:
    return ",".join(map(str, ports))


def client_rule(facts: NodeFacts, network: str) -> str:
    return f"-s {network} -p tcp -m multiport --dports {_ports(facts.client_ports)} -j ACCEPT"


def rules(facts: NodeFacts, v6: bool) -> list[str]:
    """INPUT rules of one family, in order, as iptables arguments after `-A INPUT`."""
    icmp = "ipv6-icmp" if v6 else "icmp"
    out = ["-i lo -j ACCEPT", f"-s {'::1/128' if v6 else '127.0.0.0/8'} -j DROP",
           "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
           "-m conntrack --ctstate INVALID -j DROP"]
    types = ICMP6 if v6 else ICMP4
    flag = "--icmpv6-type" if v6 else "--icmp-type"
    out += [f"-p {icmp} {flag} {t} -j ACCEPT" for t in types]
    out.append(f"-p {icmp} {flag} echo-request -m limit --limit 10/sec -j ACCEPT")
    for net in facts.mgmt_v6 if v6 else facts.mgmt_v4:
        out.append(f"-s {net} -p tcp -m multiport --dports {_ports(facts.mgmt_ports)} -j ACCEPT")
    for peer in facts.peers_v6 if v6 else facts.peers_v4:
        out.append(f"-s {peer} -p tcp -m multiport --dports {_ports(facts.peer_ports)} -j ACCEPT")
        out.append(f"-s {peer} -p udp -m multiport --dports 500,4500 -j ACCEPT")
        out.append(f"-s {peer} -p esp -j ACCEPT")
    if not v6:
        out += [client_rule(facts, net) for net in facts.clients_v4]
    out += catch_all(v6)
    return out


def catch_all(v6: bool) -> list[str]:
    unreach, prohibited = (("icmp6-port-unreachable", "icmp6-adm-prohibited") if v6 else
                           ("icmp-port-unreachable", "icmp-admin-prohibited"))
    return ["-p tcp -j REJECT --reject-with tcp-reset",
            f"-p udp -j REJECT --reject-with {unreach}",
            f"-j REJECT --reject-with {prohibited}"]


class IptablesScript(Tool):
    name = "iptables-script"

    def apply(self, case: Case, work: Path) -> Script:
        lines = ["set -e"]
        for v6, command in ((False, "iptables"), (True, "ip6tables")):
            lines += [f"{command} -A INPUT {rule}" for rule in rules(case.facts, v6)]
        return Script("\n".join(lines) + "\n")

    def change(self, case: Case, work: Path) -> Script:
        removed, added = changed_entry(case.facts, case.facts_changed)
        before = rules(case.facts, False)
        position = len(before) - len(catch_all(False)) + 1 - len(removed)
        lines = ["set -e"]
        lines += [f"iptables -D INPUT {client_rule(case.facts, n)}" for n in removed]
        lines += [f"iptables -I INPUT {position} {client_rule(case.facts, n)}" for n in added]
        return Script("\n".join(lines) + "\n")
