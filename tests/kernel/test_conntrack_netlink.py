"""The conntrack cut over netlink (`nodewall.backends.conntrack`), beyond the basic case of
test_kernel_conntrack: UDP, ESP and egress flows, both families, many flows (several delete
batches), flows that must survive (loopback, TIME_WAIT, ICMP still admitted, egress admitted
for uid 0), and the namespace of the calling thread. The decoding of ctnetlink messages needs no
kernel: tests/unit/test_conntrack_decoding.py."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

from conftest import Node
from kspecs import PG_PORT, in_vpc, policy, public
from netns import HOSTS, entered, ping, sh
from normalise import live_flows as live

from nodewall.backends import conntrack, netlink
from nodewall.backends.conntrack import Flow, cut_refused_flows

FAMILY = (socket.AF_INET, socket.AF_INET6)


def list_flows() -> list[Flow]:
    """Every conntrack entry of the calling thread's namespace, both families, decoded."""
    with netlink.Socket(netlink.NETLINK_NETFILTER) as nl:
        dump = nl.ask(conntrack._CT | conntrack.IPCTNL_MSG_CT_GET, bytes(4), dump=True)
        return [flow for flow in map(conntrack.parse_flow, dump) if flow is not None]


def flows_in(node: Node) -> list[Flow]:
    with entered(node.ns):
        return list_flows()


def tcp(node: Node, role: str, fam: int, port: int = PG_PORT) -> socket.socket:
    with entered(node.topo.ns(role)):
        s = socket.socket(FAMILY[fam], socket.SOCK_STREAM)
    s.settimeout(1.0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.bind((HOSTS[role][fam], 0))
    s.connect((HOSTS["node"][fam], port))
    return s


def udp(ns: str, src: str, dst: str, port: int) -> socket.socket:
    """A connected UDP socket of namespace `ns` that has sent one datagram to dst:port."""
    with entered(ns):
        s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.bind((src, 0))
    s.connect((dst, port))
    s.send(b"hello")
    return s


def echoes(s: socket.socket) -> bool:
    """Send one message: True when it is echoed, False on a reset or an ICMP error."""
    try:
        s.send(b"again")
        return s.recv(16) == b"again"
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError, TimeoutError):
        return False


