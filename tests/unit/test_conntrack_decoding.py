"""The decoding of ctnetlink messages by the conntrack cut (`nodewall.backends.conntrack`), on
messages built here: no kernel needed (the cut itself: tests/kernel/test_conntrack_netlink.py)."""

from __future__ import annotations

import socket
import struct

import pytest

from nodewall.backends import conntrack
from nodewall.backends.conntrack import Flow


def _attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), kind | (0x8000 if nested else 0))
    return head + payload + bytes(-len(payload) % 4)


def _entry(family: int, ip: bytes, proto: bytes, *extra: bytes) -> bytes:
    orig = _attr(1, _attr(1, ip, True) + _attr(2, proto, True), True)
    body = bytes([family, 0, 0, 0]) + orig + b"".join(extra)
    return struct.pack("=IHHII", 16 + len(body), 0x100, 2, 1, 0) + body


def test_decoding_of_tcp_and_icmpv6_entries() -> None:
    src6, dst6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1"), socket.inet_pton(
        socket.AF_INET6, "2001:db8::2")
    icmp6 = _entry(socket.AF_INET6, _attr(3, src6) + _attr(4, dst6),
                   _attr(1, b"\x3a") + _attr(7, b"\x12\x34") + _attr(8, b"\x80")
                   + _attr(9, b"\x00"), _attr(12, struct.pack(">I", 77)),
                   _attr(18, struct.pack(">H", 5)))
    flow = conntrack.parse_flow(icmp6)
    assert flow == Flow(6, 58, "2001:db8::1", "2001:db8::2", icmp_type=128, icmp_code=0,
                        icmp_id=0x1234)
    entry = conntrack.parse_entry(icmp6)
    assert entry is not None and (entry.zone, entry.ct_id, entry.state) == (5, 77, "")

    def tcp4(sport: int, state: int, dport: int = 5432) -> bytes:
        ip = _attr(1, bytes([198, 51, 100, 7])) + _attr(2, bytes([10, 0, 0, 1]))
        proto = _attr(1, b"\x06") + _attr(2, struct.pack(">H", sport)) + _attr(
            3, struct.pack(">H", dport))
        info = _attr(4, _attr(1, _attr(1, bytes([state])), True), True)
        return _entry(socket.AF_INET, ip, proto, _attr(3, bytes(4)), info)

    a, b = tcp4(40000, 3), tcp4(40001, 7)
    assert conntrack.parse_flow(a) == Flow(4, 6, "198.51.100.7", "10.0.0.1", 40000, 5432,
                                           state="ESTABLISHED")
    closed = conntrack.parse_entry(b)
    assert closed is not None and closed.state == "TIME_WAIT" and closed.ct_id is None
    # the source port does not take part in a verdict; the destination port does
    assert conntrack.verdict_key(a) == conntrack.verdict_key(b)
    assert conntrack.verdict_key(a) != conntrack.verdict_key(tcp4(40000, 3, dport=5433))
    assert conntrack.verdict_key(icmp6) != conntrack.verdict_key(a)


@pytest.mark.parametrize("message", [b"", bytes(20), bytes(64)])
def test_decoding_of_junk_is_none(message: bytes) -> None:
    assert conntrack.parse_flow(message) is None
    assert conntrack.verdict_key(message) is None
