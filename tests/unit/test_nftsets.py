"""Set elements as the kernel holds them (`nodewall.backends.nftables.sets`): a local change of
a few networks must give exactly the elements, prefixes and digest of building the new set whole,
and deltas that turn the old elements into the new ones. No kernel needed."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodewall.backends.nftables.render import merge_spans, parse_spans, set_prefixes
from nodewall.backends.nftables.sets import Elements, element


@st.composite
def v4_networks(draw: st.DrawFn) -> tuple[str, ...]:
    """Disjoint IPv4 networks, sorted as the compiler gives them: often adjacent, sometimes at
    the ends of the address space."""
    base = draw(st.sampled_from([0, 10 << 24, (255 << 24) | (255 << 16) | (255 << 8)]))
    chosen: list[ipaddress.IPv4Network] = []
    for _ in range(draw(st.integers(0, 12))):
        plen = draw(st.integers(24, 32))
        offset = draw(st.integers(0, 63)) << (32 - plen)
        net = ipaddress.IPv4Network(((base + offset) % (1 << 32), plen), strict=False)
        if not any(net.overlaps(other) for other in chosen):
            chosen.append(net)
    return tuple(str(n) for n in sorted(chosen))


def _same(a: Elements, b: Elements) -> None:
    assert a.members == b.members
    assert a.digest == b.digest
    assert a.prefixes == b.prefixes
    assert a.spans == b.spans
    assert a == b


@settings(max_examples=400)
@given(v4_networks(), st.data(), st.booleans())
def test_local_change_equals_a_rebuild(universe: tuple[str, ...], data: st.DataObject,
                                       hosts: bool) -> None:
    if hosts:
        universe = tuple(n for n in universe if n.endswith("/32"))
    old = tuple(n for n in universe if data.draw(st.booleans()))
    new = tuple(n for n in universe if data.draw(st.booleans()))
    before = Elements.build(4, hosts, old)
    old_members = set(before.members)
    change = before.change(new)
    assert change is not None  # disjoint networks, few changes: always local
    after, delta = before.take(change)
    _same(after, Elements.build(4, hosts, new))
    assert set(delta.removed) <= old_members and set(delta.added) <= after.members
    assert (old_members - set(delta.removed)) | set(delta.added) == after.members
    assert (delta.networks_removed, delta.networks_added) == (
        len(set(old) - set(new)), len(set(new) - set(old)))


@given(v4_networks(), v4_networks())
def test_overlapping_change_asks_for_a_rebuild(old: tuple[str, ...], new: tuple[str, ...]
                                                ) -> None:
    change = Elements.build(4, False, old).change(new)
    overlap = any(ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b))
                  for a in set(old) - set(new) for b in set(new) - set(old)) or any(
        ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b))
        for a in set(old) & set(new) for b in set(new) - set(old))
    if change is not None:  # a local change is only ever offered for disjoint networks
        assert not any(ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b))
                       for a in set(old) & set(new) for b in set(new) - set(old))
    elif not overlap:
        assert len(set(old) ^ set(new)) > 64


def test_taken_set_is_spent() -> None:
    before = Elements.build(4, False, ("10.0.0.0/24",))
    change = before.change(("10.0.0.0/24", "10.0.1.0/24"))
    assert change is not None
    after, delta = before.take(change)
    assert before.networks is None and before.change(("10.0.0.0/24",)) is None
    assert after.prefixes == [(10 << 24, (10 << 24) + 511)]  # merged into a /23
    # the prefix is replaced whole (start and end), as nft does: a kept start with a moved
    # end, or the reverse, is refused by the kernel in some cases
    assert len(delta.removed) == 2 and len(delta.added) == 2


def test_too_many_changes_ask_for_a_rebuild() -> None:
    before = Elements.build(4, False, ())
    many = tuple(f"10.{i}.0.0/16" for i in range(100))
    assert before.change(many) is None


@pytest.mark.parametrize(("networks", "expected"), [
    ((), [("0.0.0.0", True)]),
    (("0.0.0.0/0",), [("0.0.0.0", False)]),
    (("10.0.0.0/24",), [("0.0.0.0", True), ("10.0.0.0", False), ("10.0.1.0", True)]),
    (("255.255.255.255/32",), [("0.0.0.0", True), ("255.255.255.255", False)]),
    (("10.0.0.0/25", "10.0.0.128/25"), [("0.0.0.0", True), ("10.0.0.0", False),
                                         ("10.0.1.0", True)]),
])
def test_interval_elements_are_what_nft_sends(networks: tuple[str, ...],
                                              expected: list[tuple[str, bool]]) -> None:
    built = Elements.build(4, False, networks)
    want = [element(ipaddress.IPv4Address(a).packed, end) for a, end in expected]
    assert built.ordered() == want
    assert built.members == set(want)


def test_prefixes_merge_touching_networks_and_split_them_aligned() -> None:
    spans = parse_spans(4, ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"])
    assert [str(ipaddress.IPv4Network((f, 32 - (last - f).bit_length()))) for f, last in
            merge_spans(4, spans)] == ["10.0.1.0/24", "10.0.2.0/23"]
    with pytest.raises(ValueError, match="host bits"):
        parse_spans(4, ["10.0.0.1/24"])
    with pytest.raises(ValueError, match="host-only"):
        set_prefixes(4, True, ["10.0.0.0/24"])


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(22, 32)), max_size=30),
       st.sampled_from([0, 10 << 24, (255 << 24) | (255 << 16)]))
def test_merged_prefixes_are_the_fewest_covering_networks(picks: list[tuple[int, int]],
                                                          base: int) -> None:
    """The independent oracle: `ipaddress.collapse_addresses` (nested, equal and touching
    networks merged into the fewest aligned prefixes)."""
    nets = {ipaddress.IPv4Network(((base + (n << 8)) % (1 << 32), plen), strict=False)
            for n, plen in picks}
    want = [(int(n.network_address), int(n.broadcast_address))
            for n in ipaddress.collapse_addresses(nets)]
    assert merge_spans(4, parse_spans(4, [str(n) for n in nets])) == want


@given(st.lists(st.tuples(st.binary(min_size=4, max_size=4), st.booleans()), max_size=50))
def test_dumped_elements_are_cut_back_into_elements(items: list[tuple[bytes, bool]]) -> None:
    """`nfnetlink.split_attrs` gives the same elements by its regular expression (sizes known)
    as one by one, whatever bytes the keys hold."""
    from nodewall.backends.netlink import split_attrs
    from nodewall.backends.nftables.sets import element_sizes

    elements = [element(key, end) for key, end in items]
    data = b"".join(elements)
    assert split_attrs(data, element_sizes(4)) == elements
    assert split_attrs(data) == elements
    assert split_attrs(data + b"\x08\x00\x01\x00\x00\x00\x00\x00", element_sizes(4)) == [
        *elements, b"\x08\x00\x01\x00\x00\x00\x00\x00"]  # an unexpected size: cut one by one


@settings(max_examples=300)
@given(v4_networks())
def test_units_of_a_set_read_back_pair_as_built(networks: tuple[str, ...]) -> None:
    """A set read from the kernel (members only) groups its elements into the same units
    (start and end of each prefix) as the set built from its networks."""
    built = Elements.build(4, False, networks)
    assert Elements.from_dump(4, False, b"".join(built.members)).units() == built.units()


def test_units_of_an_edited_set_fall_back_to_single_elements() -> None:
    built = Elements.build(4, False, ("10.0.0.0/24", "10.0.2.0/24"))
    edited = set(built.members) - {element(ipaddress.IPv4Address("10.0.1.0").packed, True)}
    assert Elements.from_dump(4, False, b"".join(edited)).units() == {(e,) for e in edited}


@given(v4_networks(), st.randoms(use_true_random=False))
def test_a_dumped_set_equals_the_built_one_in_any_order(networks: tuple[str, ...],
                                                       rnd: Any) -> None:
    """The kernel dumps an interval set in reverse send order (one bytes comparison); any other
    order still compares by members; a missing element never compares equal."""
    built = Elements.build(4, False, networks)
    assert Elements.from_dump(4, False, b"".join(reversed(built.ordered()))) == built
    shuffled = list(built.ordered())
    rnd.shuffle(shuffled)
    dumped = Elements.from_dump(4, False, b"".join(shuffled))
    assert dumped == built and dumped.digest == built.digest
    assert Elements.from_dump(4, False, b"".join(shuffled[1:])) != built
