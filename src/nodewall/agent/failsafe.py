"""The fail-safe policy: what a node's kernel holds at boot when no verified policy is cached.

Ingress: loopback; loopback sources on other interfaces dropped; established and related
accepted, invalid dropped; the ICMP the network needs (SPEC section 3, rule 3; ping
rate-limited); management (22/tcp, 30287/tcp) from `--management-network`, or from anywhere when
none is given (a node must never lock out its operators); everything else rejected. Egress:
loopback, established, the metadata address's rules of every policy (NTP and DNS for all, the
rest for uid 0 only), then everything accepted, so the agent can reach its control plane.

It is built directly as a `NodePolicy` (the agent never runs the compiler); a unit test holds
its first rules equal to the compiler's. It must never depend on the server or the spec model.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from nodewall.policy.model import AddressSet, Family, NodePolicy, Rule, check_policy

MANAGEMENT_PORTS = (22, 30287)
PING_LIMIT_PER_SECOND = 10
LOOPBACK = {4: "127.0.0.0/8", 6: "::1/128"}
METADATA_ADDRESS = "169.254.169.254/32"
NEEDED_ICMP: dict[Family, tuple[str, ...]] = {
    4: ("destination-unreachable", "time-exceeded", "parameter-problem"),
    6: ("destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem",
        "nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert"),
}
FAMILIES: tuple[Family, ...] = (4, 6)
SERVICE = "fail-safe"
#: The purpose of the fail-safe policy's management sets.
MANAGEMENT_PURPOSE = "management networks (fail-safe)"


def parse_networks(texts: Sequence[str]) -> list[str]:
    """Management networks in canonical form; ValueError naming the first bad one."""
    result = []
    for text in texts:
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a network in CIDR form ({exc})") from None
        if str(net) != text:
            raise ValueError(f"{text!r} is not in canonical form (write {str(net)!r})")
        result.append(str(net))
    return result


def failsafe_policy(node: str, management_networks: Sequence[str] = ()) -> NodePolicy:
    """The fail-safe policy of `node`; `management_networks` are canonical CIDRs (see
    `parse_networks`); empty: management ports open to every source."""
    sets: list[AddressSet] = []
    rules: list[Rule] = [Rule("in", "accept", "loopback", interface="loopback")]

    def add_set(name: str, family: Family, purpose: str, networks: Sequence[str]) -> str:
        sets.append(AddressSet.of(name, family, False, purpose, networks,
                                  [(purpose,)] * len(networks)))
        return name

    for family in FAMILIES:
        loop = add_set(f"loopback_v{family}", family, "loopback addresses", [LOOPBACK[family]])
        rules.append(Rule("in", "drop", "loopback source on a non-loopback interface",
                          family=family, interface="not-loopback", src_set=loop))
    rules.append(Rule("in", "accept", "established or related flow",
                      ct_states=("established", "related")))
    rules.append(Rule("in", "drop", "invalid flow state", ct_states=("invalid",)))
    for family in FAMILIES:
        rules.append(Rule("in", "accept", "ICMP the network needs", family=family,
                          protocol="icmp", icmp_types=NEEDED_ICMP[family]))
        rules.append(Rule("in", "accept", "ping (rate-limited)", family=family, protocol="icmp",
                          icmp_types=("echo-request",), limit_per_second=PING_LIMIT_PER_SECOND))
    if management_networks:
        for family in FAMILIES:
            mine = [n for n in management_networks if ipaddress.ip_network(n).version == family]
            name = add_set(f"mgmt_v{family}", family, MANAGEMENT_PURPOSE, mine)
            rules.append(Rule("in", "accept", "management (fail-safe)", family=family,
                              protocol="tcp", src_set=name, dports=MANAGEMENT_PORTS))
    else:
        rules.append(Rule("in", "accept", "management from anywhere (fail-safe)",
                          protocol="tcp", dports=MANAGEMENT_PORTS))
    rules.append(Rule("in", "reject", "fail-safe: rejected"))
    rules.append(Rule("out", "accept", "loopback", interface="loopback"))
    rules.append(Rule("out", "accept", "established or related flow",
                      ct_states=("established", "related")))
    meta = add_set("metadata_v4", 4, "cloud metadata address", [METADATA_ADDRESS])
    for proto, port, why in (("udp", 123, "NTP"), ("udp", 53, "DNS"), ("tcp", 53, "DNS")):
        rules.append(Rule("out", "accept", f"{why} at the metadata address", family=4,
                          protocol=proto, dst_set=meta, dports=(port,)))  # type: ignore[arg-type]
    rules.append(Rule("out", "accept", "platform agents (uid 0) reach the metadata service",
                      family=4, dst_set=meta, uid=0))
    rules.append(Rule("out", "reject", "metadata service is for uid 0 only", family=4,
                      dst_set=meta))
    rules.append(Rule("out", "accept", "fail-safe: egress allowed"))
    policy = NodePolicy(node=node, service=SERVICE, service_type="none", environment="standard",
                        sets=tuple(sets), rules=tuple(rules))
    check_policy(policy)
    return policy
