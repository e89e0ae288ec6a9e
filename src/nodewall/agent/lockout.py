"""The agent's lock-out guard: a received policy that would shut every management network out
of this node is not applied, as `nodewall apply` refuses one without `--force`.

A control-plane bug, a bad edit of the platform's management networks or a tampered answer
would otherwise cut the platform off the whole fleet at once, and no later policy could then
be pushed. The networks judged are the agent's own `--management-network` list when it was
given (the operator's word, independent of what the server sends), else the networks of the
policy's own management sets, else (a policy with none) every address: such a policy passes
only when it admits the management ports from anywhere. The judgement is
`nodewall.policy.lockout`'s (the reference evaluator: what the policy does, not how it was
made). A refused policy is never applied: the kernel keeps its rules, the refusal is logged
and reported. A policy the evaluator cannot read (an element no kernel takes) is left to the
backend, which refuses it. `--allow-lockout` turns the guard off. It must never import the
spec model or the compiler.
"""

from __future__ import annotations

from collections.abc import Sequence

from nodewall.agent.failsafe import MANAGEMENT_PURPOSE
from nodewall.policy.lockout import lockout_reason
from nodewall.policy.model import NodePolicy
from nodewall.policy.reasons import MANAGEMENT_SET

_PURPOSES = (MANAGEMENT_SET, MANAGEMENT_PURPOSE)
#: The networks judged when neither the agent nor the policy names any.
EVERY_ADDRESS = ("0.0.0.0/0", "::/0")


def own_management_networks(policy: NodePolicy) -> list[str]:
    """The networks of the policy's management sets (compiled or fail-safe), both families."""
    return [n for s in policy.sets if s.purpose in _PURPOSES for n in s.networks]


def refusal(policy: NodePolicy, networks: Sequence[str]) -> str | None:
    """Why `policy` must not be applied (it shuts every management network out), or None.
    `networks`: the agent's `--management-network` list; empty means the policy's own."""
    judged = list(networks) or own_management_networks(policy) or list(EVERY_ADDRESS)
    try:
        return lockout_reason(policy, judged)
    except ValueError:  # an element no kernel takes: the backend refuses the policy itself
        return None
