"""The iptables backend's pure parts: rule rendering, comments, restore texts, set texts,
variant choice. No kernel here (tests/kernel/test_iptables_*.py has that)."""

from __future__ import annotations

import dataclasses

import pytest

from nodewall.backends.base import BackendError
from nodewall.backends.iptables import ipset, xtables
from nodewall.backends.iptables.render import (
    FIRST,
    comment,
    family_chains,
    render,
    restore_text,
    rule_lines,
)
from nodewall.policy.model import AddressSet, NodePolicy, Rule, SetElement

NAMES = {"clients_v4": "nodewall-clients_v4", "peers_v6": "nodewall-peers_v6-b"}


def small_policy() -> NodePolicy:
    return NodePolicy(
        node="n1", service="svc", service_type="pg", environment="standard",
        sets=(
            AddressSet("clients_v4", 4, False, "clients",
                       (SetElement("0.0.0.0/0"), SetElement("10.0.0.0/8"))),
            AddressSet("peers_v6", 6, True, "peers", (SetElement("2001:db8::12/128"),)),
        ),
        rules=(
            Rule("in", "accept", "loopback", interface="loopback"),
            Rule("in", "accept", "clients", family=4, protocol="tcp", dports=(5432,),
                 src_set="clients_v4"),
            Rule("in", "accept", "peers", family=6, protocol="udp", dports=(500, 4500),
                 src_set="peers_v6"),
            Rule("in", "reject", "rest"),
            Rule("out", "accept", "all"),
        ),
    )


def test_comment_is_sanitised_and_quoted_like_iptables_save() -> None:
    assert comment("management") == "management"
    assert comment("cluster peer pg-2") == '"cluster peer pg-2"'
    hostile = 'x" -j ACCEPT\n\\ $(rm) `id`'
    out = comment(hostile)
    assert out.startswith('"') and out.endswith('"')
    assert not any(c in out[1:-1] for c in '"\\\n$`')
    assert len(comment("a" * 1000)) <= 202


def test_reject_targets_per_protocol_and_family() -> None:
    tcp = Rule("in", "reject", "r", protocol="tcp")
    udp = Rule("in", "reject", "r", protocol="udp")
    esp = Rule("in", "reject", "r", protocol="esp")
    anything = Rule("in", "reject", "r")
    assert rule_lines(tcp, 4, {})[0].endswith("-j REJECT --reject-with tcp-reset")
    assert rule_lines(udp, 4, {})[0].endswith("--reject-with icmp-port-unreachable")
    assert rule_lines(udp, 6, {})[0].endswith("--reject-with icmp6-port-unreachable")
    assert rule_lines(esp, 4, {})[0].endswith("--reject-with icmp-admin-prohibited")
    assert rule_lines(esp, 6, {})[0].endswith("--reject-with icmp6-adm-prohibited")
    assert rule_lines(anything, 6, {})[0].endswith("-j NODEWALL-REJECT")
    chains = family_chains(small_policy(), 6, NAMES)
    assert chains["NODEWALL-REJECT"] == [
        "-A NODEWALL-REJECT -p tcp -j REJECT --reject-with tcp-reset",
        "-A NODEWALL-REJECT -p udp -j REJECT --reject-with icmp6-port-unreachable",
        "-A NODEWALL-REJECT -j REJECT --reject-with icmp6-adm-prohibited",
    ]


def test_rule_lines_canonical_form() -> None:
    rule = Rule("out", "accept", "metadata for root", family=4, interface="not-loopback",
                ct_states=("established", "new"), protocol="tcp", dports=(80,),
                dst_set="clients_v4", uid=0, limit_per_second=5)
    assert rule_lines(rule, 4, NAMES) == [
        "-A NODEWALL-OUTPUT ! -o lo -p tcp -m conntrack --ctstate NEW,ESTABLISHED -m tcp "
        "--dport 80 -m set --match-set nodewall-clients_v4 dst -m owner --uid-owner 0 "
        '-m limit --limit 5/sec -m comment --comment "metadata for root" -j RETURN']
    assert rule_lines(rule, 6, NAMES) == []  # an IPv4 rule has no IPv6 line


def test_many_ports_and_icmp_types_split_into_rules() -> None:
    ports = tuple(range(20000, 20020))
    lines = rule_lines(Rule("in", "accept", "p", protocol="tcp", dports=ports), 4, {})
    assert len(lines) == 2 and "--dports 20000,20001," in lines[0] and "20019" in lines[1]
    icmp = Rule("in", "accept", "icmp", family=6, protocol="icmp",
                icmp_types=("packet-too-big", "nd-neighbor-solicit"))
    assert [x.split("--icmpv6-type ")[1].split()[0] for x in rule_lines(icmp, 6, {})] == [
        "2", "135"]


