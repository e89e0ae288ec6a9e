"""The iptables + ipset ruleset as text: the chains of each family and the restore texts.

What `nodewall render --backend iptables` prints and what the backend sends
(`nodewall.backends.iptables.backend`, whose design note says how): chains `NODEWALL-INPUT`,
`-OUTPUT`, `-REJECT` and `-META` per family, each policy rule as `iptables-save` prints it back
(so that verification is a comparison of lines), the version and set digests in `-META`'s
comments. Pure: policy in, text out. Never: customer text (reasons are sanitised by `comment`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from nodewall.backends.comments import safe_comment
from nodewall.backends.iptables import ipset
from nodewall.backends.iptables.xtables import FamilyNum, FilterTable
from nodewall.backends.rejects import kernel_rules
from nodewall.policy.model import ICMP_TYPES, NodePolicy, Rule, check_policy

CHAIN = {"in": "NODEWALL-INPUT", "out": "NODEWALL-OUTPUT"}
HOOK = {"NODEWALL-INPUT": "INPUT", "NODEWALL-OUTPUT": "OUTPUT"}
REJECT_CHAIN = "NODEWALL-REJECT"
META_CHAIN = "NODEWALL-META"
#: Order of the two kernel transactions (see the design note).
FAMILIES: tuple[FamilyNum, FamilyNum] = (6, 4)
_CT_ORDER = ("invalid", "new", "related", "established")  # the order iptables-save prints
_NO_QUOTE = re.compile(r"^[A-Za-z0-9_-]+$")
_PROTO = {4: {"tcp": "tcp", "udp": "udp", "esp": "esp", "icmp": "icmp"},
          6: {"tcp": "tcp", "udp": "udp", "esp": "esp", "icmp": "ipv6-icmp"}}
_REJECT = {4: ("icmp-port-unreachable", "icmp-admin-prohibited"),
           6: ("icmp6-port-unreachable", "icmp6-adm-prohibited")}

Chains = dict[str, list[str]]




def comment(text: str) -> str:
    """A nodewall-made reason as a rule comment, quoted the way iptables-save prints it."""
    clean = safe_comment(text, 200) or "nodewall"
    return clean if _NO_QUOTE.match(clean) else f'"{clean}"'


def rule_lines(rule: Rule, family: FamilyNum, names: Mapping[str, str]) -> list[str]:
    """One policy rule as `-A` lines of one family (none when the rule is for the other)."""
    if rule.family is not None and rule.family != family:
        return []
    head: list[str] = []
    if rule.interface is not None:
        flag = "-i" if rule.direction == "in" else "-o"
        head += [flag, "lo"] if rule.interface == "loopback" else ["!", flag, "lo"]
    if rule.protocol is not None:
        head += ["-p", _PROTO[family][rule.protocol]]
    if rule.ct_states:
        states = ",".join(s.upper() for s in _CT_ORDER if s in rule.ct_states)
        head += ["-m", "conntrack", "--ctstate", states]
    alternatives: list[list[str]] = [[]]
    if rule.dports:
        ports = sorted(set(rule.dports))
        if len(ports) == 1:
            alternatives = [["-m", str(rule.protocol), "--dport", str(ports[0])]]
        else:
            alternatives = [["-m", "multiport", "--dports", ",".join(map(str, ports[i:i + 15]))]
                            for i in range(0, len(ports), 15)]
    elif rule.icmp_types:
        module, option = ("icmp", "--icmp-type") if family == 4 else ("icmp6", "--icmpv6-type")
        codes = sorted({ICMP_TYPES[family][t] for t in rule.icmp_types})
        alternatives = [["-m", module, option, str(code)] for code in codes]
    tail: list[str] = []
    if rule.src_set:
        tail += ["-m", "set", "--match-set", names[rule.src_set], "src"]
    if rule.dst_set:
        tail += ["-m", "set", "--match-set", names[rule.dst_set], "dst"]
    if rule.uid is not None:
        tail += ["-m", "owner", "--uid-owner", str(int(rule.uid))]
    if rule.limit_per_second is not None:
        tail += ["-m", "limit", "--limit", f"{int(rule.limit_per_second)}/sec"]
    tail += ["-m", "comment", "--comment", comment(rule.reason), *_target(rule, family)]
    return [" ".join(["-A", CHAIN[rule.direction], *head, *alt, *tail]) for alt in alternatives]


def _target(rule: Rule, family: FamilyNum) -> list[str]:
    if rule.action == "accept":
        return ["-j", "RETURN"]  # on to the rest of INPUT/OUTPUT: see "Verdicts" above
    if rule.action == "drop":
        return ["-j", "DROP"]
    if rule.protocol is None:
        return ["-j", REJECT_CHAIN]
    if rule.protocol == "tcp":
        return ["-j", "REJECT", "--reject-with", "tcp-reset"]
    unreachable, prohibited = _REJECT[family]
    return ["-j", "REJECT", "--reject-with", unreachable if rule.protocol == "udp" else prohibited]


def chains_digest(chains: Chains) -> str:
    blob = "\n".join(f"{c}\n" + "\n".join(chains[c]) for c in sorted(chains) if c != META_CHAIN)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def family_chains(policy: NodePolicy, family: FamilyNum, names: Mapping[str, str],
                   version: str | None = None) -> Chains:
    """Every nodewall chain of one family with its lines, `NODEWALL-META` included
    (`version`: the policy's, when the caller has it already; computing it is not free)."""
    chains: Chains = {CHAIN["in"]: [], CHAIN["out"]: []}
    for direction in ("in", "out"):
        for rule in kernel_rules(policy, direction):
            chains[CHAIN[direction]] += rule_lines(rule, family, names)
    unreachable, prohibited = _REJECT[family]
    chains[REJECT_CHAIN] = [
        f"-A {REJECT_CHAIN} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {REJECT_CHAIN} -p udp -j REJECT --reject-with {unreachable}",
        f"-A {REJECT_CHAIN} -j REJECT --reject-with {prohibited}",
    ]
    version = version or policy.version
    meta = [f'-A {META_CHAIN} -m comment --comment "nodewall version {version} '
            f'rules {chains_digest(chains)}" -j RETURN']
    meta += [f'-A {META_CHAIN} -m comment --comment "set {names[s.name]} '
             f'{ipset.policy_digest(s)}" -j RETURN' for s in policy.sets if s.family == family]
    chains[META_CHAIN] = meta
    return chains


def restore_text(want: Chains, have: FilterTable, jumps: Mapping[str, list[int]]) -> str | None:
    """One `--noflush` transaction turning `have`'s nodewall chains into `want`, with each hook
    chain's jump at `jumps` positions; None when there is nothing to send."""
    current = have.ours()
    jump_lines: list[str] = []
    for chain, hook in HOOK.items():
        now = have.positions(hook, f"-A {hook} -j {chain}")
        wanted = sorted(jumps.get(chain, [])) if chain in want else []
        if now != wanted:
            jump_lines += [f"-D {hook} -j {chain}"] * len(now)
            jump_lines += [f"-I {hook} {pos} -j {chain}" for pos in wanted]
    if want == current and not jump_lines:
        return None
    lines = ["*filter", *(f":{c} - [0:0]" for c in sorted(set(want) | set(current)))]
    lines += jump_lines
    for chain in sorted(want):
        lines += want[chain]
    lines += [f"-X {c}" for c in sorted(set(current) - set(want))]
    return "\n".join([*lines, "COMMIT"]) + "\n"


FIRST = {CHAIN["in"]: [1], CHAIN["out"]: [1]}


def render(policy: NodePolicy) -> str:
    """The texts a first apply sends: `ipset restore`, then each family's `*-restore`."""
    check_policy(policy)
    names = {s.name: ipset.kernel_name(s.name, "a") for s in policy.sets}
    out = [f"# nodewall policy {policy.version} for iptables + ipset", "# ipset restore"]
    for s in policy.sets:
        out += ipset.create_lines(names[s.name], s)
    for family in FAMILIES:
        text = restore_text(family_chains(policy, family, names), FilterTable(), FIRST)
        out += [f"# ip{'6' if family == 6 else ''}tables-restore --noflush", (text or "").rstrip()]
    return "\n".join(out) + "\n"
