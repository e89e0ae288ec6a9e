"""Fixtures of the real-kernel suite: one topology of namespaces per run, a node helper per
backend. Every test here runs for each name in BACKENDS (the iptables backend adds its name),
but for the iptables-only tests (test_iptables_*.py), which run for each iptables variant
(`iptables_node`) and find the node namespace's iptables and ipsets empty again afterwards.

Outside CI a kernel test that cannot run (not root, no namespaces, a tool missing) is skipped;
with `CI` set it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from netns import HOSTS, Listeners, Topology, entered, kernel_ready, sh
from normalise import ipset_save, xtables_save

from nodewall.backends.base import ApplyResult, Backend, Status
from nodewall.backends.iptables import xtables
from nodewall.policy.model import NodePolicy, Rule

#: Every backend must pass this same suite.
BACKENDS = ["nftables", "iptables"]

#: Per backend: commands (run in the node namespace) that change its objects behind its back.
TAMPER: dict[str, dict[str, list[list[str]]]] = {
    "nftables": {
        "delete": [["nft", "delete", "table", "inet", "nodewall"]],
        "edit": [["nft", "insert", "rule", "inet", "nodewall", "input", "tcp", "dport", "5432",
                  "accept"]],
    },
    "iptables": {
        "delete": [
            *([ipt, "-D", hook, "-j", f"NODEWALL-{hook}"] for ipt in ("iptables", "ip6tables")
              for hook in ("INPUT", "OUTPUT")),
            *([ipt, op, f"NODEWALL-{c}"] for ipt in ("iptables", "ip6tables") for op in ("-F", "-X")
              for c in ("INPUT", "OUTPUT", "REJECT", "META")),
            ["ipset", "destroy"],  # the node namespace holds no other sets
        ],
        "edit": [["iptables", "-I", "NODEWALL-INPUT", "1", "-p", "tcp", "--dport", "5432", "-j",
                  "ACCEPT"]],
    },
}


def _break_nftables(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the next apply's batch also add an element to a set that does not exist: the
    kernel refuses that message (ENOENT) and so the whole transaction."""
    from nodewall.backends.nftables import wire as nftwire

    real = nftwire.element_messages

    def broken(name: str, elements: Any, **kwargs: Any) -> list[Any]:
        return [*real(name, elements, **kwargs), *real("absent", elements[:1])]

    monkeypatch.setattr(nftwire, "element_messages", broken)
    return "element(s) of set absent: No such file or directory"


