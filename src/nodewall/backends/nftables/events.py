"""nf_tables change notifications: know at once when anyone changes table `inet nodewall`.

The kernel multicasts every committed nf_tables change (table, chain, rule, set, element
messages) to the `NFNLGRP_NFTABLES` group of the network namespace. `NftChangeWatcher` joins it
in the calling thread's namespace; the agent waits on its file descriptor beside its long-poll
and verifies the table as soon as a notification names `inet nodewall`, so that a flush or an
edit behind its back is repaired within a second instead of at the next timer.

A notification is a reason to verify, not to repair: nodewall's own commits are notified too
(the verification after them finds nothing to do). When the socket's buffer overflows (ENOBUFS:
notifications were lost) `wait` answers True, since a lost one may have named nodewall's
table. It reads only message headers and the table attribute; it never changes the kernel.
"""

from __future__ import annotations

import errno
import select
import socket

from nodewall.backends import netlink
from nodewall.backends.nftables.render import TABLE

NFNLGRP_NFTABLES = 7
NETLINK_ADD_MEMBERSHIP = 1
_SOL_NETLINK = 270
_NFNL_SUBSYS_NFTABLES = 10
_NFPROTO_INET = 1
_TABLE_ATTR = 1  # NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE, ...
_NFT_MSG_NEWGEN = 15  # names no table
_HEAD = netlink.NLMSGHDR.size + 4  # netlink header + nfgenmsg


class NftChangeWatcher:
    """Notifications of nf_tables changes of the current thread's network namespace."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink.NETLINK_NETFILTER)
        try:
            self._sock.bind((0, 0))
            self._sock.setsockopt(_SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def wait(self, timeout: float) -> bool:
        """True when, within `timeout` seconds, a change of table `inet nodewall` was notified
        (everything pending is drained); False when none was."""
        ready, _, _ = select.select([self._sock], [], [], max(timeout, 0))
        if not ready:
            return False
        ours = False
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return ours
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # notifications were lost: maybe ours
                    ours = True
                    continue
                raise
            ours = ours or any(_names_nodewall(msg) for _, _, msg in netlink.messages(data))

    def close(self) -> None:
        self._sock.close()


def _names_nodewall(msg: bytes) -> bool:
    kind = netlink.NLMSGHDR.unpack_from(msg)[1]
    if kind >> 8 != _NFNL_SUBSYS_NFTABLES or kind & 0xFF == _NFT_MSG_NEWGEN:
        return False
    if len(msg) < _HEAD or msg[netlink.NLMSGHDR.size] != _NFPROTO_INET:
        return False
    table = netlink.parse_attrs(msg, _HEAD).get(_TABLE_ATTR)
    return table is not None and netlink.text(table) == TABLE
