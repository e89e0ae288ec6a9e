"""The nftables bytecode, checked without a kernel: packets traced over the batch nodewall
sends (tests/nfttrace.py) must meet the verdict the reference evaluator gives, with the answer
the policy promises for a reject (TCP reset, UDP port-unreachable, admin-prohibited for the
rest) and from the rule the evaluator names (by its comment; the per-port counted rejects
stand in for the catch-all). Over every example node, generated specs, an in-place update
after a full batch, and with one expression broken on purpose, which must be found."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import strategies
from nfttrace import Ruleset
from nodewall.backends.netlink import attr, string, u32
from nodewall.backends.nftables import expr as nftexpr
from nodewall.backends.nftables import wire
from nodewall.backends.nftables.steps import comment
from nodewall.compiler.node import compile_node
from nodewall.policy import reasons
from nodewall.policy.evaluator import Packet, evaluate
from nodewall.policy.model import ICMP_TYPES, CtState, NodePolicy, Protocol
from nodewall.spec.load import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_POLICIES = [compile_node(spec, node.name)
                    for spec in map(load_spec, sorted((ROOT / "examples").glob("*.yaml")))
                    for service in spec.services for node in service.nodes]
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REJECT_WITH = {"tcp": "tcp reset", "udp": "icmpx port-unreachable"}
_FIXED_PORTS = (1, 22, 53, 80, 443, 8080, 65535)


_PROBES: dict[tuple[int, int], tuple[NodePolicy, list[Any]]] = {}


def _once(policy: NodePolicy, key: int, make: Callable[[], list[Any]]) -> list[Any]:
    """`make()`, worked out once per policy object (a few policies are probed at a time)."""
    held = _PROBES.get((id(policy), key))
    if held is None or held[0] is not policy:
        if len(_PROBES) > 32:
            _PROBES.clear()
        held = _PROBES[(id(policy), key)] = (policy, make())
    return held[1]


def probe_addresses(policy: NodePolicy, family: int) -> list[str]:
    """The addresses worth a packet: each set network's first and last address and the
    neighbours just outside, and a few fixed ones."""
    return _once(policy, family, lambda: _probe_addresses(policy, family))


def _probe_addresses(policy: NodePolicy, family: int) -> list[str]:
    out = {"8.8.8.8", "127.0.0.1", "10.0.0.1"} if family == 4 else {"2001:4860::8888", "::1"}
    for s in policy.sets:
        if s.family != family:
            continue
        for text in s.networks:
            net = ipaddress.ip_network(text)
            first, last = int(net.network_address), int(net.broadcast_address)
            top = (1 << net.max_prefixlen) - 1
            for value in (first, last, max(first - 1, 0), min(last + 1, top)):
                out.add(str(ipaddress.ip_address(value) if family == 4
                            else ipaddress.IPv6Address(value)))
    return sorted(out)


def probe_ports(policy: NodePolicy) -> list[int]:
    return _once(policy, 0, lambda: _probe_ports(policy))


def _probe_ports(policy: NodePolicy) -> list[int]:
    ports = {p for r in policy.rules for p in r.dports} | {c.port for c in policy.components}
    return sorted(ports | {p + 1 for p in ports if p < 65535} | set(_FIXED_PORTS))


def _packet(rng: random.Random | None, draw: Any, policy: NodePolicy) -> Packet:
    """One packet: chosen by `rng`, or drawn by hypothesis (`draw`)."""
    def pick(items: Sequence[Any]) -> Any:
        if rng is not None:
            return rng.choice(items)
        return draw(st.sampled_from(items))

    direction = pick(("in", "out"))
    family = pick((4, 6))
    here, there = pick(probe_addresses(policy, family)), pick(probe_addresses(policy, family))
    protocol = pick(("tcp", "tcp", "udp", "icmp", "esp"))
    uids = sorted({r.uid for r in policy.rules if r.uid is not None} | {4242})
    return Packet(
        src=there if direction == "in" else here, dst=here if direction == "in" else there,
        protocol=protocol, direction=direction,
        dport=pick(probe_ports(policy)) if protocol in ("tcp", "udp") else None,
        icmp_type=pick(sorted(ICMP_TYPES[family])) if protocol == "icmp" else None,
        uid=pick([None, *uids]) if direction == "out" else None,
        interface=pick(("loopback", "not-loopback")),
        ct_state=pick(("new", "new", "established", "related", "invalid")))


def aimed(policy: NodePolicy, rng: random.Random) -> list[Packet]:
    """Per rule a packet that meets all its conditions, and that packet with one field
    changed at a time (each other ct state, interface, protocol, family; a port and an
    address beside the rule's, another uid): every rule is met, and missed narrowly."""
    out = []
    states: tuple[CtState, ...] = ("new", "established", "related", "invalid")
    protocols: tuple[Protocol, ...] = ("tcp", "udp", "icmp", "esp")
    for rule in policy.rules:
        family: int = rule.family if rule.family is not None else rng.choice((4, 6))
        inside = probe_addresses(policy, family)
        if rule.src_set or rule.dst_set:
            held = policy.set(rule.src_set or rule.dst_set or "")
            inside = sorted({str(ipaddress.ip_network(n)[0]) for n in held.networks}
                            | {str(ipaddress.ip_network(n)[-1]) for n in held.networks}
                            ) or inside
        protocol = rule.protocol if rule.protocol is not None else rng.choice(protocols)
        here, there = rng.choice(inside), rng.choice(probe_addresses(policy, family))
        if rule.direction == "out" and rule.dst_set:
            here, there = there, here
        base = Packet(
            src=here, dst=there, protocol=protocol, direction=rule.direction,
            dport=rng.choice(rule.dports or probe_ports(policy))
            if protocol in ("tcp", "udp") else None,
            icmp_type=rng.choice(rule.icmp_types or sorted(ICMP_TYPES[family]))
            if protocol == "icmp" else None,
            uid=rule.uid, interface=rule.interface or "not-loopback",
            ct_state=rng.choice(rule.ct_states or states))
        out.append(base)
        out += [replace(base, ct_state=s) for s in states if s != base.ct_state]
        out.append(replace(base, interface="loopback" if base.interface == "not-loopback"
                           else "not-loopback"))
        if base.dport is not None:
            out += [replace(base, dport=base.dport % 65535 + 1),
                    replace(base, protocol="udp" if protocol == "tcp" else "tcp")]
        if rule.direction == "out":
            out.append(replace(base, uid=None if base.uid is not None else 4242))
        for address in rng.sample(probe_addresses(policy, family), 4):
            out.append(replace(base, src=address) if base.src == here
                       else replace(base, dst=address))
        other = 6 if family == 4 else 4
        out.append(replace(base, src=rng.choice(probe_addresses(policy, other)),
                           dst=rng.choice(probe_addresses(policy, other)),
                           icmp_type="echo-request" if protocol == "icmp" else None))
    return out


def disagreements(policy: NodePolicy, ruleset: Ruleset, packets: Iterable[Packet]) -> list[str]:
    """Each packet on which the traced bytecode and the evaluator differ, in words."""
    found = []
    for packet in packets:
        want = evaluate(policy, packet)
        got = ruleset.trace(packet)
        reject_with = (REJECT_WITH.get(packet.protocol, "icmpx admin-prohibited")
                       if want.action == "reject" else None)
        rule_comments = {comment(want.rule.reason)}
        if want.rule.reason == reasons.REJECTED and packet.dport is not None:
            rule_comments.add(comment(reasons.rejected_at(packet.protocol, packet.dport)))
        if (got.verdict, got.reject_with) != (want.action, reject_with) or (
                got.comment not in rule_comments):
            found.append(f"{packet}: traced {got}, evaluator {want.action} "
                         f"({reject_with}) by rule {want.rule_index} {want.rule.reason!r}")
    return found


def _sample(policy: NodePolicy, count: int, seed: int) -> list[Packet]:
    rng = random.Random(seed)
    return [_packet(rng, None, policy) for _ in range(count)]


@pytest.mark.parametrize("policy", EXAMPLE_POLICIES, ids=lambda p: p.node)
def test_traced_bytecode_of_every_example_node_meets_the_evaluator(policy: NodePolicy) -> None:
    ruleset = Ruleset.of(wire.full_batch(wire.build(policy)))
    rng = random.Random(policy.node)
    wrong = disagreements(policy, ruleset, aimed(policy, rng) + _sample(policy, 300, seed=1))
    assert not wrong, "\n".join(wrong[:10])


def _drawn_packets(draw: st.DrawFn, policy: NodePolicy) -> list[Packet]:
    """Packets drawn field by field, and a drawn sample of the packets aimed at its rules."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    targeted = aimed(policy, rng)
    return ([_packet(None, draw, policy) for _ in range(draw(st.integers(1, 20)))]
            + rng.sample(targeted, min(len(targeted), 60)))


@st.composite
def generated(draw: st.DrawFn) -> tuple[NodePolicy, list[Packet]]:
    doc = draw(strategies.deployment_specs())
    node = draw(strategies.node_names(doc))
    policy = compile_node(parse_spec(doc), node)
    return policy, _drawn_packets(draw, policy)


@PROPERTY
@given(case=generated())
def test_traced_bytecode_of_generated_specs_meets_the_evaluator(
        case: tuple[NodePolicy, list[Packet]]) -> None:
    policy, packets = case
    ruleset = Ruleset.of(wire.full_batch(wire.build(policy)))
    wrong = disagreements(policy, ruleset, packets)
    assert not wrong, "\n".join(wrong[:10])


@st.composite
def updates(draw: st.DrawFn) -> tuple[NodePolicy, NodePolicy, list[Packet]]:
    """A policy, the same node's policy after its ip_filter changed, packets for the second."""
    doc = draw(strategies.deployment_specs())
    node = draw(strategies.node_names(doc))
    first = compile_node(parse_spec(doc), node)
    service = next(s for s in doc["services"] if any(n["name"] == node for n in s["nodes"]))
    config = service.setdefault("user_config", {})
    kept = [e for e in config.get("ip_filter", []) if draw(st.booleans())]
    config["ip_filter"] = kept + draw(st.lists(strategies.networks(), max_size=4))
    try:
        second = compile_node(parse_spec(doc), node)
    except ValueError:
        assume(False)
        raise
    return first, second, _drawn_packets(draw, second)


@PROPERTY
@given(case=updates())
def test_traced_in_place_update_meets_the_evaluator(
        case: tuple[NodePolicy, NodePolicy, list[Packet]]) -> None:
    """A full batch of one policy, then the update batch the backend sends for the next (set
    element deltas, chains refilled): traced, the result is the second policy."""
    first, second, packets = case
    plan = wire.build(first)
    ruleset = Ruleset.of(wire.full_batch(plan))
    have = plan.image  # as the backend does: the last image, taken over by the next build
    ruleset.apply(wire.update_batch(have, wire.build(second, have)))
    wrong = disagreements(second, ruleset, packets)
    assert not wrong, "\n".join(wrong[:10])


# One expression broken each: the source address read where the destination is, `new` taken
# for `established`, UDP's protocol number for TCP's, the port-unreachable code for
# admin-prohibited. Each must make some traced packet disagree with the evaluator.
BREAKAGES = {
    "saddr offset": ("_ADDR_OFFSET", (4, True), 16),
    "ct state bit": ("_CT_BITS", "established", 8),
    "l4proto number": ("_L4", "tcp", 17),
    "icmpx code": ("_REJECT", "icmpx admin-prohibited", (2, 1)),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_expression_is_found(breakage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table, key, value = BREAKAGES[breakage]
    monkeypatch.setitem(getattr(nftexpr, table), key, value)
    for policy in EXAMPLE_POLICIES:
        ruleset = Ruleset.of(wire.full_batch(wire.build(policy)))
        if disagreements(policy, ruleset, aimed(policy, random.Random(policy.node))):
            return
    pytest.fail(f"breaking the {breakage} went unnoticed")


def _jump(code: int, chain: str) -> tuple[str, bytes]:
    return nftexpr.expr("immediate", u32(1, 0), attr(2, attr(2, attr(
        1, (code & 0xFFFFFFFF).to_bytes(4, "big")) + string(2, chain))))


def test_tracer_follows_jumps_gotos_and_returns() -> None:
    """input: tcp -> jump sub, esp -> goto empty, then accept "after"; sub: dport 22 drop,
    then return."""
    tcp = [nftexpr._meta(16), nftexpr._cmp(bytes([6]))]
    esp = [nftexpr._meta(16), nftexpr._cmp(bytes([50]))]
    dport22 = [*tcp, nftexpr._payload(2, 2, 2), nftexpr._cmp((22).to_bytes(2, "big"))]
    accept, drop, ret = (nftexpr.verdict(c) for c in (1, 0, -5))

    def line(parts: list[Any], text: str) -> wire.RuleLine:
        raw = text.encode() + b"\0"
        return wire.RuleLine(parts, bytes([0, len(raw)]) + raw, text)

    batch = [*wire.table_messages(replace=True),
             wire.chain_message("input", (1, 0, 0)),  # policy drop
             wire.chain_message("sub", ()), wire.chain_message("empty", ())]
    ids = wire._Ids()
    batch += wire.rule_messages("input", [line([*tcp, _jump(-3, "sub")], "to sub"),
                                          line([*esp, _jump(-4, "empty")], "to empty"),
                                          line([accept], "after")], ids)
    batch += wire.rule_messages("sub", [line([*dport22, drop], "ssh"),
                                        line([ret], "back")], ids)
    ruleset = Ruleset.of(batch)

    def traced(protocol: str, dport: int | None = None) -> tuple[str, str]:
        out = ruleset.trace(Packet("192.0.2.1", "192.0.2.2", protocol, dport))  # type: ignore[arg-type]
        return out.verdict, out.comment

    assert traced("tcp", 22) == ("drop", "ssh")
    assert traced("tcp", 80) == ("accept", "after")
    assert traced("udp", 80) == ("accept", "after")
    assert traced("esp") == ("drop", "chain policy")  # goto: no way back, the base policy
