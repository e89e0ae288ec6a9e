"""A policy answer of the control plane (`{"version", "policy", "changed_at"}`), decoded and
checked: the one gate every policy passes before the agent hands it to a backend.

Checks: JSON of the right shape, a `NodePolicy` that `NodePolicy.from_dict` accepts and
`check_policy` passes, made for this node, whose own version (the digest of what the kernel
must hold) equals the version the answer states. Anything else is a `BadAnswer`: garbage from a
broken proxy or a torn cache file is never applied. It must never import the spec model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nodewall.gcpause import collector_paused
from nodewall.policy.model import NodePolicy, check_policy

#: A policy answer larger than this is refused unread (8000 entries and 1000 peers is ~2 MB).
MAX_BYTES = 64 << 20


class BadAnswer(ValueError):
    """The answer is not a usable policy for this node; the message says what is wrong."""


@dataclass(frozen=True)
class PolicyAnswer:
    version: str
    policy: NodePolicy
    changed_at: float | None  # unix time of the change that produced it (server's clock)
    body: bytes  # as received: what the cache stores


def decode_answer(body: bytes, node: str) -> PolicyAnswer:
    """The checked answer; BadAnswer when it is not a usable policy for `node`. The cyclic
    collector is held off meanwhile: tens of thousands of acyclic objects are made."""
    with collector_paused():
        return _decode(body, node)


def _decode(body: bytes, node: str) -> PolicyAnswer:
    if len(body) > MAX_BYTES:
        raise BadAnswer(f"{len(body)} bytes, more than {MAX_BYTES}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadAnswer(f"not JSON ({type(exc).__name__} at {getattr(exc, 'pos', '?')})") \
            from None
    if not isinstance(data, dict):
        raise BadAnswer("not a JSON object")
    version, raw, changed_at = data.get("version"), data.get("policy"), data.get("changed_at")
    if not isinstance(version, str) or not isinstance(raw, dict):
        raise BadAnswer("'version' (a string) or 'policy' (an object) missing")
    if changed_at is not None and (not isinstance(changed_at, int | float)
                                   or isinstance(changed_at, bool)):
        raise BadAnswer("'changed_at' is not a number")
    try:
        policy = NodePolicy.from_dict(raw)
        _check_fields(policy)
        check_policy(policy)
        actual = policy.version
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadAnswer(f"policy unusable: {type(exc).__name__}: {str(exc)[:200]}") from None
    if policy.node != node:
        raise BadAnswer(f"policy is for node {str(policy.node)[:64]!r}, not {node!r}")
    if actual != version:
        raise BadAnswer(f"policy content has version {actual}, the answer says "
                        f"{version[:64]!r}")
    return PolicyAnswer(version, policy, None if changed_at is None else float(changed_at), body)


_RULE_VALUES: dict[str, tuple[object, ...]] = {
    "direction": ("in", "out"),
    "action": ("accept", "reject", "drop"),
    "family": (None, 4, 6),
    "interface": (None, "loopback", "not-loopback"),
    "protocol": (None, "tcp", "udp", "icmp", "esp"),
}
_CT_STATES = frozenset(("new", "established", "related", "invalid"))


def _check_fields(policy: NodePolicy) -> None:
    """The value types `from_dict` does not check, so a backend never meets a stray one."""
    for s in policy.sets:
        if s.family not in (4, 6) or not isinstance(s.hosts_only, bool) or not all(
                isinstance(n, str) for n in s.networks):
            raise ValueError(f"set {str(s.name)[:32]!r}: bad family, hosts_only or networks")
    for i, r in enumerate(policy.rules):
        for name, allowed in _RULE_VALUES.items():
            value = getattr(r, name)
            if value not in allowed or isinstance(value, bool):
                raise ValueError(f"rule {i}: {name} {str(value)[:20]!r} is not one of {allowed}")
        if not isinstance(r.reason, str) or not _CT_STATES.issuperset(r.ct_states):
            raise ValueError(f"rule {i}: bad reason or ct_states")
        for number, low, high in ([(p, 1, 65535) for p in r.dports]
                                  + [(r.uid, 0, 2**32 - 1), (r.limit_per_second, 1, 2**31)]):
            if number is not None and (type(number) is not int or not low <= number <= high):
                raise ValueError(f"rule {i}: {str(number)[:20]!r} is out of range")


def encode_answer(policy: NodePolicy, changed_at: float | None) -> bytes:
    """An answer for a policy made on this node (the serverless mode), in the server's shape."""
    return json.dumps({"version": policy.version, "policy": policy.to_dict(),
                       "changed_at": changed_at}, sort_keys=True).encode()
