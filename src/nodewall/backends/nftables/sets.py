"""The elements of one nft address set as the kernel holds them, built whole or changed locally.

An interval set holds what `nft` sends for a list of prefixes: an end key at address zero unless
the first prefix starts there, then per prefix a start key and an end key (flagged) at the
address after it (none after the top address). A plain set (cluster peers) holds one key per
address. Each element is kept as the attribute bytes the kernel dumps for it, so that a set read
back from the kernel compares with one built here by plain equality.

`Elements` also keeps what the elements were made from: the networks, parsed into sorted spans,
and the prefixes they merge and split into (`nftrender.set_prefixes`). When the next policy
changes a few networks of a set, `Elements.change` and `take` recompute only the runs of
prefixes those networks touch and give the element deltas to send, instead of re-parsing
thousands of networks: this is what keeps a one-entry ip_filter update within milliseconds.
"""

from __future__ import annotations

import array
import bisect
import operator
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import ne

from nodewall.backends.netlink import attr, split_attrs, u32
from nodewall.backends.nftables.render import merge_spans, parse_spans
from nodewall.net.family import BYTES

KEY_SIZE = BYTES  # family -> key bytes
_ELEM_END = u32(3, 1)  # NFT_SET_ELEM_INTERVAL_END
# An element is kept whole, as the list item the kernel dumps: NFTA_LIST_ELEM { NFTA_SET_ELEM_KEY
# { NFTA_DATA_VALUE key } [, NFTA_SET_ELEM_FLAGS interval-end] }; here the bytes before the key.
_HEAD = {size: attr(1, attr(1, attr(1, bytes(size))))[:12] for size in (1, 2, 4, 16)}
_END_HEAD = {size: attr(1, attr(1, attr(1, bytes(size))) + _ELEM_END)[:12]
             for size in (1, 2, 4, 16)}
_MASK64 = (1 << 64) - 1
_LOCAL_LIMIT = 64  # more changed networks than this: rebuild the set


def element(key: bytes, end: bool = False) -> bytes:
    """One element as the list item the kernel dumps (key, and the interval-end flag); keys of
    1 and 2 bytes are padded as attributes are."""
    pad = b"\0" * (-len(key) % 4)
    return (_END_HEAD[len(key)] + key + pad + _ELEM_END) if end else _HEAD[len(key)] + key + pad


def element_sizes(key_size: int) -> tuple[int, ...]:
    """The byte sizes elements of a set with keys of this size come in (start, end)."""
    if key_size <= 0:
        return ()
    start = len(element(bytes(key_size)))
    return start, start + len(_ELEM_END)


def _prefix_elements(size: int, prefixes: Sequence[tuple[int, int]]) -> list[bytes]:
    """Per prefix its start element and, unless it ends at the top address, its end element;
    keys packed in bulk."""
    if not prefixes:
        return []
    firsts, lasts = [f for f, _ in prefixes], [last for _, last in prefixes]
    top = (1 << (size * 8)) - 1
    ends_at_top = lasts[-1] == top
    starts = list(map(_HEAD[size].__add__, _packed(size, firsts)))
    end_keys = _packed(size, [last + 1 for last in (lasts[:-1] if ends_at_top else lasts)])
    ends = [_END_HEAD[size] + key + _ELEM_END for key in end_keys]
    out: list[bytes] = [b""] * (len(starts) + len(ends))
    out[0::2] = starts
    out[1::2] = ends
    return out


def _packed(size: int, values: Sequence[int]) -> list[bytes]:
    """Each value as a big-endian key of `size` bytes."""
    if size == 4:
        packed = array.array("I", values)
        if sys.byteorder == "little":
            packed.byteswap()
        raw = packed.tobytes()
        return [raw[i:i + 4] for i in range(0, len(raw), 4)]
    return [value.to_bytes(size, "big") for value in values]


