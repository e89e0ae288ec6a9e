"""The change preview's diff (`nodewall.server.preview.node_diff`) reads only the part of two
policy texts that differs; it must say exactly what reading both texts whole says, for any pair
of policies of one node (generated specs, their ip_filter replaced, nodes added or removed)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
from nodewall.compiler.node import compile_node
from nodewall.server import preview
from nodewall.server.policies import Tracked
from nodewall.spec.load import parse_spec


def _whole_diff(node: str, change: Tracked) -> dict[str, Any] | None:
    """The reference: both texts read whole (the diff before it learnt to skip)."""
    saved = preview._changed_facts
    try:
        preview._changed_facts = lambda b, a, c: (  # type: ignore[assignment]
            preview._facts_of_text(b), preview._facts_of_text(a))
        return preview.node_diff(node, change)
    finally:
        preview._changed_facts = saved


@st.composite
def policy_pairs(draw: st.DrawFn) -> tuple[str, str, str]:
    doc = draw(strategies.deployment_specs(max_services=2, max_nodes=4))
    spec = parse_spec(doc)
    node = draw(st.sampled_from(spec.node_names))
    service = next(s for s in doc["services"] if any(n["name"] == node for n in s["nodes"]))
    changed = copy.deepcopy(doc)
    target = next(s for s in changed["services"] if s["name"] == service["name"])
    action = draw(st.sampled_from(["ip_filter", "add_node", "remove_peer", "ipv6"]))
    if action == "ip_filter":
        target.setdefault("user_config", {})["ip_filter"] = draw(strategies.ip_filters())
    elif action == "add_node":
        target["nodes"].append({"name": "extra-node", "addresses": ["10.0.255.250"]})
    elif action == "remove_peer" and len(target["nodes"]) > 1:
        target["nodes"] = [n for n in target["nodes"] if n["name"] != node][:1] + [
            n for n in target["nodes"] if n["name"] == node]
    else:
        config = target.setdefault("user_config", {})
        config["enable_ipv6"] = not config.get("enable_ipv6", False)
    try:
        after = compile_node(parse_spec(changed), node)
    except Exception:  # a change the spec rules refuse: keep the pair trivial
        after = compile_node(spec, node)
    return node, compile_node(spec, node).to_json(), after.to_json()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(policy_pairs())
def test_the_partial_diff_equals_the_whole_diff(pair: tuple[str, str, str]) -> None:
    from nodewall.policy.model import NodePolicy

    node, before, after = pair
    old, new = NodePolicy.from_json(before), NodePolicy.from_json(after)
    change = Tracked(before, old.version, after, new.version, new)
    assert preview.node_diff(node, change) == _whole_diff(node, change)
    backwards = Tracked(after, new.version, before, old.version, old)
    assert preview.node_diff(node, backwards) == _whole_diff(node, backwards)
