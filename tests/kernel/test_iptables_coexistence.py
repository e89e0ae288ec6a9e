"""The iptables backend shares the kernel: other tools' chains, rules and sets survive it.

A namespace per test (`nwi<suffix>`) is loaded with what Docker and a cloud agent leave in
`filter`: a DOCKER-USER chain with rules reached from FORWARD, an agent chain reached from INPUT
and OUTPUT, rules of their own in INPUT and OUTPUT, a foreign ipset the DOCKER-USER rules match.
apply, re-apply (unchanged, set-only, full) and remove must leave every foreign line and the
foreign set byte-identical, in the same order. Also here: variant detection (legacy or nft, and
the refusal of a host where both hold rules) and `--backend auto`.
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
import subprocess
from collections.abc import Iterator

import pytest
from test_iptables_backend import inside, need_kernel, policy_for, save_lines, sh

from nodewall.backends.auto import AutoBackend, choose
from nodewall.backends.base import BackendError
from nodewall.backends.iptables import xtables
from nodewall.backends.iptables.backend import IptablesBackend
from nodewall.backends.registry import get_backend

pytestmark = pytest.mark.kernel

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


@pytest.fixture
def netns() -> Iterator[str]:
    need_kernel()
    name = f"nwi{secrets.token_hex(3)}x"
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    try:
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture(params=["nft", "legacy"])
def variant(request: pytest.FixtureRequest) -> xtables.Variant:
    v: xtables.Variant = request.param
    return v


def load_foreign(variant: xtables.Variant) -> None:
    sh("ipset", "create", "docker-allow", "hash:net")
    sh("ipset", "add", "docker-allow", "172.17.0.0/16")
    texts: tuple[tuple[xtables.FamilyNum, str], ...] = ((4, FOREIGN), (6, FOREIGN6))
    for family, text in texts:
        subprocess.run([xtables.tool(variant, family, "restore"), "--noflush"], input=text,
                       text=True, check=True)


def foreign_view(variant: xtables.Variant) -> str:
    """The kernel minus nodewall's objects, comments (timestamps) left out."""
    lines = [x for f in (4, 6) for x in save_lines(variant, f) if "NODEWALL-" not in x]
    return "\n".join(lines) + "\n" + sh("ipset", "save", "docker-allow")


def full_view(variant: xtables.Variant) -> str:
    return "\n".join(x for f in (4, 6) for x in save_lines(variant, f)) + sh("ipset", "save")


def test_foreign_chains_rules_and_sets_survive(netns: str, variant: xtables.Variant) -> None:
    policy = policy_for()
    with inside(netns):
        load_foreign(variant)
        original, original_full = foreign_view(variant), full_view(variant)
        assert "DOCKER-USER" in original and "docker-allow" in original
        backend = IptablesBackend()  # detects the variant the foreign rules use
        assert backend.variant() == variant
        steps = [
            ("apply", policy),
            ("re-apply", policy),
            ("set-only", policy_for(("10.77.0.3/32", "10.77.0.8/32", "fd77::3/128"))),
            ("full", dataclasses.replace(policy, rules=policy.rules[1:])),
        ]
        for what, step in steps:
            backend.apply(step)
            assert foreign_view(variant) == original, f"foreign objects changed by {what}"
            for family in (4, 6):
                save = sh(xtables.tool(variant, family, "save"))
                assert "-A INPUT -j NODEWALL-INPUT\n-A INPUT" in save  # ours first, once
                assert save.count("-j NODEWALL-INPUT") == 1
            assert backend.status().drift == ()
        assert backend.remove()
        assert full_view(variant) == original_full
        assert backend.remove() is False


def _connects(port: int) -> bool:
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        client.settimeout(0.5)
        try:
            client.connect(("127.0.0.1", port))
        except TimeoutError:
            return False
        return True


def test_nodewall_accept_never_overrides_a_foreign_deny(netns: str,
                                                         variant: xtables.Variant) -> None:
    """nodewall accepts loopback; the foreign `INPUT ... --dport 2375 -j DROP` after its jump
    still drops (nodewall's accept returns to INPUT, as an nftables accept goes on to the other
    base chains); a port nobody denies connects."""
    with inside(netns):
        load_foreign(variant)
        IptablesBackend(variant).apply(policy_for())
        assert _connects(2376)
        assert not _connects(2375)


def test_variant_detection_and_mixed_host_refusal(netns: str) -> None:
    policy = policy_for()
    with inside(netns):
        assert xtables.detect_variant() == xtables.default_variant()
        sh("iptables-legacy", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "1", "-j", "ACCEPT")
        assert xtables.detect_variant() == "legacy"
        IptablesBackend().apply(policy)
        assert "NODEWALL-INPUT" in sh("iptables-legacy-save")
        assert "NODEWALL" not in sh("iptables-nft-save")
        sh("ip6tables-nft", "-A", "INPUT", "-p", "tcp", "--dport", "1", "-j", "ACCEPT")
        with pytest.raises(BackendError, match="both iptables-legacy and iptables-nft"):
            IptablesBackend().apply(policy)
        # status and remove still find nodewall's chains (in legacy) on such a host
        assert IptablesBackend().status().version == policy.version
        assert IptablesBackend().remove()
        assert "NODEWALL" not in sh("iptables-legacy-save")


def test_auto_picks_and_says_why(netns: str) -> None:
    policy = policy_for()
    with inside(netns):
        name, why = choose()
        assert name == "nftables" and "no iptables rules" in why
        sh("iptables-nft", "-A", "INPUT", "-p", "tcp", "--dport", "1", "-j", "ACCEPT")
        name, why = choose()
        assert name == "iptables" and "already runs iptables rules (iptables-nft)" in why
        auto = AutoBackend(get_backend)
        result = auto.apply(policy)
        assert (result.backend, auto.chosen) == ("iptables", "iptables")
        sh("iptables-nft", "-D", "INPUT", "-p", "tcp", "--dport", "1", "-j", "ACCEPT")
        assert choose() == ("iptables",
                            "nodewall's iptables chains are present (iptables-nft)")
        assert IptablesBackend().remove()
        assert choose()[0] == "nftables"
