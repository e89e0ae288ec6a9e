"""The nftables ruleset as text: what `nodewall render` prints and `nft -f` would load.

One table `inet nodewall`, written exactly as `nft list table inet nodewall` prints it back
(canonical form): sets first (interval sets for networks, plain sets for point-to-point
hosts), then chains `input` and `output` (base chains at priority filter, policy accept, the
policy's rules in order), then chain `version`, whose one rule's comment records the policy
version and digests of the rest (see `nodewall.backends.nftables.wire`). Pure: policy in, text out.
A rule's lines are those of `nodewall.backends.nftables.steps`, which says what each line
matches; this module only writes each step in nft's notation (`line_text`), as `expr` writes
the same steps as bytecode. The backend applies the same table as netlink messages (`nftwire`),
and a kernel test holds the kernel's listing of those messages to this text.

Never: customer text (a policy holds none; reasons are sanitised by `steps.comment` anyway).
"""

from __future__ import annotations

import array
import functools
import itertools
import operator
import socket
import sys
from collections.abc import Iterable, Sequence
from typing import assert_never

from nodewall.backends.nftables.steps import (
    AddrInSet,
    Counter,
    CtStates,
    Dport,
    IcmpType,
    Iface,
    L4Proto,
    Limit,
    Line,
    NfProto,
    Reject,
    SkUid,
    Step,
    Verdict,
    rule_steps,
    version_line,
)
from nodewall.backends.rejects import kernel_rules
from nodewall.net.family import AF as _AF
from nodewall.net.family import BITS as _BITS
from nodewall.net.family import NFT_IP
from nodewall.policy.model import NodePolicy

FAMILY = "inet"
TABLE = "nodewall"
CHAINS = ("input", "output")
VERSION_CHAIN = "version"


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
            out.extend(f"\t\t{line_text(line)}\n" for line in rule_steps(rule))
        out.append("\t}\n\n")
    version = line_text(version_line(version_comment))
    out.append(f"\tchain {VERSION_CHAIN} {{\n\t\t{version}\n\t}}\n}}\n")
    return "".join(out)


def _elements_text(tokens: list[str], indent: str) -> str:
    rows = [", ".join(tokens[i : i + 8]) for i in range(0, len(tokens), 8)]
    return f"{indent}elements = {{ " + f",\n{indent}\t     ".join(rows) + " }\n"


def line_text(line: Line) -> str:
    """One rule line (see `nftsteps`) as nft prints it."""
    parts = [_step_text(step) for step in line.steps]
    if line.comment:
        parts.append(f'comment "{line.comment}"')
    return " ".join(parts)


def _braced(items: Sequence[object]) -> str:
    """One value as it is, several as an anonymous set: `22` or `{ 22, 80 }`."""
    return str(items[0]) if len(items) == 1 else f"{{ {', '.join(map(str, items))} }}"


def _step_text(step: Step) -> str:
    match step:
        case Iface(output, name, negate):
            return f'{"oifname" if output else "iifname"} {"!= " if negate else ""}"{name}"'
        case NfProto(family):
            return f"meta nfproto ipv{family}"
        case AddrInSet(family, source, set_name):
            return f"{NFT_IP[family]} {'saddr' if source else 'daddr'} @{set_name}"
        case CtStates(states):
            return "ct state " + ",".join(states)
        case L4Proto(protocols):
            return f"meta l4proto {_braced(protocols)}"
        case Dport(protocol, ports):
            return f"{protocol} dport {_braced(ports)}"
        case IcmpType(family, names):
            return f"{'icmp' if family == 4 else 'icmpv6'} type {_braced(names)}"
        case SkUid(uid):
            return f"meta skuid {uid}"
        case Limit(per_second):
            return f"limit rate {per_second}/second"
        case Counter():
            return "counter"
        case Reject(with_):
            return f"reject with {with_}"
        case Verdict(verdict):
            return verdict
    assert_never(step)


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