@contextlib.contextmanager
def closing(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for s in sockets:
            s.close()


def without_peer() -> dict[str, Any]:
    """The public spec without pg-prod-2: the peer host is no longer a cluster peer."""
    spec = public()
    spec["services"][0]["nodes"] = spec["services"][0]["nodes"][:1]
    return spec


def send_esp(node: Node, role: str, fam: int) -> None:
    """One ESP packet from `role` to the node: a tracked flow, since nothing answers it."""
    with entered(node.topo.ns(role)):
        s = socket.socket(FAMILY[fam], socket.SOCK_RAW, 50)
    with s:
        s.bind((HOSTS[role][fam], 0))
        s.sendto(b"\x00\x00\x10\x01\x00\x00\x00\x01" + bytes(24), (HOSTS["node"][fam], 0))


def test_removed_peer_loses_tcp_udp_and_esp_flows(node: Node) -> None:
    node.apply(policy(public()))
    peer, office = HOSTS["peer"], HOSTS["office"]
    with closing([]) as sockets:
        for fam in (0, 1):
            sockets.append(tcp(node, "peer", fam))
            sockets.append(udp(node.topo.ns("peer"), peer[fam], HOSTS["node"][fam], 500))
            assert sockets[-1].recv(16) == b"hello"
            send_esp(node, "peer", fam)
            sockets.append(tcp(node, "office", fam))
        before = flows_in(node)
        for fam in (0, 1):
            assert {f.protocol for f in live(before, peer[fam])} == {6, 17, 50}

        assert node.apply(policy(without_peer())).flows_cut == 6
        after = flows_in(node)
        for fam in (0, 1):
            assert not live(after, peer[fam]), "every flow of the former peer must be cut"
            assert len(live(after, office[fam])) == 1, "the office client must survive"
        peer_tcp, peer_udp, _, peer6_tcp, peer6_udp, _ = sockets
        for s in (peer_tcp, peer_udp, peer6_tcp, peer6_udp):
            assert not echoes(s)
        assert echoes(sockets[2]) and echoes(sockets[5])


def test_egress_flow_cut_only_when_refused_for_every_uid(node: Node) -> None:
    node.apply(policy(in_vpc("standard")))
    me, internet = HOSTS["node"], HOSTS["internet"]
    targets = [
        (me[0], internet[0], 5353),  # refused by ece: cut
        (me[1], internet[1], 5353),  # refused by ece: cut
        (me[0], HOSTS["metadata"][0], 9999),  # ece admits it for uid 0 only: survives
        (me[0], HOSTS["peer"][0], 5353),  # a cluster peer, admitted: survives
        (me[1], HOSTS["peer"][1], 5353),
    ]
    with closing([udp(node.ns, src, dst, port) for src, dst, port in targets]):
        before = flows_in(node)
        for src, dst, port in targets:
            assert any(f.src == src and f.dst == dst and f.dport == port for f in before)

        assert node.apply(policy(in_vpc("ece"))).flows_cut == 2
        after = {(f.dst, f.dport) for f in flows_in(node) if f.src in me}
        assert (internet[0], 5353) not in after and (internet[1], 5353) not in after
        assert (HOSTS["metadata"][0], 9999) in after
        assert (HOSTS["peer"][0], 5353) in after and (HOSTS["peer"][1], 5353) in after


def test_many_flows_both_families(node: Node) -> None:
    """More refused flows than one delete batch, mixed with admitted ones."""
    wide = public(ip_filter=["203.0.113.0/24", "192.0.2.0/24", "2001:db8:1::/48",
                             "2001:db8:bad::/48"])
    node.apply(policy(wide))
    per_family = 90  # 180 refused: three delete batches
    with closing([]) as sockets:
        for fam in (0, 1):
            for _ in range(per_family):
                sockets.append(tcp(node, "internet", fam))
                sockets.append(tcp(node, "office", fam))
        assert node.apply(policy(public())).flows_cut == 2 * per_family
        after = flows_in(node)
        for fam in (0, 1):
            assert not live(after, HOSTS["internet"][fam])
            assert len(live(after, HOSTS["office"][fam])) == per_family
        assert node.apply(policy(public())).flows_cut == 0


def test_loopback_closed_and_admitted_icmp_flows_survive(node: Node) -> None:
    node.apply(policy(public(ip_filter=["203.0.113.0/24", "192.0.2.0/24"])))
    me, internet = HOSTS["node"], HOSTS["internet"]
    sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=120", ns=node.ns)
    try:
        with closing([]) as sockets:
            sockets.append(udp(node.ns, me[0], me[0], 5432))  # node to itself: loopback
            assert sockets[-1].recv(16) == b"hello"
            sockets.append(tcp(node, "internet", 0))  # refused after the change: cut
            closed = tcp(node, "internet", 0)  # same verdict, but closed cleanly: TIME_WAIT
            closed.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
            closed.shutdown(socket.SHUT_WR)
            assert closed.recv(16) == b""
            closed.close()
            for fam in (0, 1):
                assert ping(node.topo.ns("internet"), internet[fam], me[fam]) == "open"
            deadline = time.monotonic() + 2
            while not any(f.state == "TIME_WAIT" for f in flows_in(node)):
                assert time.monotonic() < deadline, "no TIME_WAIT entry"
                time.sleep(0.02)
            icmp = [f for f in flows_in(node) if f.protocol in (1, 58)]
            assert {(f.family, f.icmp_type) for f in icmp} == {(4, 8), (6, 128)}
            assert all(f.icmp_id is not None for f in icmp)

            assert node.apply(policy(public())).flows_cut == 1
            after = flows_in(node)
            assert any(f.src == me[0] and f.dst == me[0] and f.dport == 5432 for f in after)
            assert any(f.src == internet[0] and f.state == "TIME_WAIT" for f in after)
            assert len([f for f in after if f.protocol in (1, 58)]) == 2
            assert not echoes(sockets[1])
            assert echoes(sockets[0])
    finally:
        sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1", ns=node.ns)


def test_cut_acts_in_the_calling_threads_namespace(node: Node) -> None:
    """Called directly (the node's ruleset stays wide): only the entry table is checked."""
    node.apply(policy(public(ip_filter=["203.0.113.0/24", "192.0.2.0/24"])))
    narrow, internet = policy(public()), HOSTS["internet"][0]
    with closing([tcp(node, "internet", 0)]):
        with entered(node.topo.ns("peer")):  # no conntrack entries there
            assert cut_refused_flows(narrow).flows == 0
        assert len(live(flows_in(node), internet)) == 1
        with entered(node.ns):
            assert cut_refused_flows(narrow).flows == 1
            assert cut_refused_flows(narrow).flows == 0
        assert not live(flows_in(node), internet)


def test_delete_is_by_entry_id(node: Node) -> None:
    """An entry is deleted by its tuple and id together: a stale id (the entry replaced by a
    new one on the same tuple) deletes nothing and is not counted."""
    node.apply(policy(public()))
    office = HOSTS["office"][0]
    with (closing([tcp(node, "office", 0)]), entered(node.ns),
          netlink.Socket(netlink.NETLINK_NETFILTER) as nl):
        dump = nl.ask(conntrack._CT | conntrack.IPCTNL_MSG_CT_GET, bytes(4), dump=True)
        (entry,) = [conntrack.parse_entry(m) for m in dump
                    if (f := conntrack.parse_flow(m)) is not None and f.src == office]
        assert entry is not None and entry.ct_id is not None
        stale = entry._replace(ct_id=(entry.ct_id + 1) % 2**32)
        assert conntrack.delete_entries(nl, [stale]) == 0
        assert len(live(list_flows(), office)) == 1
        assert conntrack.delete_entries(nl, [entry]) == 1
        assert conntrack.delete_entries(nl, [entry]) == 0
        assert not live(list_flows(), office)
