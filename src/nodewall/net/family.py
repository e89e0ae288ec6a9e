"""The address families, in one place: per family (4 or 6) its address size, socket and
netfilter family numbers, and the names the kernel tools give it.

Every module that needs a per-family table takes it from here instead of writing its own.
Data only: imports nothing of nodewall's, never grows logic.
"""

from __future__ import annotations

import socket

FAMILIES = (4, 6)
#: address bits and bytes
BITS = {4: 32, 6: 128}
BYTES = {4: 4, 6: 16}
#: socket address family (AF_INET, AF_INET6), and back
AF: dict[int, int] = {4: socket.AF_INET, 6: socket.AF_INET6}
OF_AF: dict[int, int] = {socket.AF_INET: 4, socket.AF_INET6: 6}
#: netfilter protocol family (NFPROTO_IPV4, NFPROTO_IPV6), as `meta nfproto` loads it
NFPROTO = {4: 2, 6: 10}
#: nft's name of the network header (`ip saddr`, `ip6 saddr`), also its table family
NFT_IP = {4: "ip", 6: "ip6"}
#: ipset's family option (`family inet`, `family inet6`)
IPSET = {4: "inet", 6: "inet6"}
