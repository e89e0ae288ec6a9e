"""How `plan` and `explain` show a policy to people (rich text) and scripts (JSON).

Only presentation: it reads a `NodePolicy` (and, for descriptions, the spec it came from) and
never changes either. Customer descriptions appear here, escaped for the terminal; they never go
back into a policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich only for the text of `plan` (imported in its functions)
    from rich.console import Console

    from nodewall.policy.evaluator import Verdict
    from nodewall.policy.model import NodePolicy, Rule
    from nodewall.spec.model import DeploymentSpec

SHOWN_SOURCES = 6


def safe_text(text: str) -> str:
    """Customer text made harmless for a terminal: control characters escaped, markup off."""
    from rich.markup import escape

    cleaned = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return escape(cleaned)


def describe_match(rule: Rule) -> str:
    parts = []
    if rule.family:
        parts.append(f"ipv{rule.family}")
    if rule.interface:
        parts.append(rule.interface)
    if rule.ct_states:
        parts.append("ct " + ",".join(rule.ct_states))
    if rule.protocol:
        parts.append(rule.protocol)
    if rule.src_set:
        parts.append(f"from @{rule.src_set}")
    if rule.dst_set:
        parts.append(f"to @{rule.dst_set}")
    if rule.dports:
        parts.append("port " + ",".join(map(str, rule.dports)))
    if rule.icmp_types:
        parts.append(",".join(rule.icmp_types))
    if rule.uid is not None:
        parts.append(f"uid {rule.uid}")
    if rule.limit_per_second:
        parts.append(f"limit {rule.limit_per_second}/s")
    return " ".join(parts) or "any"


def sources(policy: NodePolicy, set_names: tuple[str, ...]) -> list[str]:
    return [net for name in set_names for net in policy.set(name).networks]


def plan_json(policy: NodePolicy) -> dict[str, Any]:
    return {
        "node": policy.node,
        "service": policy.service,
        "service_type": policy.service_type,
        "environment": policy.environment,
        "version": policy.version,
        "components": [
            {"name": c.name, "port": c.port, "protocol": c.protocol, "route": c.route,
             "sources": sources(policy, c.source_sets)}
            for c in policy.components
        ],
        "rules": [
            {"index": i, "direction": r.direction, "action": r.action, "match": describe_match(r),
             "reason": r.reason}
            for i, r in enumerate(policy.rules)
        ],
        "sets": [
            {"name": s.name, "family": s.family, "purpose": s.purpose,
             "elements": [{"network": e.network, "reasons": list(e.reasons)} for e in s.elements]}
            for s in policy.sets
        ],
        "warnings": list(policy.warnings),
    }


def print_plan(console: Console, policy: NodePolicy, spec: DeploymentSpec) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]node {policy.node}[/] of {policy.service} ({policy.service_type}, "
                  f"{policy.environment}), policy version {policy.version}")
    table = Table("component", "port", "proto", "route", "sources", title="Open ports")
    for c in policy.components:
        nets = sources(policy, c.source_sets)
        shown = ", ".join(nets[:SHOWN_SOURCES]) or "(none)"
        if len(nets) > SHOWN_SOURCES:
            shown += f" and {len(nets) - SHOWN_SOURCES} more"
        table.add_row(c.name, str(c.port), c.protocol, c.route, shown)
    console.print(table)
    rules = Table("#", "dir", "action", "match", "reason", title="Rules, in order")
    for i, r in enumerate(policy.rules):
        rules.add_row(str(i), r.direction, r.action, escape(describe_match(r)), escape(r.reason))
    console.print(rules)
    service = spec.service(policy.service)
    described = [(i, e) for i, e in enumerate(service.user_config.ip_filter) if e.description]
    if described:
        notes = Table("entry", "network", "description", title="ip_filter descriptions")
        for i, e in described:
            notes.add_row(f"ip_filter[{i}]", e.network, safe_text(e.description or ""))
        console.print(notes)
    for w in policy.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")


def explain_json(verdict: Verdict) -> dict[str, Any]:
    return {"verdict": verdict.action, "rule": verdict.rule_index,
            "match": describe_match(verdict.rule), "reason": verdict.reason}
