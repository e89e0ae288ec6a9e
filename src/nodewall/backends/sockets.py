"""Closing this node's own sockets of refused flows: the half of a cut that conntrack cannot do.

Deleting a flow's conntrack entry is not enough when the node speaks next: the server's next
packet leaves through the output chain, conntrack re-creates the flow from the node's side, and
the client's answers then match `established` (a revoked psql session busy in a long query kept
working). So before the conntrack entries go, every connected TCP and UDP socket of the calling
thread's network namespace whose flow the new policy refuses is destroyed over sock_diag
(`SOCK_DESTROY`, what `ss -K` does): the kernel aborts it (the application's next call fails
with ECONNABORTED) and, for TCP, sends the peer a reset while the conntrack entry still exists,
so the reset passes the output chain as part of the established flow.

What is judged: each socket as the flow it carries. A socket whose local port is also held by a
listening TCP socket or an unconnected UDP socket carries an ingress flow (remote -> local port),
any other an egress flow (local -> remote port). The caller's `judge` says whether the new
policy refuses that flow (the conntrack cut's own judgement, `nodewall.backends.conntrack`).

It must never destroy a listener or an unconnected UDP socket (that would stop the database
itself). The kernel finds the socket to destroy by its tuple, and that lookup can fall back to a
listener; so only connected sockets are judged, and each destroy request carries the socket's
cookie from the dump: the kernel refuses (ESTALE) to destroy any other socket. A socket gone in
the meantime (ENOENT) is not counted. Where the kernel lacks SOCK_DESTROY
(CONFIG_INET_DIAG_DESTROY unset: EOPNOTSUPP), nothing is destroyed and `destroy_refused` says so
by returning None; the cut then deletes the conntrack entries only (docs/kernel-contract.md).
Nothing read from the kernel reaches a command; only the kernel's own socket id is sent back.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable

from nodewall.backends import netlink

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY, SOCK_DESTROY = 20, 21
#: TCP states (include/net/tcp_states.h) as bits of inet_diag_req_v2.idiag_states
_ESTABLISHED, _SYN_SENT, _SYN_RECV, _FIN_WAIT1, _FIN_WAIT2 = 1, 2, 3, 4, 5
_CLOSE, _CLOSE_WAIT, _LAST_ACK, _LISTEN, _CLOSING = 7, 8, 9, 10, 11
_CONNECTED_TCP = sum(1 << s for s in (_ESTABLISHED, _SYN_SENT, _SYN_RECV, _FIN_WAIT1,
                                      _FIN_WAIT2, _CLOSE_WAIT, _LAST_ACK, _CLOSING))
#: A UDP socket reports ESTABLISHED when connected, CLOSE when not.
_CONNECTED_UDP, _UNCONNECTED_UDP = 1 << _ESTABLISHED, 1 << _CLOSE
_PROTOCOLS = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}

_REQ = struct.Struct("=BBBBI")  # family, protocol, ext, pad, states
_ID = struct.Struct(">HH16s16s")  # sport, dport, src, dst (network order)
_ID_TAIL = struct.Struct("=III")  # interface, cookie[2] (host order)
_MSG_HEAD = struct.Struct("=BBBB")  # family, state, timer, retrans
_ID_SIZE = _ID.size + _ID_TAIL.size
_V4_MAPPED = bytes(10) + b"\xff\xff"

#: (family, protocol, source, destination, source port, destination port) -> refused?
Judge = Callable[[int, int, str, str, int, int], bool]


def destroy_refused(judge: Judge) -> int | None:
    """Destroy every connected socket whose flow `judge` refuses; the number destroyed, or
    None when the kernel cannot destroy sockets."""
    destroyed = 0
    with netlink.Socket(NETLINK_SOCK_DIAG) as nl:
        for protocol, connected, listening in (
                (socket.IPPROTO_TCP, _CONNECTED_TCP, 1 << _LISTEN),
                (socket.IPPROTO_UDP, _CONNECTED_UDP, _UNCONNECTED_UDP)):
            for family in (socket.AF_INET, socket.AF_INET6):
                served = {sport for sport, *_ in _dump(nl, family, protocol, listening)}
                for sport, dport, src, dst, sock_id in _dump(nl, family, protocol, connected):
                    fam, local, remote = _addresses(family, src, dst)
                    if sport in served:  # remote -> the node's service port
                        refused = judge(fam, protocol, remote, local, dport, sport)
                    else:  # the node -> a remote port
                        refused = judge(fam, protocol, local, remote, sport, dport)
                    if not refused:
                        continue
                    done = _destroy(nl, family, protocol, sock_id)
                    if done is None:
                        return None
                    destroyed += done
    return destroyed


def _dump(nl: netlink.Socket, family: int, protocol: int,
          states: int) -> list[tuple[int, int, bytes, bytes, bytes]]:
    """(local port, remote port, local address, remote address, socket id as the kernel wrote
    it) of each socket of `family` and `protocol` in one of `states`."""
    request = _REQ.pack(family, protocol, 0, 0, states) + bytes(_ID_SIZE)
    found = []
    head = netlink.NLMSGHDR.size
    for msg in nl.ask(SOCK_DIAG_BY_FAMILY, request, dump=True):
        if len(msg) < head + _MSG_HEAD.size + _ID_SIZE or msg[head] != family:
            continue
        start = head + _MSG_HEAD.size
        sport, dport, src, dst = _ID.unpack_from(msg, start)
        found.append((sport, dport, src, dst, msg[start:start + _ID_SIZE]))
    return found


def _addresses(family: int, src: bytes, dst: bytes) -> tuple[int, str, str]:
    """The flow's family and (local, remote) addresses as inet_ntop writes them; an IPv6
    socket speaking IPv4 (v4-mapped addresses) carries an IPv4 flow."""
    if family == socket.AF_INET:
        return 4, socket.inet_ntop(family, src[:4]), socket.inet_ntop(family, dst[:4])
    if src.startswith(_V4_MAPPED) and dst.startswith(_V4_MAPPED):
        return 4, socket.inet_ntop(socket.AF_INET, src[12:]), socket.inet_ntop(
            socket.AF_INET, dst[12:])
    return 6, socket.inet_ntop(family, src), socket.inet_ntop(family, dst)


def _destroy(nl: netlink.Socket, family: int, protocol: int, sock_id: bytes) -> int | None:
    """1 when the kernel destroyed exactly this socket (the id carries its cookie), 0 when it
    is gone or another socket answers to the tuple now, None when destroying is unsupported."""
    seq, msg = nl.message(SOCK_DESTROY, netlink.NLM_F_REQUEST | netlink.NLM_F_ACK,
                          _REQ.pack(family, protocol, 0, 0, 0xFFFFFFFF) + sock_id)
    nl.sock.sendall(msg)
    for rtype, rseq, data in nl.replies():
        if rseq == seq and rtype == netlink.NLMSG_ERROR:
            code = netlink.error_code(data)
            if code == 0:
                return 1
            if code in (errno.ESTALE, errno.ENOENT):
                return 0
            if code == errno.EOPNOTSUPP:
                return None
            raise netlink.NetlinkError(code, detail=netlink.ext_ack(data))
    raise AssertionError("unreachable: replies() does not end")
