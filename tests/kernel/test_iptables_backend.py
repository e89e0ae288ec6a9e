"""The iptables backend against the real kernel, for iptables-nft and iptables-legacy.

On the shared topology (conftest.py, netns.py): the backend fixed to each variant applies in
the node namespace (`iptables_node`), the other hosts probe it, and the node namespace's
iptables and ipsets are emptied after each test, even when it fails. The ip_filter of these
policies is the office host alone (`CLIENT`), so a set of hosts can become hosts-only.

Covered here: rule-by-rule probes compared with the reference evaluator (differential), uid
egress, re-apply is a no-op, set-only changes swap sets without touching the chains, failure of
the second family transaction rolls the first back, drift in `status`, the conntrack cut and no
blink while re-applying with iptables-legacy (with iptables-nft, the backend-parametrized
test_kernel_conntrack.py and test_kernel_noblink.py run them, asserting more). Coexistence with
other tools is in test_iptables_coexistence.py.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Sequence

import kspecs
import pytest
from conftest import Node, xtables_view
from kspecs import PG_PORT, public
from netns import HOSTS, OUTCOME, entered, probe, probe_as, sh
from normalise import counted_rule

from nodewall.backends.base import BackendError
from nodewall.backends.iptables import xtables
from nodewall.policy.evaluator import Packet, evaluate
from nodewall.policy.model import NodePolicy, SetElement

OFFICE, INTERNET = HOSTS["office"], HOSTS["internet"]
#: The ip_filter of these tests: the office host, both families.
CLIENT = (f"{OFFICE[0]}/32", f"{OFFICE[1]}/128")
#: ... and the internet host's IPv4 address besides.
WIDER = (*CLIENT, f"{INTERNET[0]}/32")
ACTORS = ("peer", "office", "internet", "mgmt", "vpc")
EXTRA_TCP = (22, 30287, 443, 9273, 9999)
EXTRA_UDP = (500, 4500, 9999)


def policy_for(ip_filter: Sequence[str] = CLIENT) -> NodePolicy:
    return kspecs.policy(public(ip_filter=list(ip_filter)))


def ports(policy: NodePolicy) -> tuple[list[int], list[int]]:
    tcp = sorted({c.port for c in policy.components if c.protocol == "tcp"} | set(EXTRA_TCP))
    udp = sorted({c.port for c in policy.components if c.protocol == "udp"} | set(EXTRA_UDP))
    return tcp, udp


def reach(node: Node, role: str, fam: int, port: int = PG_PORT, timeout: float = 0.5) -> str:
    """A TCP probe from host `role` to the node, in family `fam` (0: IPv4, 1: IPv6)."""
    return probe(node.topo.ns(role), HOSTS[role][fam], HOSTS["node"][fam], "tcp", port,
                 timeout=timeout)


def test_probes_match_the_evaluator(iptables_node: Node) -> None:
    """Differential: every (actor, family, protocol, port) probe gets the reference verdict."""
    node, policy = iptables_node, policy_for()
    tcp, udp = ports(policy)
    node.listeners.ensure(tcp=set(tcp), udp=set(udp))
    result = node.apply(policy)
    assert result.changed and not result.incremental and result.backend == "iptables"
    mismatches = []
    seen = set()
    for role in ACTORS:
        for fam in (0, 1):
            src, dst = HOSTS[role][fam], HOSTS["node"][fam]
            for proto, plist in (("tcp", tcp), ("udp", udp)):
                for port in plist:
                    want = evaluate(policy, Packet(src, dst, proto, port)).action  # type: ignore[arg-type]
                    got = probe(node.topo.ns(role), src, dst, proto, port)
                    seen.add(want)
                    if got != OUTCOME[want]:
                        mismatches.append(f"{role} IPv{4 + 2 * fam} {proto}/{port}: "
                                          f"expected {OUTCOME[want]} ({want}), got {got}")
    assert not mismatches, "\n".join(mismatches)
    assert seen == {"accept", "reject"}


def test_egress_uid_and_metadata(iptables_node: Node, outside: object) -> None:
    node = iptables_node
    node.apply(policy_for())
    meta = HOSTS["metadata"][0]
    assert probe(node.ns, node.v4, meta, "tcp", 80) == "open"  # uid 0
    assert probe(node.ns, node.v4, INTERNET[0], "tcp", 5555) == "open"
    for proto, port, want, errno_name in (("tcp", 80, "refused", ["ECONNREFUSED"]),
                                          ("udp", 53, "open", [])):
        why: list[str] = []
        got = probe_as(node.ns, 65534, proto, meta, port, why=why)
        assert (got, why) == (want, errno_name), f"uid 65534 {proto}/{port} to metadata"


def chain_rules(node: Node, variant: xtables.Variant) -> list[tuple[int, str]]:
    """The rules of NODEWALL-INPUT and NODEWALL-OUTPUT, both families, with their packet
    counts (saved with -c)."""
    rules = [counted_rule(line) for line in xtables_view(node.ns, variant, counters=True)
             .splitlines() if line.startswith("[")]
    return [(packets, rule) for packets, rule in rules
            if rule.split(" ")[:2] in (["-A", "NODEWALL-INPUT"], ["-A", "NODEWALL-OUTPUT"])]


def test_reapply_noop_and_set_only_swap(iptables_node: Node, variant: xtables.Variant) -> None:
    node, policy = iptables_node, policy_for()
    node.apply(policy)
    before = xtables_view(node.ns, variant)
    assert "-A NODEWALL-INPUT " in before and "add nodewall-clients_v4 " in before
    again = node.apply(policy)
    assert (again.changed, again.incremental) == (False, False)
    assert xtables_view(node.ns, variant) == before
    assert reach(node, "internet", 0) == "refused"
    assert reach(node, "office", 0) == "open"
    chains_before = chain_rules(node, variant)
    wider = policy_for(WIDER)
    result = node.apply(wider)
    assert (result.changed, result.incremental) == (True, True)
    chains_after = chain_rules(node, variant)
    assert len(chains_before) > 10
    assert [rule for _, rule in chains_after] == [rule for _, rule in chains_before], \
        "a set-only change rewrote chains"
    counts = [(b, a) for (b, _), (a, _) in zip(chains_before, chains_after, strict=True)]
    assert any(b > 0 for b, _ in counts)
    assert all(a >= b for b, a in counts), f"counters were reset: {counts}"
    assert node.status().version == wider.version
    assert node.status().drift == ()
    assert "-b" not in sh("ipset", "list", "-n", ns=node.ns)  # temporary sets are gone
    assert reach(node, "internet", 0) == "open"


def test_failed_second_family_leaves_both_on_previous_rules(
    iptables_node: Node, variant: xtables.Variant, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = iptables_node
    old, new = policy_for(), policy_for((f"{INTERNET[0]}/32",))
    new = dataclasses.replace(new, rules=tuple(r for r in new.rules if r.reason != "management"))
    assert len(new.rules) < len(old.rules)
    real_run = xtables.run
    node.apply(old)
    before = xtables_view(node.ns, variant)
    assert "-A NODEWALL-INPUT " in before and "add nodewall-clients_v4 " in before
    seen: list[str] = []

    def failing(argv: Sequence[str], stdin: str | None = None) -> str:
        seen.append(argv[0])
        if argv[0] == xtables.tool(variant, 4, "restore"):
            if not any(a == xtables.tool(variant, 6, "restore") for a in seen[:-1]):
                raise AssertionError("IPv6 must be loaded before IPv4")
            raise BackendError("injected: iptables-restore failed")
        return real_run(argv, stdin)

    monkeypatch.setattr(xtables, "run", failing)
    with pytest.raises(BackendError, match="injected"):
        node.apply(new)
    monkeypatch.setattr(xtables, "run", real_run)
    assert xtables_view(node.ns, variant) == before
    status = node.status()
    assert (status.version, status.drift) == (old.version, ())


def test_failed_first_family_changes_nothing(
    iptables_node: Node, variant: xtables.Variant, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = iptables_node
    old, new = policy_for(), policy_for((f"{INTERNET[0]}/32",))
    new = dataclasses.replace(new, rules=new.rules[1:])
    real_run = xtables.run
    node.apply(old)
    before = xtables_view(node.ns, variant)
    assert "-A NODEWALL-INPUT " in before and "add nodewall-clients_v4 " in before
    calls: list[str] = []

    def failing(argv: Sequence[str], stdin: str | None = None) -> str:
        calls.append(argv[0])
        if argv[0] == xtables.tool(variant, 6, "restore"):
            raise BackendError("injected: ip6tables-restore failed")
        return real_run(argv, stdin)

    monkeypatch.setattr(xtables, "run", failing)
    with pytest.raises(BackendError, match="injected"):
        node.apply(new)
    monkeypatch.undo()
    assert xtables.tool(variant, 4, "restore") not in calls, "IPv4 touched after IPv6 failed"
    assert xtables_view(node.ns, variant) == before


def test_set_type_change_goes_through_the_other_slot(iptables_node: Node) -> None:
    """A set that turns hosts-only cannot be swapped (types differ): the full path fills the
    other slot, the new rules name it, the old set goes; and back again."""
    node, old = iptables_node, policy_for()
    assert "clients_v4" in {s.name for s in old.sets}
    hosts = dataclasses.replace(old, sets=tuple(
        dataclasses.replace(s, hosts_only=True) if s.name == "clients_v4" else s
        for s in old.sets))
    for step, name in ((old, "nodewall-clients_v4"), (hosts, "nodewall-clients_v4-b"),
                       (old, "nodewall-clients_v4")):
        result = node.apply(step)
        assert result.changed and not result.incremental
        listed = sh("ipset", "list", "-n", ns=node.ns).split()
        assert [n for n in listed if n.startswith("nodewall-clients_v4")] == [name]
        assert node.status().drift == ()
        assert reach(node, "office", 0) == "open"
        assert reach(node, "internet", 0) == "refused"


def test_failed_verify_and_failed_set_swap_roll_back(
    iptables_node: Node, variant: xtables.Variant, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, old = iptables_node, policy_for()
    real_run = xtables.run
    node.apply(old)
    before = xtables_view(node.ns, variant)
    assert "-A NODEWALL-INPUT " in before and "add nodewall-clients_v4 " in before
    # a set-only change whose NODEWALL-META update fails: the swapped sets go back
    wider = policy_for((*CLIENT, "192.0.2.9/32"))

    def meta_fails(argv: Sequence[str], stdin: str | None = None) -> str:
        if argv[0].endswith("-restore") and stdin and "NODEWALL-META" in stdin:
            raise BackendError("injected: META update failed")
        return real_run(argv, stdin)

    monkeypatch.setattr(xtables, "run", meta_fails)
    with pytest.raises(BackendError, match="injected"):
        node.apply(wider)
    monkeypatch.setattr(xtables, "run", real_run)
    assert xtables_view(node.ns, variant) == before
    # a read-back that differs (as if another tool edited the chain mid-apply)
    from nodewall.backends.iptables import backend as ipt

    monkeypatch.setattr(ipt, "_verify", lambda *a: ["injected: read-back differs"])
    changed = policy_for((f"{INTERNET[0]}/32",))
    changed = dataclasses.replace(changed, rules=changed.rules[1:])
    with pytest.raises(BackendError, match="injected"):
        node.apply(changed)
    monkeypatch.undo()
    assert xtables_view(node.ns, variant) == before
    assert node.status().drift == ()


def test_status_reports_drift_and_apply_repairs(iptables_node: Node,
                                                variant: xtables.Variant) -> None:
    node, policy = iptables_node, policy_for()
    ipt4 = xtables.tool(variant, 4, "")
    node.apply(policy)
    # a foreign rule before nodewall's jump (removed by the fixture's scrub after the test)
    sh(ipt4, "-w", "-I", "INPUT", "1", "-p", "tcp", "--dport", "7", "-j", "ACCEPT", ns=node.ns)
    sh(ipt4, "-w", "-A", "NODEWALL-INPUT", "-j", "ACCEPT", ns=node.ns)
    sh("ipset", "add", "nodewall-clients_v4", INTERNET[0], ns=node.ns)
    drift = "\n".join(node.status().drift)
    assert "jump to NODEWALL-INPUT" in drift
    assert "IPv4: NODEWALL- chains differ" in drift
    assert "set nodewall-clients_v4: contents differ" in drift
    repaired = node.apply(policy)
    assert repaired.changed
    assert node.status().drift == ()
    assert "-A INPUT -p tcp -m tcp --dport 7 -j ACCEPT" in sh(xtables.tool(variant, 4, "save"),
                                                                 ns=node.ns)
    assert node.remove()
    assert node.status().present is False


def connect(node: Node, role: str) -> socket.socket:
    """An echoed TCP connection from host `role` to the node's pg port (IPv4)."""
    with entered(node.topo.ns(role)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.bind((HOSTS[role][0], 0))
    s.connect((node.v4, PG_PORT))
    return s


@pytest.mark.parametrize("variant", ["legacy"], indirect=True)  # nft: test_kernel_conntrack
def test_conntrack_cut_after_narrowing(iptables_node: Node) -> None:
    node = iptables_node
    node.apply(policy_for(WIDER))
    kept, cut = connect(node, "office"), connect(node, "internet")
    try:
        for s in (kept, cut):
            s.send(b"a")
            assert s.recv(1) == b"a"
        result = node.apply(policy_for())
        assert result.flows_cut >= 1
        kept.send(b"b")
        assert kept.recv(1) == b"b"
        with pytest.raises(OSError):
            cut.send(b"c")
            if cut.recv(1) == b"":
                raise ConnectionResetError("closed")
    finally:
        kept.close()
        cut.close()


@pytest.mark.parametrize("variant", ["legacy"], indirect=True)  # nft: test_kernel_noblink
def test_no_blink_while_reapplying(iptables_node: Node) -> None:
    """A client allowed by both policies is never refused while policies alternate."""
    node = iptables_node
    a, b = policy_for(), policy_for(WIDER)
    assert "mgmt_v4" in {s.name for s in b.sets}
    wider_mgmt = tuple(
        dataclasses.replace(s, elements=(*s.elements, SetElement("10.99.0.0/16")))
        if s.name == "mgmt_v4" else s for s in b.sets)
    last = dataclasses.replace(b.rules[-1], reason="other reason")
    b_full = dataclasses.replace(b, sets=wider_mgmt, rules=(*b.rules[:-1], last))
    node.apply(a)
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            for fam in (0, 1):
                got = reach(node, "office", fam, timeout=2)
                if got != "open":
                    failures.append(f"{OFFICE[fam]}: {got}")
            time.sleep(0.005)  # every flow stays in conntrack, and each apply judges them

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for step in (b, a, b_full, a, b, b_full):
            node.apply(step)
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert not failures, f"allowed client refused during re-apply: {failures[:5]}"
