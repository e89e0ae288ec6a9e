"""nf_tables over netlink, without libnftables: send a batch (one transaction), dump objects.

The nftables backend uses this for its hot paths (a full apply of 8000 elements, a one-element
update, the read-back that verifies them), where libnftables' text parser and its set cache
cost tens of milliseconds (docs/benchmarks.md). It knows the wire format only: messages,
attributes, batches, acks and dumps. What goes into the messages is `nodewall.backends.nftwire`.

Wire facts relied on (linux/netlink.h, linux/netfilter/nfnetlink.h, nf_tables.h):
- a message is `nlmsghdr` (native endian) + `nfgenmsg` (family, version, res_id big endian) +
  attributes (`nlattr`, native-endian length and type, payload padded to 4 bytes; nf_tables
  integers inside payloads are big endian);
- a transaction is BATCH_BEGIN, the messages, BATCH_END, sent in one `sendmsg`: the kernel
  validates every message before it commits any, and processes the batch synchronously inside
  `sendmsg`, so every ack or error is queued on the socket by the time it returns;
- each message asks for an ack; an error names the message by its sequence number.

The socket belongs to the network namespace of the thread that opened it (callers reopen it when
the thread moves). Not thread-safe.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import struct
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33

# nf_tables message types (enum nf_tables_msg_types)
NEWTABLE, GETTABLE, DELTABLE = 0, 1, 2
NEWCHAIN, GETCHAIN, DELCHAIN = 3, 4, 5
NEWRULE, GETRULE, DELRULE = 6, 7, 8
NEWSET, GETSET, DELSET = 9, 10, 11
NEWSETELEM, GETSETELEM, DELSETELEM = 12, 13, 14
GETGEN = 16

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLATTR = struct.Struct("=HH")
_LITTLE = sys.byteorder == "little"
_BUFFER = 8 << 20  # large enough for a full table's batch and its acks


class NetlinkError(OSError):
    """The kernel refused a message; `index` is its position in the batch sent."""

    def __init__(self, code: int, index: int, detail: str = "") -> None:
        super().__init__(code, os.strerror(code) + (f": {detail}" if detail else ""))
        self.index = index


# ------------------------------------------------------------------------------ attributes


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded."""
    size = 4 + len(payload)
    return _NLATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, value.to_bytes(4, "big"))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def parse_attrs(data: bytes | memoryview, offset: int = 0, end: int | None = None
                ) -> dict[int, bytes]:
    """The attributes of a payload by type (the nested flag cleared; the last one wins)."""
    return dict(iter_attrs(data, offset, end))


def iter_attrs(data: bytes | memoryview, offset: int = 0, end: int | None = None
               ) -> Iterator[tuple[int, bytes]]:
    stop = len(data) if end is None else end
    while offset + 4 <= stop:
        size, kind = _NLATTR.unpack_from(data, offset)
        if size < 4:
            break
        yield kind & 0x3FFF, bytes(data[offset + 4:offset + size])
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


# ------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    """One nf_tables request of a batch: its type, family, flags and attribute bytes, and what
    it does in words (for errors)."""

    kind: int
    family: int
    body: bytes
    what: str
    flags: int = NLM_F_CREATE


def _frame(kind: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    size = _NLMSGHDR.size + _NFGENMSG.size + len(body)
    return (_NLMSGHDR.pack(size, kind, flags, seq, 0) + _NFGENMSG.pack(family, 0, res_id)
            + body)


def _messages(data: bytes) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, seq, payload after nlmsghdr) of each message in a receive buffer."""
    view, offset = memoryview(data), 0
    while offset + _NLMSGHDR.size <= len(data):
        size, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if size < _NLMSGHDR.size:
            break
        yield kind, flags, seq, view[offset + _NLMSGHDR.size:offset + size]
        offset += (size + 3) & ~3


