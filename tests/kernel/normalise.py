"""Tool output made comparable: the one home of every normaliser the tests apply to what
`iptables-save`/`ip6tables-save`, `ipset save`, `nft list` and ctnetlink dumps give back.

Each function takes text (or decoded flows) and returns what a test compares; each says what
it leaves out and why that is traffic or presentation, not ruleset. Pure: nothing here runs a
command or touches a namespace (the tests read the kernel, then call these). A normaliser must
never erase a difference of ruleset: tests/unit/test_normalise.py checks that each one keeps
rules, chains, elements and sets apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from nodewall.backends.conntrack import Flow

_CHAIN_COUNTERS = re.compile(r"^(:\S+ \S+) \[\d+:\d+\]$")
_RULE_COUNTERS = re.compile(r"^\[(\d+):(\d+)\] (.*)$")
_NFT_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
_NFT_ELEMENTS = re.compile(r"elements = \{[^}]*\}")
_NFT_STATEFUL = re.compile(r"packets \d+|bytes \d+|used \d+( \w*bytes)?")


def xtables_save(text: str, counters: bool = False) -> list[str]:
    """`*-save` output as lines, without its comment lines (they carry timestamps). Without
    `counters` the built-in chains' policy counters are zeroed: iptables-legacy-save prints them
    even without -c, and any packet of the namespace moves them. With `counters` (text saved
    with -c, which a test compares counter by counter) they are kept as printed."""
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    if counters:
        return lines
    return [_CHAIN_COUNTERS.sub(r"\1 [0:0]", line) for line in lines]


def counted_rule(line: str) -> tuple[int, str]:
    """A rule line of `*-save -c` output, `[packets:bytes] -A CHAIN ...`: its packet count and
    the rule without the counters."""
    found = _RULE_COUNTERS.match(line)
    if found is None:
        raise ValueError(f"not a counted rule line: {line!r}")
    return int(found.group(1)), found.group(3)


def ipset_save(text: str) -> list[str]:
    """`ipset save` output as sorted lines: ipset prints sets and members in hash order, which
    differs between two sets of the same contents."""
    return sorted(text.splitlines())


def nft_listing(text: str) -> list[str]:
    """An `nft list` listing or a rendered ruleset as comparable lines: counters without their
    values, the one spelling the kernel shortens (`reject with icmpx port-unreachable` lists as
    `reject`), each element list on one line (nft wraps them by width), whitespace collapsed,
    blank lines left out."""
    text = _NFT_COUNTER.sub("counter", text)
    text = text.replace("reject with icmpx port-unreachable", "reject")
    text = _NFT_ELEMENTS.sub(lambda m: " ".join(m.group(0).split()), text)
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def nft_stateless(text: str) -> str:
    """An `nft -s` listing of another tool's table with the values of its stateful objects left
    out (named counters' packets and bytes, a quota's `used`), which that tool's traffic moves:
    nft 1.0.6 omits them with -s, an nft that does not must not fail a comparison."""
    return _NFT_STATEFUL.sub("", text)


#: TCP states of conntrack entries that no longer carry a connection.
CLOSED_TCP = frozenset({"TIME_WAIT", "CLOSE"})


def live_flows(flows: Iterable[Flow], src: str) -> list[Flow]:
    """Decoded conntrack entries from `src` that still carry a connection: closed TCP entries
    (TIME_WAIT, CLOSE) left out, which linger after a probe and which the cut leaves alone."""
    return [f for f in flows if f.src == src and f.state not in CLOSED_TCP]
