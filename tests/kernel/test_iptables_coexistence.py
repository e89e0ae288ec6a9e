"""The iptables backend shares the kernel: other tools' chains, rules and sets survive it.

The node namespace of the shared topology (`iptables_ns`: emptied of iptables and ipsets after
each test, even when it fails) is loaded with what Docker and a cloud agent leave in `filter`:
a DOCKER-USER chain with rules reached from FORWARD, an agent chain reached from INPUT and
OUTPUT, rules of their own in INPUT and OUTPUT, a foreign ipset the DOCKER-USER rules match.
apply, re-apply (unchanged, set-only, full) and remove must leave every foreign line and the
foreign set byte-identical, in the same order. Also here: variant detection (legacy or nft, and
the refusal of a host where both hold rules) and `--backend auto`.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess

import pytest
from conftest import XT_FAMILIES, saved
from netns import entered, sh
from test_iptables_backend import CLIENT, policy_for

from nodewall.backends.auto import AutoBackend, choose
from nodewall.backends.base import BackendError
from nodewall.backends.iptables import xtables
from nodewall.backends.iptables.backend import IptablesBackend
from nodewall.backends.registry import get_backend

FOREIGN = """*filter
:DOCKER-USER - [0:0]
:CLOUD-AGENT - [0:0]
-A INPUT -p tcp -m tcp --dport 2375 -j DROP
-A INPUT -j CLOUD-AGENT
-A FORWARD -j DOCKER-USER
-A OUTPUT -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j CLOUD-AGENT
-A CLOUD-AGENT -s 10.0.0.0/8 -m comment --comment "cloud agent" -j RETURN
-A DOCKER-USER -m set --match-set docker-allow src -j RETURN
-A DOCKER-USER -i eth0 -p tcp -m tcp --dport 8080 -j REJECT --reject-with icmp-port-unreachable
-A DOCKER-USER -j RETURN
COMMIT
"""
FOREIGN6 = """*filter
:CLOUD-AGENT - [0:0]
-A INPUT -j CLOUD-AGENT
-A CLOUD-AGENT -s fd00::/8 -j RETURN
COMMIT
"""


def load_foreign(ns: str, variant: xtables.Variant) -> None:
    sh("ipset", "create", "docker-allow", "hash:net", ns=ns)
    sh("ipset", "add", "docker-allow", "172.17.0.0/16", ns=ns)
    texts: tuple[tuple[xtables.FamilyNum, str], ...] = ((4, FOREIGN), (6, FOREIGN6))
    for family, text in texts:
        subprocess.run(["ip", "netns", "exec", ns, xtables.tool(variant, family, "restore"),
                        "--noflush"], input=text, text=True, check=True)


def foreign_view(ns: str, variant: xtables.Variant) -> str:
    """The kernel minus nodewall's objects (`saved`: comments and policy counters out)."""
    lines = [x for f in XT_FAMILIES for x in saved(ns, variant, f) if "NODEWALL-" not in x]
    return "\n".join(lines) + "\n" + sh("ipset", "save", "docker-allow", ns=ns)


def full_view(ns: str, variant: xtables.Variant) -> str:
    return "\n".join(x for f in XT_FAMILIES for x in saved(ns, variant, f)) + sh("ipset", "save",
                                                                                ns=ns)


def test_foreign_chains_rules_and_sets_survive(iptables_ns: str,
                                                variant: xtables.Variant) -> None:
    ns, policy = iptables_ns, policy_for()
    load_foreign(ns, variant)
    original, original_full = foreign_view(ns, variant), full_view(ns, variant)
    assert "DOCKER-USER" in original and "docker-allow" in original
    with entered(ns):
        backend = IptablesBackend()  # detects the variant the foreign rules use
        assert backend.variant() == variant
    steps = [
        ("apply", policy),
        ("re-apply", policy),
        ("set-only", policy_for((*CLIENT, "192.0.2.8/32"))),
        ("full", dataclasses.replace(policy, rules=policy.rules[1:])),
    ]
    for what, step in steps:
        with entered(ns):
            backend.apply(step)
        assert foreign_view(ns, variant) == original, f"foreign objects changed by {what}"
        for family in XT_FAMILIES:
            save = sh(xtables.tool(variant, family, "save"), ns=ns)
            assert "-A INPUT -j NODEWALL-INPUT\n-A INPUT" in save  # ours first, once
            assert save.count("-j NODEWALL-INPUT") == 1
        with entered(ns):
            assert backend.status().drift == ()
    with entered(ns):
        assert backend.remove()
    assert full_view(ns, variant) == original_full
    with entered(ns):
        assert backend.remove() is False


def _connects(port: int) -> bool:
    """A connection over loopback in the calling thread's namespace to a listener on `port`."""
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        client.settimeout(0.5)
        try:
            client.connect(("127.0.0.1", port))
        except TimeoutError:
            return False
        return True


def test_nodewall_accept_never_overrides_a_foreign_deny(iptables_ns: str,
                                                         variant: xtables.Variant) -> None:
    """nodewall accepts loopback; the foreign `INPUT ... --dport 2375 -j DROP` after its jump
    still drops (nodewall's accept returns to INPUT, as an nftables accept goes on to the other
    base chains); a port nobody denies connects."""
    load_foreign(iptables_ns, variant)
    with entered(iptables_ns):
        IptablesBackend(variant).apply(policy_for())
        assert _connects(2376)
        assert not _connects(2375)


def test_variant_detection_and_mixed_host_refusal(iptables_ns: str) -> None:
    ns, policy = iptables_ns, policy_for()
    with entered(ns):
        assert xtables.detect_variant() == xtables.default_variant()
    sh("iptables-legacy", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "1", "-j", "ACCEPT", ns=ns)
    with entered(ns):
        assert xtables.detect_variant() == "legacy"
        IptablesBackend().apply(policy)
    assert "NODEWALL-INPUT" in sh("iptables-legacy-save", ns=ns)
    assert "NODEWALL" not in sh("iptables-nft-save", ns=ns)
    sh("ip6tables-nft", "-A", "INPUT", "-p", "tcp", "--dport", "1", "-j", "ACCEPT", ns=ns)
    with entered(ns):
        with pytest.raises(BackendError, match="both iptables-legacy and iptables-nft"):
            IptablesBackend().apply(policy)
        # status and remove still find nodewall's chains (in legacy) on such a host
        assert IptablesBackend().status().version == policy.version
        assert IptablesBackend().remove()
    assert "NODEWALL" not in sh("iptables-legacy-save", ns=ns)


def test_auto_picks_and_says_why(iptables_ns: str) -> None:
    ns, policy = iptables_ns, policy_for()
    with entered(ns):
        name, why = choose()
        assert name == "nftables" and "no iptables rules" in why
    sh("iptables-nft", "-A", "INPUT", "-p", "tcp", "--dport", "1", "-j", "ACCEPT", ns=ns)
    with entered(ns):
        name, why = choose()
        assert name == "iptables" and "already runs iptables rules (iptables-nft)" in why
        auto = AutoBackend(get_backend)
        result = auto.apply(policy)
        assert (result.backend, auto.chosen) == ("iptables", "iptables")
    sh("iptables-nft", "-D", "INPUT", "-p", "tcp", "--dport", "1", "-j", "ACCEPT", ns=ns)
    with entered(ns):
        assert choose() == ("iptables",
                            "nodewall's iptables chains are present (iptables-nft)")
        assert IptablesBackend().remove()
        assert choose()[0] == "nftables"
