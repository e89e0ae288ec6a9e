"""No blink: while 200 policy changes are applied (set updates and full rebuilds mixed), a
prober connects continuously; a connection both policies allow is never refused, and one both
refuse never opens."""

from __future__ import annotations

import threading

from conftest import Node
from kspecs import PG_PORT, policy, public
from netns import HOSTS, probe

CHANGES = 200


def test_no_blink_during_200_changes(node: Node) -> None:
    # (role, family index, port, outcome every policy below gives)
    steady = [("office", 0, PG_PORT, "open"), ("internet", 0, PG_PORT, "refused"),
              ("mgmt", 1, 22, "open"), ("internet", 1, 22, "refused"),
              ("peer", 1, PG_PORT, "open"), ("office", 0, 22, "refused")]
    policies = [
        policy(public(ip_filter=["203.0.113.0/24", "2001:db8:1::/48", f"10.70.{i % 50}.0/24",
                                 *([f"10.71.{i}.0/24"] if i % 3 else [])],
                      enable_ipv6=(i % 4 < 2)))
        for i in range(CHANGES)
    ]
    node.apply(policies[-1])
    stop = threading.Event()
    seen: list[tuple[str, int, int, str, str, str, str]] = []

    def prober() -> None:
        while not stop.is_set():
            for role, fam, port, want in steady:
                why: list[str] = []
                try:
                    got = probe(node.topo.ns(role), HOSTS[role][fam], HOSTS["node"][fam],
                                "tcp", port, why=why)
                except OSError as exc:  # recorded, so the failure says what happened
                    got = f"error {exc}"
                seen.append((role, fam, port, want, got, ",".join(why), phase[0]))
            stop.wait(0.002)

    phase = ["start"]  # before the prober starts: it reads it from its first probe on
    thread = threading.Thread(target=prober, daemon=True)
    thread.start()
    kinds = {"incremental": 0, "full": 0}
    try:
        for i, p in enumerate(policies):
            phase[0] = f"applying {i}"
            result = node.apply(p)
            phase[0] = f"applied {i} ({'incremental' if result.incremental else 'full'})"
            kinds["incremental" if result.incremental else "full"] += 1
    finally:
        stop.set()
        thread.join(timeout=5)
    wrong = [s for s in seen if s[3] != s[4]]
    assert kinds["incremental"] > 20 and kinds["full"] > 20, kinds
    assert len(seen) > 2 * CHANGES, f"only {len(seen)} probes ran during the changes"
    assert not wrong, f"{len(wrong)} of {len(seen)} probes blinked, e.g. {wrong[:5]}"
