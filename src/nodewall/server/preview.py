"""What a change does to the nodes' policies, in the words of the change preview (`?dry_run=true`)
and of the audit trail: per node, the networks added to and removed from each address set, the
ports opened and closed (to whom), and the version before and after.

A diff is computed from the policy's stored text before and its text after
(`NodePolicy.to_json()`: canonical JSON, keys sorted, the sets array after the rules). Most of a
policy is the same before and after (a 1000-peer node's peer sets do not move with an ip_filter
edit), so the two texts are compared first: their common beginning and end are found by
comparing slices, and only the sets whose text lies in the part between are parsed
(`JSONDecoder.raw_decode` at each set's start); when that part reaches the rules or the fields
before them, both texts are read whole. So a preview reads the few sets a change touches, not
the 150 kB of every node's policy twice. Both the preview and the tests that check it
against the real change use `node_diff`, on what `policies.refresh` / `policies.drop` noted in
the change's session. Policies hold no customer text, so neither does a diff.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from nodewall.policy.model import NodePolicy
from nodewall.server.policies import Tracked

#: A port as the preview names it: (protocol, port, source set or "any").
PortKey = tuple[str, int, str]


#: What a diff reads of a policy: its sets' networks by name, and its rules as
#: (direction, action, protocol, src_set, dports).
Facts = tuple[dict[str, Sequence[str]], list[tuple[Any, Any, Any, Any, Sequence[int]]]]


def _facts_of_text(text: str | None) -> Facts:
    if text is None:
        return {}, []
    data = json.loads(text)
    return ({s["name"]: [e["network"] for e in s["elements"]] for s in data["sets"]},
            [(r["direction"], r["action"], r["protocol"], r["src_set"], r["dports"])
             for r in data["rules"]])


def _facts_of_policy(policy: NodePolicy) -> Facts:
    return ({s.name: s.networks for s in policy.sets},
            [(r.direction, r.action, r.protocol, r.src_set, r.dports) for r in policy.rules])


_SETS = '"sets": ['
_SET_START = '{"elements": ['
_decoder = json.JSONDecoder()
_STEP = 4096


def _same_run(a: str, b: str, limit: int, backward: bool) -> int:
    """How many characters `a` and `b` share at their start (or end), at most `limit`: slices
    compared a block at a time, the first differing block bisected."""
    la, lb = len(a), len(b)

    def same(i: int, j: int) -> bool:  # the characters i..j from the start (or the end)
        return a[i:j] == b[i:j] if not backward else a[la - j:la - i] == b[lb - j:lb - i]

    done = 0
    while done < limit:
        block = min(limit, done + _STEP)
        if same(done, block):
            done = block
            continue
        low, high = done, block  # equal up to low, a difference before high
        while high - low > 1:
            middle = (low + high) // 2
            if same(low, middle):
                low = middle
            else:
                high = middle
        return low
    return done


def _sets_between(text: str, low: int, high: int) -> dict[str, Sequence[str]] | None:
    """The networks of every set whose text overlaps text[low:high], by name; None when that
    part begins before the sets array (rules or other fields differ)."""
    begin = text.find(_SETS)
    if begin < 0 or low < begin + len(_SETS):
        return None
    start = text.rfind(_SET_START, begin, low + 1)
    position = start if start >= 0 else begin + len(_SETS)
    found: dict[str, Sequence[str]] = {}
    while not text.startswith("]", position):
        item, end = _decoder.raw_decode(text, position)
        found[item["name"]] = [e["network"] for e in item["elements"]]
        if end >= high or not text.startswith(", ", end):
            break
        position = end + 2
    return found


def _changed_facts(before: str | None, after: str | None,
                   compiled: NodePolicy | None) -> tuple[Facts, Facts]:
    """(before, after) facts; where both texts are known and differ only within the sets
    array, only the sets that differ (the rules are the same)."""
    if before is not None and after is not None:
        limit = min(len(before), len(after))
        head = _same_run(before, after, limit, backward=False)
        tail = _same_run(before, after, limit - head, backward=True)
        old = _sets_between(before, head, len(before) - tail)
        new = _sets_between(after, head, len(after) - tail)
        if old is not None and new is not None:
            return (old, []), (new, [])
    return _facts_of_text(before), (_facts_of_policy(compiled) if compiled is not None
                                    else _facts_of_text(after))


def open_ports(rules: list[tuple[Any, Any, Any, Any, Sequence[int]]]) -> set[PortKey]:
    """Every (protocol, port, source) an ingress accept rule lets in, NEW connections
    included (the established/related rule has no ports and is not counted)."""
    found: set[PortKey] = set()
    for direction, action, protocol, src_set, dports in rules:
        if direction != "in" or action != "accept" or not dports:
            continue
        for port in dports:
            found.add((protocol or "any", int(port), src_set or "any"))
    return found


def _port_list(keys: set[PortKey]) -> list[dict[str, Any]]:
    return [{"protocol": p, "port": n, "from": s} for p, n, s in sorted(keys)]


def node_diff(node: str, change: Tracked) -> dict[str, Any] | None:
    """The preview entry of one node, or None when its version stays (a rewrite of reasons or
    warnings only: nothing the kernel holds changes)."""
    if change.before_version == change.after_version:
        return None
    (old_sets, old_rules), (new_sets, new_rules) = _changed_facts(
        change.before, change.after, change.compiled)
    sets = []
    for name in sorted(set(old_sets) | set(new_sets)):
        old, new = old_sets.get(name, ()), new_sets.get(name, ())
        if tuple(old) == tuple(new):
            continue
        old_set, new_set = set(old), set(new)
        sets.append({"set": name,
                     "added": [n for n in new if n not in old_set],
                     "removed": [n for n in old if n not in new_set]})
    old_ports, new_ports = open_ports(old_rules), open_ports(new_rules)
    return {
        "node": node,
        "version_before": change.before_version,
        "version_after": change.after_version,
        "sets": sets,
        "ports_opened": _port_list(new_ports - old_ports),
        "ports_closed": _port_list(old_ports - new_ports),
    }


def diffs(changes: dict[str, Tracked]) -> list[dict[str, Any]]:
    """Preview entries of every node whose version a change moves, by node name."""
    entries = (node_diff(node, changes[node]) for node in sorted(changes))
    return [e for e in entries if e is not None]


def versions(changes: dict[str, Tracked]) -> dict[str, str | None]:
    """The resulting version of every node whose version moved (None: policy removed)."""
    return {node: t.after_version for node, t in sorted(changes.items())
            if t.before_version != t.after_version}
