"""The conntrack cut: an apply that narrows access kills the established flows the new policy
refuses, both families, and only those (a management SSH session survives)."""

from __future__ import annotations

import socket
import time

from conftest import Node
from kspecs import PG_PORT, policy, public
from netns import HOSTS, entered


def connect(node: Node, role: str, fam: int, port: int) -> socket.socket:
    family = socket.AF_INET if fam == 0 else socket.AF_INET6
    with entered(node.topo.ns(role)):
        s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1.0)
    s.bind((HOSTS[role][fam], 0))
    s.connect((HOSTS["node"][fam], port))
    s.sendall(b"hello")
    assert s.recv(16) == b"hello"
    return s


def alive(s: socket.socket) -> bool:
    """Send one message and wait up to 1 s: True when echoed, False on a reset."""
    try:
        s.sendall(b"again")
        return s.recv(16) == b"again"
    except (ConnectionResetError, BrokenPipeError):
        return False


def test_removed_source_is_cut_allowed_ones_survive(node: Node) -> None:
    wide = public(ip_filter=["203.0.113.0/24", "192.0.2.0/24", "2001:db8:1::/48",
                             "2001:db8:bad::/48"])
    node.apply(policy(wide))
    flows = {(role, fam): connect(node, role, fam, 22 if role == "mgmt" else PG_PORT)
             for role in ("office", "internet", "mgmt") for fam in (0, 1)}
    try:
        result = node.apply(policy(public()))  # the internet host leaves ip_filter
        applied = time.monotonic()
        assert result.flows_cut == 2
        for fam in (0, 1):
            assert not alive(flows[("internet", fam)]), f"IPv{4 + 2 * fam} flow must be cut"
            assert time.monotonic() - applied < 1.0 + 0.1 * fam
            assert alive(flows[("office", fam)]), "a still-allowed client must survive"
            assert alive(flows[("mgmt", fam)]), "the management session must survive"
        # public access switched off entirely: everyone but management and peers is cut
        node.apply(policy(public(ip_filter=[])))
        for fam in (0, 1):
            assert not alive(flows[("office", fam)])
            assert alive(flows[("mgmt", fam)])
    finally:
        for s in flows.values():
            s.close()


def test_reapply_cuts_nothing(node: Node) -> None:
    node.apply(policy(public()))
    s = connect(node, "office", 0, PG_PORT)
    try:
        assert node.apply(policy(public())).flows_cut == 0
        assert alive(s)
    finally:
        s.close()
