"""Netlink sockets, messages and attributes: the plumbing the nf_tables code (`nfnetlink`) and
the conntrack cut (`conntrack`) share. Wire format only (linux/netlink.h): a message is an
`nlmsghdr` (native endian) and a payload; attributes are `nlattr` (native-endian length and
type) with the payload padded to 4 bytes.

A socket belongs to the network namespace of the thread that opened it; callers open it in the
namespace they mean (and reopen it when the thread moves). Not thread-safe.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import struct
import sys
from collections.abc import Iterable, Iterator

NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
NLATTR = struct.Struct("=HH")  # length (header included, padding excluded), type
_LITTLE = sys.byteorder == "little"
_TIMEOUT = 10.0  # the kernel answers within recv(); a safeguard


class NetlinkError(OSError):
    """The kernel refused a request; `index` is its position in what was sent, if known."""

    def __init__(self, code: int, index: int = -1, detail: str = "") -> None:
        super().__init__(code, os.strerror(code) + (f": {detail}" if detail else ""))
        self.index = index


class Socket:
    """A netlink socket of `protocol` in the calling thread's network namespace (a context
    manager that closes it). `buffer`: send and receive buffer sizes to ask for, for large
    batches and their acknowledgements."""

    def __init__(self, protocol: int, buffer: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        try:
            for option in (SO_SNDBUFFORCE, SO_RCVBUFFORCE) if buffer else ():
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, option, buffer)
                except PermissionError:  # not root: up to the plain limit
                    self.sock.setsockopt(socket.SOL_SOCKET, option - 25, buffer)
            for flag in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):  # errors echo only the header
                with contextlib.suppress(OSError):
                    self.sock.setsockopt(SOL_NETLINK, flag, 1)
            self.sock.settimeout(_TIMEOUT)
            self.sock.bind((0, 0))
        except OSError:
            self.sock.close()
            raise
        self.buffer = max(buffer, 1 << 16)
        self.seq = int.from_bytes(os.urandom(2), "big") << 12

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def next_seq(self, count: int = 1) -> int:
        """The first of `count` new sequence numbers."""
        self.seq = (self.seq + count) & 0x7FFFFFFF
        return self.seq - count + 1

    def message(self, msgtype: int, flags: int, payload: bytes, seq: int | None = None
                ) -> tuple[int, bytes]:
        """A request message (a new sequence number unless given): its number and bytes."""
        seq = self.next_seq() if seq is None else seq
        return seq, NLMSGHDR.pack(NLMSGHDR.size + len(payload), msgtype, flags, seq, 0) + payload

    def replies(self) -> Iterator[tuple[int, int, bytes]]:
        """(type, sequence, message with its header) of every message received; endless."""
        while True:
            yield from messages(self.sock.recv(self.buffer))

    def queued(self) -> Iterator[tuple[int, int, bytes]]:
        """The messages already waiting on the socket, without blocking."""
        self.sock.settimeout(0.0)  # non-blocking while draining (a timeout would wait)
        try:
            while True:
                try:
                    data = self.sock.recv(self.buffer)
                except BlockingIOError:
                    return
                yield from messages(data)
        finally:
            self.sock.settimeout(_TIMEOUT)

    def ask(self, msgtype: int, payload: bytes, *, dump: bool = False) -> list[bytes]:
        """The answers (header included) to one acknowledged request, or to a dump (all of
        it); [] when the kernel says there is no such object (ENOENT)."""
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if dump else 0)
        seq, msg = self.message(msgtype, flags, payload)
        self.sock.sendall(msg)
        out: list[bytes] = []
        for rtype, rseq, data in self.replies():
            if rseq != seq:
                continue
            if rtype == NLMSG_DONE:
                return out
            if rtype == NLMSG_ERROR:
                code = error_code(data)
                if code == 0:
                    return out
                if code == errno.ENOENT:
                    return []
                raise NetlinkError(code, detail=ext_ack(data))
            out.append(data)
        raise AssertionError("unreachable: replies() does not end")


def messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence, message with its header) of each message in a receive buffer."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        size, kind, _, seq, _ = NLMSGHDR.unpack_from(data, offset)
        if size < NLMSGHDR.size:
            raise NetlinkError(errno.EPROTO, detail=f"malformed message (length {size})")
        yield kind, seq, data[offset:offset + size]
        offset += (size + 3) & ~3


def error_code(message: bytes) -> int:
    """The errno of an NLMSG_ERROR message (0: an acknowledgement)."""
    return -int(struct.unpack_from("=i", message, NLMSGHDR.size)[0])


def error_seq(message: bytes) -> int:
    """The sequence number of the request an NLMSG_ERROR message answers."""
    return int(NLMSGHDR.unpack_from(message, NLMSGHDR.size + 4)[3])


def ext_ack(message: bytes) -> str:
    """The kernel's extended-ack text in an NLMSG_ERROR message, if any (after the echoed
    header: sockets here ask for capped acks)."""
    found = parse_attrs(message, 2 * NLMSGHDR.size + 4)
    return text(found[1]) if 1 in found else ""


# ------------------------------------------------------------------------------ attributes


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded."""
    size = 4 + len(payload)
    return NLATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def u32(kind: int, value: int) -> bytes:
    """A big-endian 32-bit attribute (nf_tables and ctnetlink integers are big endian)."""
    return attr(kind, value.to_bytes(4, "big"))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def parse_attrs(data: bytes, offset: int = 0, end: int | None = None) -> dict[int, bytes]:
    """The attributes of a payload by type (flags cleared; the last one of a type wins)."""
    return dict(iter_attrs(data, offset, end))


def iter_attrs(data: bytes, offset: int = 0, end: int | None = None
               ) -> Iterator[tuple[int, bytes]]:
    stop = len(data) if end is None else end
    while offset + 4 <= stop:
        size, kind = NLATTR.unpack_from(data, offset)
        if size < 4:
            break
        yield kind & NLA_TYPE_MASK, bytes(data[offset + 4:offset + size])
        offset += (size + 3) & ~3


def split_attrs(data: bytes, sizes: Iterable[int] = ()) -> list[bytes]:
    """A run of attributes (a dumped list of set elements, say) cut into whole attributes,
    headers included. When the caller knows the few sizes they come in, they are cut by a
    regular expression (in C), kept only if it accounts for every byte; else one by one."""
    known = sorted(set(sizes))
    if known and _LITTLE and all(8 <= size < 256 and size % 4 == 0 for size in known):
        pattern = b"|".join(re.escape(bytes([size, 0])) + b".{%d}" % (size - 2)
                            for size in known)
        found: list[bytes] = re.findall(b"(?s)" + pattern, data)
        if sum(map(len, found)) == len(data):
            return found
    out, offset, stop = [], 0, len(data)
    while offset + 4 <= stop:
        size = int.from_bytes(data[offset:offset + 2], sys.byteorder)
        if size < 4:
            break
        out.append(data[offset:offset + size])
        offset += (size + 3) & ~3
    return out


def text(value: bytes) -> str:
    return value.rstrip(b"\0").decode(errors="replace")


def be32(value: bytes) -> int:
    return int.from_bytes(value[:4], "big")
