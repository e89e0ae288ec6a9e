"""The conntrack cut: after an apply, delete the tracked flows the new policy would not admit.

Backend-neutral: it asks the reference evaluator, not a ruleset, whether each flow of the
current network namespace would be admitted as a new connection by the new `NodePolicy`, and
deletes the conntrack entry (both directions of the flow at once) of every flow that would not.
The next packet of a cut flow is then `ct state new` and meets the new ruleset: a TCP peer gets
a reset, a UDP peer an ICMP error.

Which flows: IPv4 and IPv6; ingress flows (original destination is an address of this node) are
judged as new ingress packets; egress flows (original source is ours) as new egress packets and
cut only when refused whatever the sending uid (conntrack does not record it). Loopback and
forwarded flows are left alone. So a management SSH session, still admitted, survives.

It must never delete a flow the new policy admits, and never build a command from anything but
addresses and numbers parsed from the kernel's own output (arguments are passed as a list, no
shell).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass

from nodewall.evaluator import Packet, evaluate
from nodewall.policy import ICMP_TYPES, NodePolicy, Protocol

_PROTOCOLS: dict[str, Protocol] = {"tcp": "tcp", "udp": "udp", "icmp": "icmp",
                                   "icmpv6": "icmp", "esp": "esp"}


@dataclass(frozen=True)
class Flow:
    """The original-direction tuple of one conntrack entry."""

    family: int
    protocol: str  # conntrack's name: tcp, udp, icmp, icmpv6, esp, ...
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    state: str = ""  # TCP state (ESTABLISHED, TIME_WAIT, ...); empty for other protocols


#: TCP entries that no longer carry a connection: a new SYN on their tuple starts a new flow,
#: which meets the ruleset as `ct state new`. They are left to expire.
_CLOSED = {"TIME_WAIT", "CLOSE"}


def cut_refused_flows(policy: NodePolicy) -> int:
    """Delete the flows `policy` refuses; the number deleted."""
    local = local_addresses()
    groups: dict[tuple[object, ...], list[Flow]] = {}
    for flow in list_flows():
        if flow.state not in _CLOSED:  # flows differing only in source port share a verdict
            key = (flow.family, flow.protocol, flow.src, flow.dst, flow.dport, flow.icmp_type)
            groups.setdefault(key, []).append(flow)
    cut = 0
    for flows in groups.values():
        if refused(policy, flows[0], local) and delete_flows(flows[0]):
            cut += len(flows)
    return cut


def refused(policy: NodePolicy, flow: Flow, local: set[str]) -> bool:
    """True when the new policy would not admit this flow as a new connection."""
    protocol = _PROTOCOLS.get(flow.protocol)
    if protocol is None:
        return False
    src_local, dst_local = _norm(flow.src) in local, _norm(flow.dst) in local
    if src_local == dst_local:  # loopback traffic, or forwarded
        return False
    icmp_type = None
    if protocol == "icmp":
        names = {code: name for name, code in ICMP_TYPES[flow.family].items()}
        icmp_type = names.get(flow.icmp_type if flow.icmp_type is not None else -1)
        if icmp_type is None:
            return False
    dport = flow.dport if protocol in ("tcp", "udp") else None
    if dst_local:
        packet = Packet(flow.src, flow.dst, protocol, dport, "in", icmp_type)
        return evaluate(policy, packet).action != "accept"
    verdicts = {evaluate(policy, Packet(flow.src, flow.dst, protocol, dport, "out", icmp_type,
                                        uid)).action for uid in (None, 0)}
    return "accept" not in verdicts


def _norm(address: str) -> str:
    return str(ipaddress.ip_address(address))


def local_addresses() -> set[str]:
    """The addresses of the current network namespace's interfaces."""
    out = subprocess.run(["ip", "-j", "address", "show"], capture_output=True, text=True,
                         check=True).stdout
    found = set()
    for link in json.loads(out or "[]"):
        for info in link.get("addr_info", []):
            if "local" in info:
                found.add(_norm(info["local"]))
    return found


def list_flows() -> list[Flow]:
    """Every conntrack entry of the current network namespace, both families."""
    flows = []
    for family in ("ipv4", "ipv6"):
        proc = subprocess.run(["conntrack", "-L", "-f", family], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"conntrack -L -f {family} failed: {proc.stderr.strip()[:200]}")
        for line in proc.stdout.splitlines():
            if " TIME_WAIT " in line or " CLOSE " in line:
                continue  # see _CLOSED; skipped before parsing, there may be many
            flow = parse_flow(line, 4 if family == "ipv4" else 6)
            if flow is not None:
                flows.append(flow)
    return flows


def parse_flow(line: str, family: int) -> Flow | None:
    """One line of `conntrack -L` as a Flow (original direction), or None."""
    words = line.split()
    if not words:
        return None
    fields: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key not in fields:  # the first occurrence is the original direction
            fields[key] = value
    if "src" not in fields or "dst" not in fields:
        return None

    def number(key: str) -> int | None:
        value = fields.get(key)
        return int(value) if value is not None and value.isdigit() else None

    try:
        src, dst = _norm(fields["src"]), _norm(fields["dst"])
    except ValueError:
        return None
    state = words[3] if words[0] == "tcp" and len(words) > 3 and "=" not in words[3] else ""
    return Flow(family, words[0], src, dst, number("sport"), number("dport"),
                number("type"), number("code"), number("id"), state)


def delete_flows(flow: Flow) -> bool:
    """Delete every entry sharing this flow's addresses, protocol and destination port (or ICMP
    type), whatever its source port: one command per verdict, not per flow."""
    args = ["conntrack", "-D", "-f", f"ipv{flow.family}", "-p", flow.protocol,
            "-s", flow.src, "-d", flow.dst]
    if flow.dport is not None and flow.protocol in ("tcp", "udp"):
        args += ["--dport", str(flow.dport)]
    if flow.protocol in ("icmp", "icmpv6") and flow.icmp_type is not None:
        args += ["--icmp-type" if flow.protocol == "icmp" else "--icmpv6-type",
                 str(flow.icmp_type)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    return proc.returncode == 0
