"""nftables beside other tools' tables: nodewall reads and changes `inet nodewall` only.

Each neighbour is loaded before nodewall's first apply; then apply, re-apply, an in-place set
change and `status` run as an operator runs them (the CLI, in the node namespace), the change
also through a backend object that remembers what it verified, then `remove`. After every step
the neighbour's tables list as before (`nft -s`, counter values left out), nodewall's table
holds exactly the rendered policy, `status` finds no drift, and probes get nodewall's verdicts.
Neighbours (`neighbours.py`, `neighbour_rulesets/`): an `inet` table with base chains named
`input` and `output` and a chain named `version`, named sets (one named like nodewall's), maps,
anonymous sets, named counters, quotas and limits; an `ip` table; an `ip6` table named
`nodewall`; iptables-nft's `ip filter` and `ip nat` with Docker's chains; the real firewalld
1.3, reloaded while nodewall's table is in place. And a neighbour that commits to its own table
in a loop during 30 in-place changes: every apply ends verified, every neighbour commit
succeeds.

Why `test_kernel_apply.py::test_other_tools_tables_untouched` missed the defect these guard
against: its neighbours were an `ip` table and iptables-nft's `ip filter`. The kernel's chain
dump filters by family (nodewall asks for inet) but not by the table named, so only a
neighbour of family `inet` leaked into nodewall's reads, and no kernel test loaded one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Node
from kspecs import NODE, PG_PORT, policy, public
from neighbours import busy, docker_chains, firewalld, firewalld_missing, listing, nft_tables
from netns import HOSTS, Topology, entered, probe, sh
from test_kernel_wire import check_kernel_holds

from nodewall.backends.nftables import dump as nftdump
from nodewall.backends.nftables import nfnetlink
from nodewall.backends.nftables import wire as nftwire
from nodewall.backends.nftables.backend import NftablesBackend

CLOSED_PORT = 30287
NARROW = public()
WIDE = public(ip_filter=["203.0.113.0/24", "2001:db8:1::/48", "192.0.2.99/32"])


@pytest.fixture
def nft_node(topology: Topology) -> Iterator[Node]:
    helper = Node(topology, "nftables")
    try:
        assert isinstance(helper.backend, NftablesBackend)
        yield helper
    finally:
        helper.remove()
        sh("conntrack", "-F", ns=helper.ns, check=False)


def nodewall_cli(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "nodewall", *args],
                          capture_output=True, text=True, check=False)


def verdicts(node: Node) -> tuple[str, ...]:
    """The office and the internet host connecting to the PostgreSQL port, and the office to
    a port nodewall keeps closed (a listener waits on each)."""
    return tuple(probe(node.topo.ns(role), HOSTS[role][0], node.v4, "tcp", port)
                 for role, port in (("office", PG_PORT), ("internet", PG_PORT),
                                    ("office", CLOSED_PORT)))


def journey(node: Node, tmp_path: Path, tables: list[str],
            disturb: Callable[[], None] = lambda: None) -> None:
    """apply, re-apply, in-place change (CLI and backend object), `disturb`, status, remove:
    after each, the neighbour as before and nodewall's table as rendered."""
    ns = node.ns
    before = listing(ns)
    assert set(tables) <= set(before), f"neighbour not loaded: {tables} not in {list(before)}"
    spec_file = tmp_path / "spec.json"
    nftables = ["--node", NODE, "--backend", "nftables"]

    def apply(spec: dict[str, object], outcome: str) -> None:
        spec_file.write_text(json.dumps(spec))
        done = nodewall_cli(ns, "apply", str(spec_file), *nftables)
        assert done.returncode == 0, done.stderr
        assert outcome in done.stdout, done.stdout
        held(spec)

    def held(spec: dict[str, object]) -> None:
        assert isinstance(node.backend, NftablesBackend)
        check_kernel_holds(ns, node.backend, policy(spec))
        assert listing(ns) == before, "the neighbour's tables changed"

    apply(NARROW, "ruleset updated")
    assert verdicts(node) == ("open", "refused", "refused")
    apply(NARROW, "unchanged")
    apply(WIDE, "set elements updated")  # a new process: from a fresh read of the kernel
    assert verdicts(node) == ("open", "open", "refused")
    for spec in (NARROW, WIDE):  # a backend object: fresh read, then from what it verified
        result = node.apply(policy(spec))
        assert result.changed and result.incremental
        held(spec)
    disturb()
    held(WIDE)
    status = nodewall_cli(ns, "status", "--backend", "nftables")
    assert status.returncode == 0 and "drift: none" in status.stdout, status.stdout
    assert policy(WIDE).version in status.stdout
    removed = nodewall_cli(ns, "remove")
    assert removed.returncode == 0, removed.stderr
    assert "inet nodewall" not in sh("nft", "list", "tables", ns=ns)
    assert listing(ns) == before, "remove changed the neighbour's tables"


@pytest.mark.parametrize("ruleset", ["inet_other", "ip_other", "ip6_nodewall"])
def test_nft_neighbour(nft_node: Node, tmp_path: Path, ruleset: str) -> None:
    with nft_tables(nft_node.ns, ruleset) as tables:
        journey(nft_node, tmp_path, tables)


