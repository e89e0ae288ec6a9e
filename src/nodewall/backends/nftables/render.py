"""The nftables ruleset as text: what `nodewall render` prints and `nft -f` would load.

One table `inet nodewall`, written exactly as `nft list table inet nodewall` prints it back
(canonical form): sets first (interval sets for networks, plain sets for point-to-point
hosts), then chains `input` and `output` (base chains at priority filter, policy accept, the
policy's rules in order), then chain `version`, whose one rule's comment records the policy
version and digests of the rest (see `nodewall.backends.nftables.wire`). Pure: policy in, text out.
The backend applies the same table as netlink messages (`nftwire`), and a kernel test holds the
kernel's listing of those messages to this text.

Never: customer text (a policy holds none; reasons are sanitised by `comment` anyway).
"""

from __future__ import annotations

import array
import functools
import itertools
import operator
import socket
import sys
from collections.abc import Iterable, Sequence

from nodewall.backends.comments import safe_comment
from nodewall.backends.rejects import kernel_rules
from nodewall.policy.model import ICMP_TYPES, NodePolicy, Rule

FAMILY = "inet"
TABLE = "nodewall"
CHAINS = ("input", "output")
VERSION_CHAIN = "version"
COMMENT_MAX = 128
_CT_ORDER = ("invalid", "established", "related", "new")  # nft prints the bitmask in bit order
_IP = {4: "ip", 6: "ip6"}
_BITS = {4: 32, 6: 128}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def comment(text: str) -> str:
    """A nodewall-made text as an nft comment: a safe character set only, at most 128 bytes."""
    return safe_comment(text, COMMENT_MAX)


def render_text(policy: NodePolicy, version_comment: str) -> str:
    """The full ruleset text, the version rule carrying `version_comment`."""
    out = [f"table {FAMILY} {TABLE} {{\n", '\tcomment "managed by nodewall: do not edit"\n']
    for s in policy.sets:
        out.append(f"\tset {s.name} {{\n\t\ttype ipv{s.family}_addr\n")
        if not s.hosts_only:
            out.append("\t\tflags interval\n")
        tokens = [_token(s.family, first, last)
                  for first, last in set_prefixes(s.family, s.hosts_only, s.networks)]
        if tokens:
            out.append(_elements_text(tokens, "\t\t"))
        out.append("\t}\n\n")
    for chain in CHAINS:
        direction = "in" if chain == "input" else "out"
        out.append(f"\tchain {chain} {{\n")
        out.append(f"\t\ttype filter hook {chain} priority filter; policy accept;\n")
        for rule in kernel_rules(policy, direction):  # type: ignore[arg-type]
            out.extend(f"\t\t{line}\n" for line in rule_lines(rule))
        out.append("\t}\n\n")
    out.append(f'\tchain {VERSION_CHAIN} {{\n\t\treturn comment "{version_comment}"\n\t}}\n}}\n')
    return "".join(out)


def _elements_text(tokens: list[str], indent: str) -> str:
    rows = [", ".join(tokens[i : i + 8]) for i in range(0, len(tokens), 8)]
    return f"{indent}elements = {{ " + f",\n{indent}\t     ".join(rows) + " }\n"


def rule_lines(rule: Rule) -> list[str]:
    """One policy rule as nft rule lines (a protocol-less reject needs three)."""
    if rule.action == "reject" and rule.protocol is None:
        return [
            _rule_line(rule, "meta l4proto tcp", "counter reject with tcp reset"),
            _rule_line(rule, "meta l4proto udp", "counter reject with icmpx port-unreachable"),
            _rule_line(rule, None, "counter reject with icmpx admin-prohibited"),
        ]
    if rule.action == "reject":
        verdict = {
            "tcp": "counter reject with tcp reset",
            "udp": "counter reject with icmpx port-unreachable",
        }.get(rule.protocol or "", "counter reject with icmpx admin-prohibited")
    else:
        verdict = rule.action
    return [_rule_line(rule, _protocol_match(rule), verdict)]


def _protocol_match(rule: Rule) -> str | None:
    if rule.protocol in ("tcp", "udp"):
        ports = sorted(set(rule.dports))
        if not ports:
            return f"meta l4proto {rule.protocol}"
        if len(ports) == 1:
            return f"{rule.protocol} dport {ports[0]}"
        return f"{rule.protocol} dport {{ {', '.join(map(str, ports))} }}"
    if rule.protocol == "esp":
        return "meta l4proto esp"
    if rule.protocol == "icmp":
        if rule.family is None:
            return "meta l4proto { icmp, ipv6-icmp }"
        keyword = "icmp" if rule.family == 4 else "icmpv6"
        if not rule.icmp_types:
            return "meta l4proto " + ("icmp" if rule.family == 4 else "ipv6-icmp")
        codes = ICMP_TYPES[rule.family]
        names = sorted(set(rule.icmp_types), key=lambda n: codes[n])
        if len(names) == 1:
            return f"{keyword} type {names[0]}"
        return f"{keyword} type {{ {', '.join(names)} }}"
    return None