def _units(size: int, prefixes: Sequence[tuple[int, int]]) -> list[tuple[bytes, ...]]:
    """Per prefix its elements (start, and end unless at the top) as one unit: what is deleted
    or added together, as nft does. Changing only the elements that differ is refused by the
    kernel in some cases (an end key kept while the start before it is replaced: EEXIST)."""
    elements = _prefix_elements(size, prefixes)
    top = (1 << (size * 8)) - 1
    units: list[tuple[bytes, ...]] = []
    i = 0
    for _, last in prefixes:
        if last == top:
            units.append((elements[i],))
            i += 1
        else:
            units.append((elements[i], elements[i + 1]))
            i += 2
    return units


def _pair_units(size: int, members: set[bytes]) -> set[tuple[bytes, ...]]:
    """The units of an interval set read from the kernel: the i-th start key pairs with the
    i-th end key once both are sorted (prefixes are disjoint), after the zero end key, which
    stands alone; a start at the top address has no end. Checked: each pair in order and
    before the next start; if not (a set edited behind nodewall's back), every element is a
    unit of its own, which still gives a correct, if larger, delta."""
    start_len = len(_HEAD[size]) + size
    starts = sorted(e for e in members if len(e) == start_len)  # one head: sorted by key
    ends = sorted(e for e in members if len(e) != start_len)
    units: set[tuple[bytes, ...]] = set()
    zero = _zero_end(size)
    if ends and ends[0] == zero:
        units.add((zero,))
        ends = ends[1:]
    start_keys = [e[12:] for e in starts]
    end_keys = [e[12:12 + size] for e in ends]
    top = len(starts) == len(ends) + 1  # the last prefix ends at the top address
    paired = starts[:-1] if top else starts
    if (len(paired) == len(ends) and all(len(e) == start_len + 8 for e in ends)
            and all(map(operator.lt, start_keys[:len(ends)], end_keys))
            and all(map(operator.le, end_keys, start_keys[1:]))):
        units.update(zip(paired, ends, strict=True))
        if top:
            units.add((starts[-1],))
        return units
    return {(e,) for e in members}


def unit_delta(size: int, old: set[tuple[bytes, ...]], new: set[tuple[bytes, ...]]) -> Delta:
    """The elements of the units only in `old` (to delete) and only in `new` (to add), each in
    the order nft sends them. An element can be in both (an end key shared by the old and the
    new prefix): it is deleted and added again in the same transaction."""
    order = _send_order(size)
    return Delta(sorted((e for unit in old - new for e in unit), key=order),
                 sorted((e for unit in new - old for e in unit), key=order), 0, 0)


def _zero_end(size: int) -> bytes:
    return _END_HEAD[size] + bytes(size) + _ELEM_END


def _send_order(size: int) -> Callable[[bytes], tuple[bytes, int]]:
    """Sort key of elements in the order `nft` sends them: by key, an end before a start."""
    return lambda e: (e[12:12 + size], -len(e))


def _same_dump(dumped: Elements, built: Elements) -> bool:
    """True when `dumped` is the kernel's dump of exactly `built` (an interval set comes back
    in the reverse of the order nft sends it; anything else is compared element-wise)."""
    return (dumped._dumped is not None and built._ordered is not None
            and dumped._dumped == b"".join(reversed(built._ordered)))


def _digest(elements: Iterable[bytes]) -> int:
    return sum(map(zlib.crc32, elements))


@dataclass
class Delta:
    """What one set's change sends, and the networks behind it."""

    removed: list[bytes]
    added: list[bytes]
    networks_removed: int
    networks_added: int


@dataclass(frozen=True)
class Change:
    """A checked local change of one set: its new networks, the spans leaving and coming."""

    networks: tuple[str, ...]
    gone: list[tuple[int, int]]
    new: list[tuple[int, int]]


