"""The agent's lock-out guard (`nodewall.agent.lockout`) over real compiled and fail-safe
policies: which networks it judges, and what it refuses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nodewall.agent.failsafe import failsafe_policy
from nodewall.agent.lockout import own_management_networks, refusal
from nodewall.agent.options import parse
from nodewall.compiler.node import compile_node
from nodewall.policy.model import AddressSet, NodePolicy
from nodewall.policy.reasons import MANAGEMENT_SET
from nodewall.spec.load import load_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pg-public.yaml"


def _compiled() -> NodePolicy:
    spec = load_spec(EXAMPLE)
    return compile_node(spec, spec.services[0].nodes[0].name)


def _without_management(policy: NodePolicy) -> NodePolicy:
    sets = tuple(AddressSet.of(s.name, s.family, s.hosts_only, s.purpose, [], [])
                 if s.purpose == MANAGEMENT_SET else s for s in policy.sets)
    return dataclasses.replace(policy, sets=sets)


def test_a_compiled_policy_passes_on_its_own_networks_and_on_the_agents() -> None:
    policy = _compiled()
    own = own_management_networks(policy)
    assert own, "the compiled policy has management sets"
    assert refusal(policy, []) is None
    assert refusal(policy, own[:1]) is None


def test_a_policy_whose_management_sets_are_emptied_is_refused() -> None:
    emptied = _without_management(_compiled())
    assert not own_management_networks(emptied)
    why = refusal(emptied, [])
    assert why is not None and "shuts every management network out" in why
    assert "0.0.0.0/0: SSH 22/tcp from 0.0.0.0 rejected" in why


def test_the_agents_own_networks_win_over_the_policys() -> None:
    moved = failsafe_policy("n1", ["203.0.113.0/28"])
    assert refusal(moved, []) is None  # judged by its own set: admitted
    why = refusal(moved, ["198.51.100.0/28"])
    assert why is not None and "198.51.100.0/28: SSH 22/tcp from 198.51.100.0 rejected" in why


def test_management_open_to_all_passes_and_an_unreadable_policy_is_left_to_the_backend() -> None:
    assert refusal(failsafe_policy("n1", []), []) is None
    policy = failsafe_policy("n1", ["198.51.100.0/28"])
    first = policy.sets[0]
    broken = AddressSet.of(first.name, first.family, False, first.purpose, ["10.0.0.0/33"],
                           [("x",)])
    assert refusal(dataclasses.replace(policy, sets=(broken, *policy.sets[1:])), []) is None


def test_allow_lockout_is_an_option(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("{}")
    assert parse(["--spec", str(spec), "--node", "n1"]).allow_lockout is False
    assert parse(["--spec", str(spec), "--node", "n1", "--allow-lockout"]).allow_lockout