def _rule_line(rule: Rule, protocol_match: str | None, verdict: str) -> str:
    parts: list[str] = []
    iface = "iifname" if rule.direction == "in" else "oifname"
    if rule.interface == "loopback":
        parts.append(f'{iface} "lo"')
    elif rule.interface == "not-loopback":
        parts.append(f'{iface} != "lo"')
    implied = rule.src_set or rule.dst_set or rule.protocol == "icmp"
    if rule.family is not None and not implied:
        parts.append(f"meta nfproto ipv{rule.family}")
    if rule.src_set:
        parts.append(f"{_IP[rule.family or 4]} saddr @{rule.src_set}")
    if rule.dst_set:
        parts.append(f"{_IP[rule.family or 4]} daddr @{rule.dst_set}")
    if rule.ct_states:
        parts.append("ct state " + ",".join(s for s in _CT_ORDER if s in rule.ct_states))
    if protocol_match:
        parts.append(protocol_match)
    if rule.uid is not None:
        parts.append(f"meta skuid {int(rule.uid)}")
    if rule.limit_per_second is not None:
        parts.append(f"limit rate {int(rule.limit_per_second)}/second")
    parts.append(verdict)
    reason = comment(rule.reason)
    if reason:
        parts.append(f'comment "{reason}"')
    return " ".join(parts)


def set_prefixes(family: int, hosts_only: bool, networks: Iterable[str]
                 ) -> list[tuple[int, int]]:
    """A set's elements as sorted (first, last) address pairs: for a host-only set every
    address; otherwise the networks merged where they overlap or touch and split into the
    fewest aligned prefixes, the form in which `nft` prints an interval set back."""
    spans = parse_spans(family, networks)
    if hosts_only:
        if any(first != last for first, last in spans):
            raise ValueError(f"a host-only set holds a network: {tuple(networks)}")
        return spans
    return merge_spans(family, spans)


def parse_spans(family: int, networks: Iterable[str]) -> list[tuple[int, int]]:
    """Networks ("10.0.0.0/24", "10.0.0.5") as sorted, distinct (first, last) pairs. Done in
    bulk, a C-level pass per step (8000 networks in a few milliseconds)."""
    texts = tuple(networks)
    if not texts:
        return []
    addresses, _, plens = zip(*map(str.partition, texts, ["/"] * len(texts)), strict=True)
    try:
        masks = list(map(_HOST_MASKS[family].__getitem__, plens))
    except KeyError as exc:
        raise ValueError(f"bad prefix length {exc}") from None
    firsts: Sequence[int]
    if family == 4:
        firsts = array.array("I", b"".join(map(_PTON4, addresses)))
        if sys.byteorder == "little":
            firsts.byteswap()
    else:
        firsts = [int.from_bytes(_PTON6(a), "big") for a in addresses]
    if any(map(operator.and_, firsts, masks)):
        bad = next(t for t, f, m in zip(texts, firsts, masks, strict=True) if f & m)
        raise ValueError(f"{bad!r} has host bits set")
    spans = list(zip(firsts, map(operator.or_, firsts, masks), strict=False))
    if all(map(operator.lt, spans, spans[1:])):  # the compiler's order: sorted, distinct
        return spans
    return sorted(set(spans))


#: prefix length as written ("" for a host) -> the host bits of that prefix
_HOST_MASKS = {family: {**{str(p): (1 << (bits - p)) - 1 for p in range(bits + 1)}, "": 0}
               for family, bits in _BITS.items()}
_PTON4 = functools.partial(socket.inet_pton, socket.AF_INET)
_PTON6 = functools.partial(socket.inet_pton, socket.AF_INET6)


def merge_spans(family: int, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans merged where they overlap or touch, each merged run split into the fewest
    aligned prefixes (a span standing alone is one already). Only the runs are walked in
    Python; which spans touch their predecessor is found in one C-level pass."""
    if not spans:
        return []
    bits = _BITS[family]
    firsts, lasts = [f for f, _ in spans], [last for _, last in spans]
    touching = list(map(operator.le, firsts[1:], map((1).__add__, lasts[:-1])))
    if not any(touching):
        return list(spans)
    out: list[tuple[int, int]] = []
    done = 0  # spans before this index are in `out`
    for i in itertools.compress(range(1, len(spans)), touching):
        if i < done:
            continue
        start = i - 1
        out += spans[done:start]
        run_last, j = lasts[start], start + 1
        while j < len(spans) and firsts[j] <= run_last + 1:
            run_last = max(run_last, lasts[j])
            j += 1
        out += _prefixes(bits, firsts[start], run_last)
        done = j
    out += spans[done:]
    return out


def _prefixes(bits: int, first: int, last: int) -> list[tuple[int, int]]:
    """The fewest aligned prefixes covering first..last."""
    if first == last:
        return [(first, last)]
    out = []
    while first <= last:
        size = first & -first if first else 1 << bits
        while size > last - first + 1:
            size >>= 1
        out.append((first, first + size - 1))
        first += size
    return out


def _token(family: int, first: int, last: int) -> str:
    """A prefix as nft prints it (a host without its /32 or /128)."""
    address = socket.inet_ntop(_AF[family], first.to_bytes(_BITS[family] // 8, "big"))
    if first == last:
        return address
    return f"{address}/{_BITS[family] + 1 - (last - first + 1).bit_length()}"