class Elements:
    """A set's elements (see the module docstring). Equal when the members are equal. A set
    read from the kernel keeps the dump as it came: an interval set is dumped in exactly the
    reverse of the order nft sends it, so comparing it with a built set is one comparison of
    bytes; members are cut out of the dump only when something needs them."""

    __slots__ = (
        "_digest",
        "_dumped",
        "_members",
        "_ordered",
        "family",
        "hosts_only",
        "networks",
        "prefixes",
        "spans",
    )

    def __init__(self, family: int, hosts_only: bool, members: set[bytes] | None,
                 networks: tuple[str, ...] | None = None,
                 spans: list[tuple[int, int]] | None = None,
                 prefixes: list[tuple[int, int]] | None = None) -> None:
        self.family, self.hosts_only, self._members = family, hosts_only, members
        self._digest: int | None = None
        self._dumped: bytes | None = None
        self.networks, self.spans, self.prefixes = networks, spans, prefixes
        self._ordered: list[bytes] | None = None

    @property
    def members(self) -> set[bytes]:
        if self._members is None:
            sizes = element_sizes(KEY_SIZE[self.family])
            self._members = set(split_attrs(self._dumped or b"", sizes))
        return self._members

    @property
    def digest(self) -> int:
        """Order-free: a sum of the elements' CRCs (for the version rule's record)."""
        if self._digest is None:
            self._digest = _digest(self.members) & _MASK64
        return self._digest

    @classmethod
    def build(cls, family: int, hosts_only: bool, networks: tuple[str, ...]) -> Elements:
        spans = parse_spans(family, networks)
        size = KEY_SIZE[family]
        if hosts_only:
            if any(first != last for first, last in spans):
                raise ValueError(f"a host-only set holds a network: {networks}")
            head = _HEAD[size]
            ordered = [head + first.to_bytes(size, "big") for first, _ in spans]
            prefixes = spans
        else:
            prefixes = merge_spans(family, spans)
            ordered = _prefix_elements(size, prefixes)
            if not prefixes or prefixes[0][0] != 0:
                ordered.insert(0, _zero_end(size))
        built = cls(family, hosts_only, set(ordered), networks, spans, prefixes)
        built._ordered = ordered
        return built

    @classmethod
    def from_dump(cls, family: int, hosts_only: bool, dumped: bytes) -> Elements:
        """Elements as the kernel dumped them: the element list attributes, back to back."""
        read = cls(family, hosts_only, None)
        read._dumped = dumped
        return read

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Elements):
            return NotImplemented
        if self is other or _same_dump(self, other) or _same_dump(other, self):
            return True
        return len(self.members) == len(other.members) and self.members == other.members

    def __len__(self) -> int:
        return len(self.members)

    def ordered(self) -> list[bytes]:
        """The elements in the order `nft` sends them."""
        if self._ordered is None:
            self._ordered = sorted(self.members, key=_send_order(KEY_SIZE[self.family]))
        return self._ordered

    def units(self) -> set[tuple[bytes, ...]]:
        """The elements grouped as `_units` groups them (the zero end key alone). For a set read
        from the kernel, by pairing each start key with the end key that follows it; an
        element that pairs with nothing is a unit of its own."""
        size = KEY_SIZE[self.family]
        if self.hosts_only:
            return {(e,) for e in self.members}
        if self.prefixes is not None:
            units = set(_units(size, self.prefixes))
            if _zero_end(size) in self.members:
                units.add((_zero_end(size),))
            return units
        return _pair_units(size, self.members)

    def issubset(self, other: Elements) -> bool:
        return self.members <= other.members

    def change(self, networks: tuple[str, ...]) -> Change | None:
        """How this set would come to hold `networks` by a local change: the networks that
        differ, checked to apply cleanly; None when a rebuild is needed (too many changes, or
        nothing known of the networks). Changes nothing."""
        if self.networks is None or self.spans is None or self.prefixes is None:
            return None
        removed, added = _differences(self.networks, networks)
        if len(removed) + len(added) > _LOCAL_LIMIT:
            return None
        try:
            gone, new = parse_spans(self.family, removed), parse_spans(self.family, added)
        except ValueError:
            return None
        if self.hosts_only and any(first != last for first, last in new):
            return None
        spans, leaving = self.spans, set(gone)
        for span in gone:
            i = bisect.bisect_left(spans, span)
            if i == len(spans) or spans[i] != span:
                return None
        for k, (first, last) in enumerate(new):
            if k and new[k - 1][1] >= first:
                return None
            i = bisect.bisect_left(spans, (first, last))
            for near in spans[max(i - 1, 0):i + 1]:
                if near not in leaving and near[0] <= last and first <= near[1]:
                    return None  # overlaps a span that stays
        return Change(networks, gone, new)

    def take(self, change: Change) -> tuple[Elements, Delta]:
        """This set changed by `change` (from `change()`), and what to send for it. The new
        object takes over this one's lists and members: this one must not be used again."""
        spans = self.spans
        assert spans is not None
        for span in change.gone:
            del spans[bisect.bisect_left(spans, span)]
        for span in change.new:
            bisect.insort(spans, span)
        size = KEY_SIZE[self.family]
        if not change.gone and not change.new:
            delta = Delta([], [], 0, 0)
        elif self.hosts_only:
            head = _HEAD[size]
            delta = Delta([head + f.to_bytes(size, "big") for f, _ in change.gone],
                          [head + f.to_bytes(size, "big") for f, _ in change.new], 0, 0)
        else:
            delta = self._relink(spans, [*change.gone, *change.new], size)
        delta.networks_removed, delta.networks_added = len(change.gone), len(change.new)
        members = self.members
        digest = self.digest
        members.difference_update(delta.removed)
        members.update(delta.added)
        result = Elements.__new__(Elements)
        result.family, result.hosts_only, result._members = self.family, self.hosts_only, members
        result._digest = (digest - _digest(delta.removed) + _digest(delta.added)) & _MASK64
        result._dumped = None
        result.networks, result.spans, result.prefixes = change.networks, spans, self.prefixes
        result._ordered = None
        self._members, self.spans, self.prefixes, self.networks = set(), None, None, None
        self._ordered = None
        self._digest = -1
        return result, delta

    def _relink(self, spans: list[tuple[int, int]], changed: Sequence[tuple[int, int]],
                size: int) -> Delta:
        """Re-merge the runs of `spans` (already changed) around the changed networks and
        replace the matching prefixes; the element deltas."""
        prefixes = self.prefixes
        assert prefixes is not None
        lo = min(first for first, _ in changed)
        hi = max(last for _, last in changed)
        while True:  # widen [lo, hi] until no run of the old or new layout crosses it
            wider = _widen(spans, lo, hi)
            wider = _widen(prefixes, *wider)
            if wider == (lo, hi):
                break
            lo, hi = wider
        a = bisect.bisect_left(prefixes, (lo, -1))
        b = bisect.bisect_right(prefixes, (hi, 1 << 129))
        c = bisect.bisect_left(spans, (lo, -1))
        d = bisect.bisect_right(spans, (hi, 1 << 129))
        old_window = prefixes[a:b]
        new_window = merge_spans(self.family, spans[c:d])
        zero_before = not prefixes or prefixes[0][0] != 0
        prefixes[a:b] = new_window
        zero_after = not prefixes or prefixes[0][0] != 0
        old_units = set(_units(size, old_window))
        new_units = set(_units(size, new_window))
        if zero_before != zero_after:
            (old_units if zero_before else new_units).add((_zero_end(size),))
        return unit_delta(size, old_units, new_units)


def _widen(items: list[tuple[int, int]], lo: int, hi: int) -> tuple[int, int]:
    """[lo, hi] widened over the sorted, disjoint items that overlap or touch it."""
    i = bisect.bisect_left(items, (lo, -1))
    if i > 0 and items[i - 1][1] + 1 >= lo:
        i -= 1
    j = bisect.bisect_right(items, (hi + 1, 1 << 129))
    if i < j:
        lo, hi = min(lo, items[i][0]), max(hi, items[j - 1][1])
    return lo, hi


def _differences(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The networks only in `old` and only in `new`. Both are sorted in practice, so the common
    head and tail are skipped first (compared pairwise in C) and only the middle is diffed."""
    if old == new:
        return [], []
    unequal = list(map(ne, old, new))
    head = unequal.index(True) if True in unequal else len(unequal)
    unequal = list(map(ne, reversed(old[head:]), reversed(new[head:])))
    tail = unequal.index(True) if True in unequal else len(unequal)
    old_mid, new_mid = old[head:len(old) - tail], new[head:len(new) - tail]
    return sorted(set(old_mid) - set(new_mid)), sorted(set(new_mid) - set(old_mid))