def _break_iptables(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the IPv4 text (the second transaction) name a set that does not exist."""
    from nodewall.backends.iptables import render as iptables

    real = iptables.rule_lines
    bad = "-A NODEWALL-INPUT -m set --match-set nodewall-absent src -j ACCEPT"

    def broken(rule: Rule, family: int, names: Any) -> list[str]:
        lines = real(rule, family, names)  # type: ignore[arg-type]
        return [*lines, bad] if (rule.reason, rule.direction, family) == ("loopback", "in",
                                                                          4) else lines

    monkeypatch.setattr(iptables, "rule_lines", broken)
    return bad


#: Per backend: make the next apply fail inside the kernel; returns text the error must show.
FAILURE_INJECTORS: dict[str, Callable[[pytest.MonkeyPatch], str]] = {
    "nftables": _break_nftables,
    "iptables": _break_iptables,
}

#: Differential-test tally, printed at the end of the run.
PAIRS = {"checked": 0, "mismatches": 0}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PAIRS["checked"]:
        terminalreporter.write_line(
            f"kernel differential: {PAIRS['checked']} (spec, packet) pairs checked, "
            f"{PAIRS['mismatches']} mismatches")


#: namespace -> the echo servers running in it
SERVERS: dict[str, Listeners] = {}

#: Ports every node namespace listens on (TCP echo and UDP echo, IPv4 and IPv6).
TCP_PORTS = {22, 80, 443, 5432, 9273, 30287, *range(14000, 14012), 14017, 14018}
UDP_PORTS = {53, 500, 4500, 5432, 14017}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.kernel)


def unavailable(why: str | None) -> None:
    """Skip the calling test when `why` says it cannot run here; under CI fail it instead."""
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"kernel tests must run in CI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    unavailable(kernel_ready())
    topo = Topology()
    listeners: Listeners | None = None
    try:
        topo.open()
        # Probes open thousands of short connections; their TIME_WAIT entries would make
        # every conntrack listing long. A test-namespace setting, like the ICMP rate limits.
        sh("nft", "add", "table", "inet", "nwn_ct_warmup", ns=topo.ns("node"))
        sh("nft", "add", "chain", "inet", "nwn_ct_warmup", "c", "{ type filter hook input "
           "priority 0; ct state new accept; }", ns=topo.ns("node"))
        sh("nft", "delete", "table", "inet", "nwn_ct_warmup", ns=topo.ns("node"))
        sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1",
           ns=topo.ns("node"))
        listeners = Listeners(topo.ns("node"))
        listeners.ensure(tcp=TCP_PORTS, udp=UDP_PORTS)
        SERVERS[topo.ns("node")] = listeners
        yield topo
    finally:
        if listeners is not None:
            listeners.close()
            SERVERS.clear()
        topo.close()


class Node:
    """The node under test: applies policies with one backend inside the node namespace."""

    def __init__(self, topo: Topology, backend_name: str, backend: Backend | None = None) -> None:
        """The backend registered as `backend_name`, or `backend` (that backend's object made
        another way, e.g. the iptables backend fixed to one variant)."""
        from nodewall.backends.registry import get_backend

        self.topo = topo
        self.ns = topo.ns("node")
        self.backend_name = backend_name
        with entered(self.ns):
            self.backend: Backend = backend or get_backend(backend_name)
        self.v4, self.v6 = HOSTS["node"]
        self.listeners = SERVERS[self.ns]

    def apply(self, policy: NodePolicy) -> ApplyResult:
        with entered(self.ns):
            return self.backend.apply(policy)

    def status(self) -> Status:
        with entered(self.ns):
            return self.backend.status()

    def remove(self) -> bool:
        with entered(self.ns):
            return self.backend.remove()

    def ruleset(self) -> str:
        """Everything the kernel of the node holds, as text: nft ruleset and ipsets."""
        return sh("nft", "-s", "list", "ruleset", ns=self.ns) + sh("ipset", "list", ns=self.ns)


@pytest.fixture(params=BACKENDS)
def node(request: pytest.FixtureRequest, topology: Topology) -> Iterator[Node]:
    helper = Node(topology, request.param)
    try:
        yield helper
    finally:
        from nodewall.backends.registry import get_backend

        with entered(helper.ns):
            for name in BACKENDS:
                with contextlib.suppress(Exception):
                    get_backend(name).remove()
        sh("conntrack", "-F", ns=helper.ns, check=False)


@pytest.fixture(scope="module")
def outside(topology: Topology) -> Iterator[dict[str, Listeners]]:
    """Servers outside the node for egress probes (the metadata host included), for one module
    (another module may serve other ports on these hosts)."""
    servers: dict[str, Listeners] = {}
    try:
        for role in ("metadata", "vpc", "office", "internet", "peer"):
            servers[role] = Listeners(topology.ns(role))
            servers[role].ensure(tcp={80, 53, 1080, 5555}, udp={53, 123, 5555})
        yield servers
    finally:
        for server in servers.values():
            server.close()


# --- the iptables-only tests ------------------------------------------------------------------

#: Every iptables-only test runs with each variant.
VARIANTS: tuple[xtables.Variant, ...] = ("nft", "legacy")
XT_FAMILIES: tuple[xtables.FamilyNum, ...] = (4, 6)
XTABLES_TOOLS = ("ipset", "conntrack", "setpriv",
                 *(xtables.tool(v, f, what) for v in VARIANTS for f in XT_FAMILIES
                   for what in ("", "save", "restore")))


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> xtables.Variant:
    chosen: xtables.Variant = request.param
    return chosen


def saved(ns: str, variant: xtables.Variant, family: xtables.FamilyNum,
          counters: bool = False) -> list[str]:
    """One family's tables in namespace `ns` as the variant's *-save prints them (with
    `counters`: saved with -c), normalised (`normalise.xtables_save`)."""
    argv = [xtables.tool(variant, family, "save"), *(["-c"] if counters else [])]
    return xtables_save(sh(*argv, ns=ns), counters)


def xtables_view(ns: str, variant: xtables.Variant, counters: bool = False) -> str:
    """Both families' tables (`saved`) and every ipset (`ipset save`, sorted) of `ns`."""
    lines = [line for family in XT_FAMILIES for line in saved(ns, variant, family, counters)]
    return "\n".join([*lines, *ipset_save(sh("ipset", "save", ns=ns))])


def scrub_xtables(ns: str) -> None:
    """Empty the filter tables of both variants and families in `ns` (nodewall's chains and any
    a test added), then destroy every ipset; fail when anything is left."""
    for variant in VARIANTS:
        for family in XT_FAMILIES:
            if xtables._has_rules(sh(xtables.tool(variant, family, "save"), ns=ns)):
                for op in ("-F", "-X"):
                    sh(xtables.tool(variant, family, ""), "-w", op, ns=ns, check=False)
    sh("ipset", "destroy", ns=ns, check=False)
    left = [f"{v} IPv{f}" for v in VARIANTS for f in XT_FAMILIES
            if xtables._has_rules(sh(xtables.tool(v, f, "save"), ns=ns))]
    assert not left and not sh("ipset", "list", "-n", ns=ns).strip(), \
        f"iptables or ipsets left in {ns}: {left}"


@pytest.fixture
def iptables_ns(topology: Topology) -> Iterator[str]:
    """The node namespace for a test that drives iptables and ipset itself; scrubbed afterwards,
    even when the test fails."""
    missing = [tool for tool in XTABLES_TOOLS if shutil.which(tool) is None]
    unavailable(f"missing tools: {missing}" if missing else None)
    ns = topology.ns("node")
    try:
        yield ns
    finally:
        scrub_xtables(ns)
        sh("conntrack", "-F", ns=ns, check=False)


@pytest.fixture
def iptables_node(iptables_ns: str, topology: Topology, variant: xtables.Variant) -> Node:
    """The node under test with the iptables backend fixed to `variant`."""
    from nodewall.backends.iptables.backend import IptablesBackend

    return Node(topology, "iptables", IptablesBackend(variant))
