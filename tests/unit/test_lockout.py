"""Lock-out safety without a kernel: what `nodewall.policy.lockout` calls shutting every
management network out, on compiled policies and on policies edited the way a bug or a hand
could edit them, and the refusal of `nodewall apply` (exit 2, before any kernel is touched)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tests.unit.helpers import MGMT_V4, MGMT_V6, compiled, run_nodewall, service_doc, spec_doc

from nodewall.policy.lockout import check_management, lockout_reason
from nodewall.policy.model import NodePolicy, Rule

NODE_ADDRESSES = ["10.0.0.1", "2001:db8:10::1"]


def _doc(management: list[str] | None = None) -> dict[str, object]:
    return spec_doc([service_doc("pg-prod", "pg", [NODE_ADDRESSES, ["10.0.0.2"]])],
                    management=management)


def _policy(management: list[str] | None = None) -> NodePolicy:
    return compiled(_doc(management), "pg-prod-1")


def test_a_compiled_policy_admits_its_management_networks() -> None:
    policy = _policy()
    assert lockout_reason(policy, [MGMT_V4, MGMT_V6], NODE_ADDRESSES) is None
    assert all(c.admitted for c in check_management(policy, [MGMT_V4, MGMT_V6],
                                                     NODE_ADDRESSES))


def test_loopback_management_networks_are_shut_out_by_the_spoofing_rule() -> None:
    nets = ["127.0.0.0/8", "::1/128"]
    why = lockout_reason(_policy(nets), nets, NODE_ADDRESSES)
    assert why is not None and "shuts every management network out" in why
    assert "127.0.0.0/8: SSH 22/tcp from 127.0.0.0 dropped by rule 1" in why
    assert "loopback source on a non-loopback interface" in why


def test_one_admitted_network_is_enough() -> None:
    nets = ["127.0.0.0/8", MGMT_V4]
    policy = _policy(nets)
    assert lockout_reason(policy, nets, NODE_ADDRESSES) is None
    checks = {c.network: c.admitted for c in check_management(policy, nets, NODE_ADDRESSES)}
    assert checks == {"127.0.0.0/8": False, MGMT_V4: True}


def test_no_management_network_at_all() -> None:
    why = lockout_reason(_policy(), [], NODE_ADDRESSES)
    assert why is not None and "no management network" in why


def test_a_policy_without_its_management_rule_shuts_management_out() -> None:
    """The management networks are judged by what the policy does: drop rule 4 (as a compiler
    bug would) and the same networks are refused, with the rule that refuses them."""
    policy = _policy()
    kept = tuple(r for r in policy.rules if r.reason != "management")
    edited = dataclasses.replace(policy, rules=kept)
    why = lockout_reason(edited, [MGMT_V4, MGMT_V6], NODE_ADDRESSES)
    assert why is not None and "rejected by rule" in why and "22/tcp" in why


def test_a_network_admitted_only_in_part_does_not_count() -> None:
    """Only SSH admitted, 30287 refused: that network is not admitted."""
    policy = _policy([MGMT_V4])
    rules = tuple(dataclasses.replace(r, dports=(22,)) if r.reason == "management" else r
                  for r in policy.rules)
    why = lockout_reason(dataclasses.replace(policy, rules=rules), [MGMT_V4], NODE_ADDRESSES)
    assert why is not None and "management 30287/tcp" in why and "SSH 22/tcp" not in why


def test_replies_refused_on_egress_count_as_shut_out() -> None:
    policy = _policy([MGMT_V4])
    deny_out = Rule(direction="out", action="reject", reason="test: nothing goes out")
    rules = (*[r for r in policy.rules if r.direction == "in"], deny_out)
    why = lockout_reason(dataclasses.replace(policy, rules=rules), [MGMT_V4], NODE_ADDRESSES)
    assert why is not None and "replies to" in why


def test_apply_refuses_a_lockout_before_touching_the_kernel(tmp_path: Path) -> None:
    spec = tmp_path / "lockout.json"
    spec.write_text(json.dumps(_doc(["127.0.0.0/8"])))
    # No backend by that name: were the refusal to come after the backend is chosen, this
    # fails with the backend's error, and no kernel (here: the host's) is ever written.
    done = run_nodewall("apply", str(spec), "--node", "pg-prod-1", "--backend", "none-such")
    assert done.returncode == 2, done.stderr
    assert "refused: the policy of pg-prod-1 shuts every management network out" in done.stderr
    assert "--force" in done.stderr and "nothing applied" in done.stderr
