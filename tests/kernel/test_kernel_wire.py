"""The nftables backend sends netlink messages, not text: the kernel must end up holding exactly
what `nft -f` of the rendered text would make. `nft list table inet nodewall` of the applied
table must print the rendered text back, for every example node and after every change of a
random sequence of ip_filter edits applied in place; and the backend's full read-back must equal
the image built from the policy. Runs in the topology's node namespace (nftables only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kspecs import policy, public
from netns import Topology, entered, sh
from normalise import nft_listing

from nodewall.backends.nftables import wire as nftwire
from nodewall.backends.nftables.backend import NftablesBackend, render
from nodewall.backends.nftables.nfnetlink import Message
from nodewall.compiler.node import compile_node
from nodewall.policy.model import NodePolicy
from nodewall.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_NODES = [(path.name, node["name"]) for path in sorted((ROOT / "examples").glob("*.yaml"))
                 for service in load_spec(path).model_dump()["services"]
                 for node in service["nodes"]]
# adjacent, nested, touching the ends of the address space, hosts and both families
POOL = ["0.0.0.0/0", "0.0.0.0/8", "1.0.0.0/8", "10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/23",
        "10.0.4.0/25", "10.0.4.128/25", "10.0.5.0/24", "203.0.113.7/32", "203.0.113.8/31",
        "255.255.255.255/32", "255.255.255.0/24", "192.0.2.0/24", "::/0", "2001:db8::/48",
        "2001:db8:1::/48", "2001:db8::1/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        "fd00::/8", "fe00::/8"]


@pytest.fixture
def nft_node(topology: Topology) -> Iterator[tuple[str, NftablesBackend]]:
    ns = topology.ns("node")
    with entered(ns):
        backend = NftablesBackend()
    try:
        yield ns, backend
    finally:
        with entered(ns):
            backend.remove()


def check_kernel_holds(ns: str, backend: NftablesBackend, policy: NodePolicy) -> None:
    listing = sh("nft", "list", "table", "inet", "nodewall", ns=ns)
    assert nft_listing(listing) == nft_listing(render(policy))
    with entered(ns):
        image = nftwire.read_image(backend._socket())
        assert backend.status().drift == ()
    assert image == nftwire.build(policy).image


@pytest.mark.parametrize(("example", "node_name"), EXAMPLE_NODES)
def test_listing_equals_render(nft_node: tuple[str, NftablesBackend], example: str,
                               node_name: str) -> None:
    ns, backend = nft_node
    compiled = compile_node(load_spec(ROOT / "examples" / example), node_name)
    with entered(ns):
        assert backend.apply(compiled).changed
    check_kernel_holds(ns, backend, compiled)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(POOL), min_size=1, max_size=8, unique=True),
                min_size=2, max_size=5))
def test_in_place_changes_hold_the_rendered_table(nft_node: tuple[str, NftablesBackend],
                                                  steps: list[list[str]]) -> None:
    ns, backend = nft_node
    for ip_filter in steps:
        apply_and_check(ns, backend, backend, ip_filter)


def apply_and_check(ns: str, backend: NftablesBackend, applier: NftablesBackend,
                    ip_filter: list[str]) -> None:
    """`applier` applies the policy with this ip_filter; the kernel must then hold it."""
    compiled = policy(public(ip_filter=ip_filter, enable_ipv6=True))
    with entered(ns):
        applier.apply(compiled)
    check_kernel_holds(ns, backend, compiled)


@pytest.mark.parametrize("steps", [
    [["0.0.0.0/7"], ["1.0.0.0/8"]],  # an end key kept while the start before it goes
    [["0.0.0.0/8", "1.0.0.0/8"], ["1.0.0.0/8"]],
    [["10.0.2.0/24"], ["10.0.1.0/24"]],  # a start key becomes an end key
    [["10.0.0.0/8"], ["0.0.0.0/8"], ["10.0.0.0/8"]],  # the zero end key goes and comes
    [["255.255.255.0/24"], ["255.255.254.0/23"], ["0.0.0.0/0"], ["0.0.0.0/1"]],
    [["::/0"], ["::/1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"], ["fe00::/8"]],
])
def test_hard_interval_changes(nft_node: tuple[str, NftablesBackend],
                               steps: list[list[str]]) -> None:
    """Changes that move interval keys onto each other, the zero end key and the top address:
    each must go through in place, first from the image the backend remembers, then from a
    fresh backend that reads the kernel."""
    ns, backend = nft_node
    for ip_filter in steps:
        apply_and_check(ns, backend, backend, ip_filter)
    for ip_filter in reversed(steps):
        apply_and_check(ns, backend, NftablesBackend(), ip_filter)


def test_one_entry_is_sent_as_a_delta(nft_node: tuple[str, NftablesBackend],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ns, backend = nft_node
    base = [f"10.{i}.0.0/16" for i in range(1, 60)]
    with entered(ns):
        backend.apply(policy(public(ip_filter=base)))
    sent: list[list[str]] = []

    with entered(ns):
        sock = backend._socket()
        real = sock.transaction

        def spy(batch: list[Message], generation: int | None = None) -> None:
            sent.append([m.what for m in batch])
            real(batch, generation)

        monkeypatch.setattr(sock, "transaction", spy)
        grown = policy(public(ip_filter=[*base, "10.200.0.0/16"]))
        result = backend.apply(grown)
    assert result.incremental and result.flows_cut == 0
    assert len(sent) == 1 and len(sent[0]) == 3, sent  # one transaction of three messages
    assert sent[0][:2] == ["flush chain version", "add 2 element(s) of set clients_v4"], sent
    assert sent[0][2].startswith("rule 1 of chain version: return comment"), sent
    check_kernel_holds(ns, backend, grown)


def test_commit_racing_another_is_redone_from_the_kernel(
        nft_node: tuple[str, NftablesBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """Another tool commits between the backend's look at the generation and its batch: the
    batch, sent for the old generation, is refused whole (no half-known state), and the change
    is worked out again from a fresh read of the kernel."""
    ns, backend = nft_node
    with entered(ns):
        backend.apply(policy(public(ip_filter=["10.0.0.0/24"])))
    real = nftwire.update_batch
    raced: list[int] = []

    def racing(have: nftwire.Image, plan: nftwire.Plan) -> list[Message]:
        if not raced:
            sh("nft", "add", "table", "ip", "nwn_racer", ns=ns)  # a foreign commit, meanwhile
            raced.append(1)
        return real(have, plan)

    monkeypatch.setattr(nftwire, "update_batch", racing)
    outcomes: list[str] = []
    with entered(ns):
        sock = backend._socket()
        real_transaction = sock.transaction

        def watched(batch: list[Message], generation: int | None = None) -> None:
            try:
                real_transaction(batch, generation)
            except Exception as exc:
                outcomes.append(type(exc).__name__)
                raise
            outcomes.append("committed")

        monkeypatch.setattr(sock, "transaction", watched)
        grown = policy(public(ip_filter=["10.0.0.0/24", "10.9.0.0/16"]))
        result = backend.apply(grown)
    assert raced and result.changed and result.incremental
    assert outcomes == ["GenerationChanged", "committed"]
    check_kernel_holds(ns, backend, grown)
    sh("nft", "delete", "table", "ip", "nwn_racer", ns=ns)