def test_docker_iptables_nft_neighbour(nft_node: Node, tmp_path: Path) -> None:
    with docker_chains(nft_node.ns) as tables:
        assert "DOCKER-ISOLATION-STAGE-1" in sh("nft", "list", "table", "ip", "filter",
                                                ns=nft_node.ns)
        journey(nft_node, tmp_path, tables)


def test_firewalld_neighbour(nft_node: Node, tmp_path: Path) -> None:
    missing = firewalld_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"kernel tests must run in CI: {missing}")
        pytest.skip(missing)
    with firewalld(nft_node.ns, tmp_path / "firewalld", PG_PORT) as daemon:
        held = sh("nft", "list", "table", "inet", "firewalld", ns=nft_node.ns)
        assert held.count("chain ") > 40 and "filter_IN_public_allow" in held, held
        assert "nwn-blocklist" in held and f"tcp dport {PG_PORT} accept" in held, held

        def reload() -> None:  # firewalld rebuilds its table with nodewall's in place
            daemon.cmd("--reload")
            assert daemon.state() == "RUNNING"

        journey(nft_node, tmp_path, ["inet firewalld"], reload)


def test_neighbour_committing_in_a_loop(nft_node: Node, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """30 in-place changes while another tool commits to its own table as fast as `nft -i`
    runs (elements, rules, a chain coming and going among 400): each apply ends verified (it
    raises otherwise) and holds the policy, and every commit of the neighbour succeeds."""
    ns = nft_node.ns
    nft_node.apply(policy(NARROW))
    outcomes: list[str] = []
    assert isinstance(nft_node.backend, NftablesBackend)
    with entered(ns):
        sock = nft_node.backend._socket()
    real = sock.transaction

    def watched(batch: list[nfnetlink.Message], generation: int | None = None) -> None:
        try:
            real(batch, generation)
        except nfnetlink.GenerationChanged:
            outcomes.append("generation changed")
            raise
        outcomes.append("sent for a generation" if generation is not None else "sent")

    monkeypatch.setattr(sock, "transaction", watched)
    with busy(ns, tmp_path) as loop:
        deadline = time.monotonic() + 10
        while loop.rounds() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        for step in range(30):
            compiled = policy(public(ip_filter=["203.0.113.0/24", f"10.{60 + step}.0.0/16"]))
            result = nft_node.apply(compiled)
            assert result.changed and result.incremental, (step, result)
            with entered(ns):
                assert nftwire.read_image(sock) == nftwire.build(compiled).image, step
        sent, committed, errors = loop.stop()
    assert not errors and committed == sent, f"{sent} rounds sent, {committed} committed: " \
        f"{errors}"
    assert sent >= 100, f"the neighbour committed only {sent} rounds"
    assert verdicts(nft_node) == ("open", "refused", "refused")
    assert nft_node.status().drift == ()
    print(f"neighbour rounds {sent} (5 commits each); nodewall batches: "
          f"{ {o: outcomes.count(o) for o in set(outcomes)} }")


def test_a_chain_a_resumed_dump_skipped_is_read_all_the_same(
        nft_node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain dump resumes each part at a position that counts other tables' chains: a
    neighbour deleting a chain between two parts makes the kernel skip the chain at the
    boundary. Injected here (the dump loses nodewall's `input`): the read still holds the
    whole table, the chain's header asked for by name."""
    compiled = policy(NARROW)
    nft_node.apply(compiled)
    with entered(nft_node.ns):
        sock = nfnetlink.NfSocket()
        real = sock.dump

        def skipping(kind: int, family: int, body: bytes) -> list[tuple[int, bytes]]:
            answers = real(kind, family, body)
            return [a for a in answers if kind != nfnetlink.GETCHAIN
                    or b"\x0a\x00\x03\x00input\x00" not in a[1]]

        monkeypatch.setattr(sock, "dump", skipping)
        assert "input" not in {c for a in nftdump.ours(sock, nfnetlink.GETCHAIN)
                               for c in [a[3].rstrip(b"\0").decode()]}
        assert nftwire.read_image(sock) == nftwire.build(compiled).image
        sock.close()


def test_objects_put_inside_nodewalls_table_are_drift(nft_node: Node) -> None:
    """Named counters and quotas are no neighbour's when they sit in `inet nodewall`: status
    reports them, and the next apply removes them."""
    applied = nft_node.apply(policy(NARROW))
    clean = sh("nft", "-s", "list", "table", "inet", "nodewall", ns=nft_node.ns)
    sh("nft", "add", "counter", "inet", "nodewall", "sneaky", ns=nft_node.ns)
    sh("nft", "add", "quota", "inet", "nodewall", "q", "{ over 1 mbytes }", ns=nft_node.ns)
    assert nft_node.status().drift == ("sets, set elements, extra chains or objects changed",)
    repaired = nft_node.apply(policy(NARROW))
    assert repaired.changed and repaired.version == applied.version
    assert nft_node.status().drift == ()
    assert sh("nft", "-s", "list", "table", "inet", "nodewall", ns=nft_node.ns) == clean