class NfSocket:
    """A NETLINK_NETFILTER socket of the calling thread's network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        for option in (SO_SNDBUFFORCE, SO_RCVBUFFORCE):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, option, _BUFFER)
            except PermissionError:  # not root: the plain limit
                self.sock.setsockopt(socket.SOL_SOCKET, option - 25, _BUFFER)
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):  # errors echo only the header
            with contextlib.suppress(OSError):
                self.sock.setsockopt(SOL_NETLINK, option, 1)
        self.sock.bind((0, 0))
        self._seq = int.from_bytes(os.urandom(2), "big") << 12

    def close(self) -> None:
        self.sock.close()

    def _next_seq(self, count: int = 1) -> int:
        self._seq = (self._seq + count) & 0x7FFFFFFF
        return self._seq

    def transaction(self, batch: Sequence[Message]) -> None:
        """Send `batch` as one transaction; return when the kernel committed it, else raise
        `NetlinkError` naming the first message refused (nothing was committed)."""
        if not batch:
            return
        first = self._next_seq(len(batch) + 2)
        frames = [_frame(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first, socket.AF_UNSPEC, b"",
                         NFNL_SUBSYS_NFTABLES)]
        for i, message in enumerate(batch):
            frames.append(_frame((NFNL_SUBSYS_NFTABLES << 8) | message.kind,
                                 NLM_F_REQUEST | NLM_F_ACK | message.flags, first + 1 + i,
                                 message.family, message.body))
        frames.append(_frame(NFNL_MSG_BATCH_END, NLM_F_REQUEST, first + len(batch) + 1,
                             socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES))
        self.sock.sendall(b"".join(frames))
        acked: set[int] = set()
        failure: NetlinkError | None = None
        for kind, _, _, payload in self._drain():
            if kind != NLMSG_ERROR:
                continue
            code = -struct.unpack_from("=i", payload)[0]
            seq = _NLMSGHDR.unpack_from(payload, 4)[3]
            index = seq - first - 1
            if code == 0:
                acked.add(index)
            elif failure is None and 0 <= index < len(batch):
                failure = NetlinkError(code, index, _ext_ack_message(payload))
            elif failure is None:
                failure = NetlinkError(code, -1)
        if failure is not None:
            raise failure
        if len(acked) != len(batch):
            raise NetlinkError(errno.EPROTO, -1, f"{len(acked)} of {len(batch)} messages "
                               "acknowledged")

    def _drain(self) -> Iterator[tuple[int, int, int, memoryview]]:
        """Every message already queued on the socket (the batch is processed in sendmsg)."""
        while True:
            try:
                data = self.sock.recv(_BUFFER, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            yield from _messages(data)

    def request(self, kind: int, family: int, body: bytes, *, dump: bool
                ) -> list[memoryview]:
        """The payloads (after nfgenmsg) of the answer to one GET request; [] when the object
        does not exist (ENOENT)."""
        seq = self._next_seq()
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if dump else 0)
        self.sock.sendall(_frame((NFNL_SUBSYS_NFTABLES << 8) | kind, flags, seq, family,
                                 body))
        out: list[memoryview] = []
        while True:
            data = self.sock.recv(_BUFFER)
            for msg_kind, _, msg_seq, payload in _messages(data):
                if msg_seq != seq:
                    continue
                if msg_kind == NLMSG_DONE:
                    return out
                if msg_kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code in (0, errno.ENOENT):
                        return out if code == 0 else []
                    raise NetlinkError(code, -1, _ext_ack_message(payload))
                out.append(payload[_NFGENMSG.size:])

    def generation(self) -> int:
        """The ruleset generation: every commit by anyone, in any table, changes it."""
        answer = self.request(GETGEN, socket.AF_UNSPEC, b"", dump=False)
        return be32(parse_attrs(answer[0])[1]) if answer else -1


def _ext_ack_message(payload: memoryview) -> str:
    """The kernel's extended-ack text, if it sent one (after the echoed header: the socket
    asks for capped acks)."""
    found = parse_attrs(payload, 4 + _NLMSGHDR.size)
    return text(found[1]) if 1 in found else ""
