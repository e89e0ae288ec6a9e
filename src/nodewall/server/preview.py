"""What a change does to the nodes' policies, in the words of the change preview (`?dry_run=true`)
and of the audit trail: per node, the networks added to and removed from each address set, the
ports opened and closed (to whom), and the version before and after.

A diff is computed from the policy before (its stored text, `NodePolicy.to_json()`, read as
plain JSON: a 1000-peer policy is not rebuilt into objects) and after (the compiled object when
the change has it, else its text). Both the preview and the tests that check it
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
    old_sets, old_rules = _facts_of_text(change.before)
    new_sets, new_rules = (_facts_of_policy(change.compiled) if change.compiled is not None
                           else _facts_of_text(change.after))
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
