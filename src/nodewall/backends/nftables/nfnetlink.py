"""nf_tables over netlink, without libnftables: one batch as one transaction, and GET requests.

The nftables backend uses this for its hot paths (a full apply of 8000 elements, a one-element
update, the read-back that verifies them), where libnftables' text parser and its set cache
cost tens of milliseconds (docs/benchmarks.md). It knows messages, batches, acks and dumps;
what goes into the messages is `nodewall.backends.nftables.wire`; sockets and attributes are
`nodewall.backends.netlink`.

Wire facts relied on (linux/netfilter/nfnetlink.h, nf_tables.h):
- an nf_tables message is `nlmsghdr` + `nfgenmsg` (family, version, res_id big endian) +
  attributes; nf_tables integers inside attributes are big endian;
- a transaction is BATCH_BEGIN, the messages, BATCH_END, sent in one `sendmsg`: the kernel
  validates every message before it commits any, and processes the batch synchronously inside
  `sendmsg`, so every ack or error is queued on the socket by the time it returns;
- each message asks for an ack; an error names the message by its sequence number.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from nodewall.backends import netlink
from nodewall.backends.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NetlinkError

NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFNL_BATCH_GENID = 1  # batch-begin attribute: commit only at this ruleset generation

# nf_tables message types (enum nf_tables_msg_types)
NEWTABLE, GETTABLE, DELTABLE = 0, 1, 2
NEWCHAIN, GETCHAIN, DELCHAIN = 3, 4, 5
NEWRULE, GETRULE, DELRULE = 6, 7, 8
NEWSET, GETSET, DELSET = 9, 10, 11
NEWSETELEM, GETSETELEM, DELSETELEM = 12, 13, 14
GETGEN = 16
GETOBJ, GETFLOWTABLE = 19, 23

_NFGENMSG = struct.Struct("!BBH")
_PAYLOAD = netlink.NLMSGHDR.size + _NFGENMSG.size  # where an answer's attributes start
_BUFFER = 8 << 20  # large enough for a full table's batch and its acks


class GenerationChanged(NetlinkError):
    """A batch sent for one ruleset generation met another: someone committed meanwhile."""


@dataclass(frozen=True)
class Message:
    """One nf_tables request of a batch: its type, family, flags and attribute bytes, and what
    it does in words (for errors)."""

    kind: int
    family: int
    body: bytes
    what: str
    flags: int = NLM_F_CREATE


def _nfgen(family: int, res_id: int = 0) -> bytes:
    return _NFGENMSG.pack(family, 0, res_id)


class NfSocket(netlink.Socket):
    """A NETLINK_NETFILTER socket for nf_tables, in the calling thread's network namespace."""

    def __init__(self) -> None:
        super().__init__(netlink.NETLINK_NETFILTER, buffer=_BUFFER)

    def transaction(self, batch: Sequence[Message], generation: int | None = None) -> None:
        """Send `batch` as one transaction; return when the kernel committed it, else raise
        `NetlinkError` naming the first message refused (nothing was committed). With
        `generation`, the kernel commits only if the ruleset is still at that generation, and
        else refuses the whole batch with `GenerationChanged` (the check and the commit are one
        step: nobody can commit in between)."""
        if not batch:
            return
        first = self.next_seq(len(batch) + 2)
        begin = _nfgen(socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES)
        if generation is not None:
            begin += netlink.u32(NFNL_BATCH_GENID, generation)
        frames = [self.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin, first)[1]]
        for i, message in enumerate(batch):
            frames.append(self.message((NFNL_SUBSYS_NFTABLES << 8) | message.kind,
                                       NLM_F_REQUEST | NLM_F_ACK | message.flags,
                                       _nfgen(message.family) + message.body, first + 1 + i)[1])
        frames.append(self.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST,
                                   _nfgen(socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES),
                                   first + len(batch) + 1)[1])
        self.sock.sendall(b"".join(frames))
        acked: set[int] = set()
        failure: NetlinkError | None = None
        for kind, _, data in self.queued():
            if kind != netlink.NLMSG_ERROR:
                continue
            code, index = netlink.error_code(data), netlink.error_seq(data) - first - 1
            if not -1 <= index < len(batch):
                continue  # a late answer to an earlier request on this socket
            if code == 0:
                acked.add(index)
            elif failure is None and index == -1 and code == errno.ERESTART:
                failure = GenerationChanged(code, -1, "the ruleset changed meanwhile")
            elif failure is None:
                failure = NetlinkError(code, index if 0 <= index < len(batch) else -1,
                                       netlink.ext_ack(data))
        if failure is not None:
            raise failure
        if len(acked - {-1}) != len(batch):
            raise NetlinkError(errno.EPROTO, -1, f"{len(acked)} of {len(batch)} messages "
                               "acknowledged")

    def request(self, kind: int, family: int, body: bytes, *, dump: bool) -> list[bytes]:
        """The attributes (after nfgenmsg) of each answer to one GET request; [] when the
        object does not exist."""
        answers = self.ask((NFNL_SUBSYS_NFTABLES << 8) | kind, _nfgen(family) + body, dump=dump)
        return [answer[_PAYLOAD:] for answer in answers]

    def dump(self, kind: int, family: int, body: bytes) -> list[tuple[int, bytes]]:
        """(family, attributes after nfgenmsg) of each answer to one GET dump, in the
        kernel's order; [] when the object asked about does not exist."""
        answers = self.ask((NFNL_SUBSYS_NFTABLES << 8) | kind, _nfgen(family) + body, dump=True)
        return [(answer[netlink.NLMSGHDR.size], answer[_PAYLOAD:]) for answer in answers]

    def generation(self) -> int:
        """The ruleset generation: every commit by anyone, in any table, changes it."""
        answer = self.request(GETGEN, socket.AF_UNSPEC, b"", dump=False)
        return netlink.be32(netlink.parse_attrs(answer[0])[1]) if answer else -1