def test_restore_text_places_one_jump_first_and_never_declares_builtin_chains() -> None:
    want = family_chains(small_policy(), 4, NAMES)
    fresh = restore_text(want, xtables.FilterTable(), FIRST)
    assert fresh is not None
    assert "-I INPUT 1 -j NODEWALL-INPUT" in fresh and "-I OUTPUT 1 -j NODEWALL-OUTPUT" in fresh
    assert not any(line.startswith((":INPUT", ":OUTPUT", ":FORWARD", "-F", "-P"))
                   for line in fresh.splitlines())
    held = xtables.parse_save("*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                              + "".join(f":{c} - [0:0]\n" for c in want)
                              + "-A INPUT -j DOCKER\n-A INPUT -j NODEWALL-INPUT\n"
                              "-A OUTPUT -j NODEWALL-OUTPUT\n"
                              + "".join(f"{x}\n" for lines in want.values() for x in lines))
    moved = restore_text(want, held, FIRST)
    assert moved is not None
    assert "-D INPUT -j NODEWALL-INPUT\n-I INPUT 1 -j NODEWALL-INPUT" in moved
    assert "OUTPUT -j NODEWALL-OUTPUT" not in moved  # already first: untouched
    gone = restore_text({}, held, {})
    assert gone is not None
    assert "-D INPUT -j NODEWALL-INPUT" in gone and "-X NODEWALL-META" in gone
    assert "DOCKER" not in gone


def test_render_is_deterministic_and_sets_hold_what_ipset_can() -> None:
    policy = small_policy()
    text = render(policy)
    assert text == render(policy)
    assert policy.version in text
    assert "add nodewall-clients_v4 0.0.0.0/1\nadd nodewall-clients_v4 10.0.0.0/8\n" \
           "add nodewall-clients_v4 128.0.0.0/1" in text
    assert "create nodewall-peers_v6 hash:ip family inet6" in text
    assert "add nodewall-peers_v6 2001:db8::12\n" in text
    with pytest.raises(ValueError, match="hosts-only"):
        ipset.members(AddressSet("p", 4, True, "p", (SetElement("10.0.0.0/24"),)))


def test_offending_line_is_quoted_in_errors() -> None:
    text = "*filter\n:A - [0:0]\n-A A -j NOPE\nCOMMIT\n"
    message = xtables.with_offending_line("failed\nError occurred at line: 3", text)
    assert message.endswith("offending line 3: -A A -j NOPE")


def test_mixed_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xtables, "variant_usage", lambda: {"legacy": True, "nft": True})
    with pytest.raises(BackendError, match="both iptables-legacy and iptables-nft"):
        xtables.detect_variant()
    monkeypatch.setattr(xtables, "variant_usage", lambda: {"legacy": True, "nft": False})
    assert xtables.detect_variant() == "legacy"


def test_has_rules() -> None:
    assert not xtables._has_rules("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    assert xtables._has_rules("*filter\n:INPUT DROP [0:0]\nCOMMIT\n")
    assert xtables._has_rules("*filter\n:X - [0:0]\nCOMMIT\n")
    assert xtables._has_rules("*nat\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n")


@pytest.mark.parametrize("bad", ["10.0.0.0/8\ndestroy foo", "10.0.0.0/8\n", "10.0.0.0/8 x",
                                 "999.1.1.1/8", "10.0.0.0/33", "2001:db8::/48\nflush"])
def test_set_members_never_carry_more_than_an_address(bad: str) -> None:
    with pytest.raises(ValueError):
        ipset.members(AddressSet("x", 4, False, "x", (SetElement(bad),)))


def test_cut_is_skipped_only_when_sets_grow_under_accept_rules() -> None:
    from nodewall.backends.iptables.backend import KernelState, _only_widens

    policy = small_policy()
    names = {"clients_v4": "nodewall-clients_v4", "peers_v6": "nodewall-peers_v6"}

    def state(clients: set[str]) -> KernelState:
        sets = {
            "nodewall-clients_v4": ipset.KernelSet("nodewall-clients_v4", "hash:net", "inet",
                                                   frozenset(clients)),
            "nodewall-peers_v6": ipset.KernelSet("nodewall-peers_v6", "hash:ip", "inet6",
                                                 frozenset({"2001:db8::12/128"})),
        }
        return KernelState({4: xtables.FilterTable(), 6: xtables.FilterTable()}, sets)

    assert _only_widens(policy, state({"10.0.0.0/8"}), names)  # gains 0.0.0.0/1, 128.0.0.0/1
    assert not _only_widens(policy, state({"10.0.0.0/8", "192.0.2.0/24"}), names)  # loses one
    rejecting = dataclasses.replace(policy, rules=(
        Rule("in", "reject", "no", family=4, src_set="clients_v4"), *policy.rules))
    assert not _only_widens(rejecting, state({"10.0.0.0/8"}), names)
