"""The conntrack cut: after an apply, delete the tracked flows the new policy would not admit.

Backend-neutral: it asks the reference evaluator, not a ruleset, whether each flow of the
current network namespace would be admitted as a new connection by the new `NodePolicy`, and
deletes the conntrack entry (both directions of the flow at once) of every flow that would not.
The next packet of a cut flow is then `ct state new` and meets the new ruleset: a TCP peer gets
a reset, a UDP peer an ICMP error.

Which flows: IPv4 and IPv6; TCP, UDP, ICMP/ICMPv6 (types of `ICMP_TYPES`) and ESP. Ingress
flows (original destination is an address of this node) are judged as new ingress packets;
egress flows (original source is ours) as new egress packets and cut only when refused whatever
the sending uid (conntrack does not record it). Loopback and forwarded flows (both ends ours, or
neither) are left alone, and so are TCP entries in TIME_WAIT or CLOSE (a new SYN on their tuple
starts a new flow anyway). So a management SSH session, still admitted, survives.

Mechanism: netlink, in-process; no subprocess, no shell. Sockets are opened at call time in
the network namespace of the calling thread (a netlink socket stays in the namespace it was
created in, and callers enter namespaces per thread). The ctnetlink socket is kept per thread
and namespace: closing one makes the kernel wait (about 16 ms), which each apply would pay.

1. ctnetlink (`NETLINK_NETFILTER`) `IPCTNL_MSG_CT_GET_STATS`: the namespace's entry count. At
   zero the cut ends here, in well under a millisecond.
2. `IPCTNL_MSG_CT_GET` dump, both families at once. The kernel walks its whole conntrack hash
   for it (one hash for all namespaces, `nf_conntrack_buckets`: 262144 on a 64-bit host with
   more than 4 GB), taking a lock per bucket: a dump costs about 12 ms however few entries this
   namespace holds, plus a few microseconds an entry (bench/conntrack_cut.py).
3. Entries are grouped by their original tuple without the source port (ICMP: id), which is all
   a verdict depends on; the first entry of each group is decoded and judged, with the node's
   own addresses from an `RTM_GETADDR` dump (`NETLINK_ROUTE`). Admitted groups are not decoded
   further.
4. `IPCTNL_MSG_CT_DELETE` of each entry of a refused group (TCP state checked first) by its
   original tuple as the kernel sent it, its zone, and its `CTA_ID`: the kernel deletes that
   very entry or nothing (an entry gone or replaced in the meantime is not counted). Deletes go
   in batches, each acknowledged.

It must never delete a flow the new policy admits. Nothing read from the kernel reaches a
command; what is sent back is only the kernel's own tuple attribute, zone and id.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from dataclasses import dataclass
from typing import NamedTuple

from nodewall.backends import netlink
from nodewall.backends.sockets import destroy_refused
from nodewall.net.family import AF as _AF
from nodewall.net.family import OF_AF as _FAMILIES
from nodewall.policy.evaluator import Packet, evaluate
from nodewall.policy.model import ICMP_TYPES, NodePolicy, Protocol

_NLATTR, _NLMSGHDR = netlink.NLATTR, netlink.NLMSGHDR
_HEAD = _NLMSGHDR.size + 4  # netlink header + nfgenmsg: where ctnetlink attributes start
_U16BE, _U32BE = struct.Struct(">H"), struct.Struct(">I")
_REQUEST_ACK = netlink.NLM_F_REQUEST | netlink.NLM_F_ACK

# --- ctnetlink (linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h) ---------------------------
_CT = 1 << 8  # NFNL_SUBSYS_CTNETLINK, in the high byte of the message type
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET_STATS = 1, 2, 5
CTA_TUPLE_ORIG, CTA_PROTOINFO, CTA_ID, CTA_ZONE = 1, 4, 12, 18
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE = 4, 5, 6
CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE = 7, 8, 9
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
CTA_STATS_GLOBAL_ENTRIES = 1
#: enum tcp_conntrack, by value
TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
              "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")
#: Tuple attributes of the source side that a verdict does not depend on.
_SOURCE_SIDE = {CTA_PROTO_SRC_PORT, CTA_PROTO_ICMP_ID, CTA_PROTO_ICMPV6_ID}

# --- rtnetlink (linux/rtnetlink.h, if_addr.h) -------------------------------------------------
RTM_NEWADDR, RTM_GETADDR = 20, 22
IFA_ADDRESS, IFA_LOCAL = 1, 2
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index

#: IP protocol number -> the policy's protocol name (ICMPv6 is "icmp" there).
_PROTOCOLS: dict[int, Protocol] = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp", 50: "esp"}

#: TCP entries that no longer carry a connection: a new SYN on their tuple starts a new flow,
#: which meets the ruleset as `ct state new`. They are left to expire.
_CLOSED = {"TIME_WAIT", "CLOSE"}

#: Deletes per sendmsg: every acknowledgement is an skb of its own, and they must all fit the
#: socket's receive buffer.
_DELETE_BATCH = 64

#: Seconds to wait for an answer before giving up with TimeoutError.
_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Flow:
    """The original-direction tuple of one conntrack entry, decoded."""

    family: int  # 4 or 6
    protocol: int  # IP protocol number
    src: str  # addresses as socket.inet_ntop writes them
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    state: str = ""  # TCP state (ESTABLISHED, TIME_WAIT, ...); empty for other protocols


class Entry(NamedTuple):
    """What it takes to delete one conntrack entry, and its TCP state."""

    family: int  # 4 or 6
    tuple_attr: bytes  # the CTA_TUPLE_ORIG attribute as the kernel sent it
    state: str  # as in Flow
    zone: int | None  # CTA_ZONE, present when not the default zone
    ct_id: int | None  # CTA_ID: tells this entry from a later one on the same tuple


class Cut(NamedTuple):
    """What a cut ended: conntrack entries deleted, and the node's own sockets destroyed (None
    when the kernel cannot destroy sockets: then only the entries went)."""

    flows: int
    sockets: int | None


def only_accepts_use(policy: NodePolicy, grown: set[str]) -> bool:
    """True when every rule naming one of the `grown` sets accepts: a change that only added
    networks to those sets then refuses no flow the old policy admitted (nothing to cut)."""
    return all(r.action == "accept" for r in policy.rules
               if r.src_set in grown or r.dst_set in grown)


#: What a change that only widens cuts.
NO_CUT = Cut(0, 0)


def cut_refused_flows(policy: NodePolicy) -> Cut:
    """End the flows `policy` refuses, in the calling thread's network namespace: first the
    node's own sockets of those flows (`nodewall.backends.sockets`: each peer gets a reset
    while the conntrack entry still lets it pass), then their conntrack entries."""
    nl = _ctnetlink()
    local: set[str] | None = None
    doomed: list[Entry] = []
    groups: dict[bytes, list[bytes]] = {}
    if entry_count(nl) != 0:
        for msg in nl.ask(_CT | IPCTNL_MSG_CT_GET, bytes(4), dump=True):  # AF_UNSPEC, v0
            key = verdict_key(msg)
            if key is not None:
                groups.setdefault(key, []).append(msg)
    if groups:
        local = local_addresses()
        for msgs in groups.values():
            first = parse_flow(msgs[0])
            if first is not None and refused(policy, first, local):
                entries = (parse_entry(msg) for msg in msgs)
                doomed += [e for e in entries if e is not None and e.state not in _CLOSED]
    # Judged before any socket goes: a destroyed TCP socket's reset moves its entry to CLOSE.
    mine = local if local is not None else local_addresses()

    def judge(family: int, protocol: int, src: str, dst: str, sport: int, dport: int) -> bool:
        return refused(policy, Flow(family, protocol, src, dst, sport, dport), mine)

    closed = destroy_refused(judge)
    return Cut(delete_entries(nl, doomed) if doomed else 0, closed)


_local = threading.local()


def _ctnetlink() -> netlink.Socket:
    """This thread's ctnetlink socket for its current network namespace, kept open: closing a
    NETLINK_NETFILTER socket waits for the kernel (about 16 ms here), which every apply would
    pay otherwise. Reopened when the thread has moved to another namespace."""
    netns = os.stat("/proc/thread-self/ns/net").st_ino
    sock: netlink.Socket | None = getattr(_local, "sock", None)
    if sock is None or getattr(_local, "netns", None) != netns:
        if sock is not None:
            sock.close()
        sock = _local.sock = netlink.Socket(netlink.NETLINK_NETFILTER)
        _local.netns = netns
    return sock


def refused(policy: NodePolicy, flow: Flow, local: set[str]) -> bool:
    """True when the new policy would not admit this flow as a new connection."""
    protocol = _PROTOCOLS.get(flow.protocol)
    if protocol is None:
        return False
    src_local, dst_local = flow.src in local, flow.dst in local
    if src_local == dst_local:  # loopback traffic, or forwarded
        return False
    icmp_type = None
    if protocol == "icmp":
        names = {code: name for name, code in ICMP_TYPES[flow.family].items()}
        icmp_type = names.get(flow.icmp_type if flow.icmp_type is not None else -1)
        if icmp_type is None:
            return False
    dport = flow.dport if protocol in ("tcp", "udp") else None
    if dst_local:
        packet = Packet(flow.src, flow.dst, protocol, dport, "in", icmp_type)
        return evaluate(policy, packet).action != "accept"
    verdicts = {evaluate(policy, Packet(flow.src, flow.dst, protocol, dport, "out", icmp_type,
                                        uid)).action for uid in (None, 0)}
    return "accept" not in verdicts


# --- attribute spans ---------------------------------------------------------------------


def _attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """The attributes in data[start:end]: type -> (payload start, payload end)."""
    found = {}
    while start + 4 <= end:
        length, kind = _NLATTR.unpack_from(data, start)
        if length < 4:
            break
        found[kind & netlink.NLA_TYPE_MASK] = (start + 4, start + length)
        start += (length + 3) & ~3
    return found



# --- ctnetlink -------------------------------------------------------------------------------


def entry_count(nl: netlink.Socket) -> int | None:
    """The number of conntrack entries of the socket's namespace; None when the kernel does
    not say (the caller then dumps)."""
    seq, msg = nl.message(_CT | IPCTNL_MSG_CT_GET_STATS, netlink.NLM_F_REQUEST, bytes(4))
    nl.sock.send(msg)
    for rtype, rseq, data in nl.replies():
        if rseq == seq:
            span = None if rtype == netlink.NLMSG_ERROR else _attrs(data, _HEAD, len(data)).get(
                CTA_STATS_GLOBAL_ENTRIES)
            return None if span is None else int(_U32BE.unpack_from(data, span[0])[0])
    raise AssertionError("unreachable: replies() does not end")


def _tuple_span(msg: bytes) -> tuple[int, int] | None:
    """Where the CTA_TUPLE_ORIG attribute (header included) of an entry message is: first,
    as the kernel writes it, else wherever."""
    if len(msg) >= _HEAD + 4:
        length, kind = _NLATTR.unpack_from(msg, _HEAD)
        if kind & netlink.NLA_TYPE_MASK == CTA_TUPLE_ORIG and length >= 4:
            return _HEAD, _HEAD + length
    span = _attrs(msg, _HEAD, len(msg)).get(CTA_TUPLE_ORIG)
    return None if span is None else (span[0] - 4, span[1])


def verdict_key(msg: bytes) -> bytes | None:
    """What the verdict on an entry message depends on, as bytes: its family and original
    tuple without the source port or ICMP id. Cheap: no decoding beyond attribute headers."""
    span = _tuple_span(msg)
    if span is None:
        return None
    parts = [msg[_NLMSGHDR.size : _NLMSGHDR.size + 1]]
    pos, end = span[0] + 4, span[1]
    while pos + 4 <= end:
        length, kind = _NLATTR.unpack_from(msg, pos)
        if length < 4:
            break
        if kind & netlink.NLA_TYPE_MASK == CTA_TUPLE_PROTO:
            inner, stop = pos + 4, pos + length
            while inner + 4 <= stop:
                size, what = _NLATTR.unpack_from(msg, inner)
                if size < 4:
                    break
                if what & netlink.NLA_TYPE_MASK not in _SOURCE_SIDE:
                    parts.append(msg[inner : inner + size])
                inner += (size + 3) & ~3
        else:
            parts.append(msg[pos : pos + length])
        pos += (length + 3) & ~3
    return b"".join(parts)


def parse_entry(msg: bytes) -> Entry | None:
    """The deletion handle and TCP state of one ctnetlink entry message (header included);
    None without an original tuple or family. One pass over the top-level attributes."""
    family = _FAMILIES.get(msg[_NLMSGHDR.size]) if len(msg) > _HEAD else None
    if family is None:
        return None
    orig, info, zone, ct_id = b"", None, None, None
    pos, end = _HEAD, len(msg)
    while pos + 4 <= end:
        length, kind = _NLATTR.unpack_from(msg, pos)
        if length < 4:
            break
        kind &= netlink.NLA_TYPE_MASK
        if kind == CTA_TUPLE_ORIG:
            orig = msg[pos : pos + length]
        elif kind == CTA_PROTOINFO:
            info = (pos + 4, pos + length)
        elif kind == CTA_ID and length == 8:
            ct_id = int(_U32BE.unpack_from(msg, pos + 4)[0])
        elif kind == CTA_ZONE and length == 6:
            zone = int(_U16BE.unpack_from(msg, pos + 4)[0])
        pos += (length + 3) & ~3
    if not orig:
        return None
    state = ""
    if info is not None:  # TCP only
        tcp = _attrs(msg, *info).get(CTA_PROTOINFO_TCP)
        at = _attrs(msg, *tcp).get(CTA_PROTOINFO_TCP_STATE) if tcp is not None else None
        if at is not None and msg[at[0]] < len(TCP_STATES):
            state = TCP_STATES[msg[at[0]]]
    return Entry(family, orig, state, zone, ct_id)


def parse_flow(msg: bytes) -> Flow | None:
    """One ctnetlink entry message (header included) as a Flow; None when it has no original
    tuple of IPv4 or IPv6 addresses and a protocol number."""
    entry = parse_entry(msg)
    if entry is None:
        return None
    raw, v6 = entry.tuple_attr, entry.family == 6
    tup = _attrs(raw, 4, len(raw))
    ip, proto = tup.get(CTA_TUPLE_IP), tup.get(CTA_TUPLE_PROTO)
    if ip is None or proto is None:
        return None
    addrs = _attrs(raw, *ip)
    src, dst = addrs.get(CTA_IP_V6_SRC if v6 else CTA_IP_V4_SRC), addrs.get(
        CTA_IP_V6_DST if v6 else CTA_IP_V4_DST)
    fields = _attrs(raw, *proto)
    u8 = {kind: raw[at[0]] for kind, at in fields.items() if at[1] - at[0] == 1}
    u16 = {kind: int(_U16BE.unpack_from(raw, at[0])[0]) for kind, at in fields.items()
           if at[1] - at[0] == 2}
    number = u8.get(CTA_PROTO_NUM)
    if src is None or dst is None or number is None:
        return None
    af = _AF[entry.family]
    return Flow(
        entry.family, number,
        socket.inet_ntop(af, raw[src[0] : src[1]]), socket.inet_ntop(af, raw[dst[0] : dst[1]]),
        sport=u16.get(CTA_PROTO_SRC_PORT), dport=u16.get(CTA_PROTO_DST_PORT),
        icmp_type=u8.get(CTA_PROTO_ICMPV6_TYPE if v6 else CTA_PROTO_ICMP_TYPE),
        icmp_code=u8.get(CTA_PROTO_ICMPV6_CODE if v6 else CTA_PROTO_ICMP_CODE),
        icmp_id=u16.get(CTA_PROTO_ICMPV6_ID if v6 else CTA_PROTO_ICMP_ID),
        state=entry.state,
    )


def delete_entries(nl: netlink.Socket, entries: list[Entry]) -> int:
    """Delete these entries, each by its original tuple, zone and id; the number deleted (an
    entry already gone, or replaced by a new one on its tuple, is skipped)."""
    deleted = 0
    for first in range(0, len(entries), _DELETE_BATCH):
        pending: set[int] = set()
        batch = bytearray()
        for entry in entries[first : first + _DELETE_BATCH]:
            payload = bytes([_AF[entry.family], 0, 0, 0]) + netlink.attr(
                CTA_TUPLE_ORIG | netlink.NLA_F_NESTED, entry.tuple_attr[4:])
            if entry.zone is not None:
                payload += netlink.attr(CTA_ZONE, _U16BE.pack(entry.zone))
            if entry.ct_id is not None:
                payload += netlink.attr(CTA_ID, _U32BE.pack(entry.ct_id))
            seq, msg = nl.message(_CT | IPCTNL_MSG_CT_DELETE, _REQUEST_ACK, payload)
            pending.add(seq)
            batch += msg
        nl.sock.send(batch)
        for rtype, seq, data in nl.replies():
            if rtype != netlink.NLMSG_ERROR or seq not in pending:
                continue
            pending.discard(seq)
            code = netlink.error_code(data)
            if code == 0:
                deleted += 1
            elif code != errno.ENOENT:
                raise netlink.NetlinkError(code, detail="conntrack delete failed")
            if not pending:
                break
    return deleted


# --- rtnetlink -------------------------------------------------------------------------------


def local_addresses() -> set[str]:
    """The addresses of the calling thread's network namespace (every interface, both
    families), as socket.inet_ntop writes them."""
    found = set()
    with netlink.Socket(netlink.NETLINK_ROUTE) as rt:
        for msg in rt.ask(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0),
                          dump=True):
            af = msg[_NLMSGHDR.size]
            if _NLMSGHDR.unpack_from(msg)[1] != RTM_NEWADDR or af not in _FAMILIES:
                continue
            attrs = _attrs(msg, _NLMSGHDR.size + _IFADDRMSG.size, len(msg))
            span = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)  # IFA_LOCAL: IPv4 p2p
            if span is not None:
                found.add(socket.inet_ntop(af, msg[span[0] : span[1]]))
    return found
