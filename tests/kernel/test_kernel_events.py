"""nf_tables change notifications (`nodewall.backends.nftables.events`): another process
flushing or editing `inet nodewall` wakes the watcher at once; a change to another table does
not."""

from __future__ import annotations

import time

from conftest import Node
from kspecs import policy, public
from netns import Topology, entered, sh

from nodewall.backends.nftables.events import NftChangeWatcher


def test_a_change_of_nodewalls_table_wakes_the_watcher(topology: Topology) -> None:
    node = Node(topology, "nftables")  # iptables keeps no nftables table: its agent uses a timer
    node.apply(policy(public()))
    with entered(node.ns):
        watcher = NftChangeWatcher()
    try:
        assert not watcher.wait(0.05), "nothing changed yet"
        sh("nft", "add", "table", "inet", "nwn_other", ns=node.ns)
        sh("nft", "add", "chain", "inet", "nwn_other", "c", ns=node.ns)
        assert not watcher.wait(0.3), "another table's change is not nodewall's"
        started = time.monotonic()
        sh("nft", "flush", "chain", "inet", "nodewall", "input", ns=node.ns)
        assert watcher.wait(1.0), "a flush of inet nodewall must be notified"
        assert time.monotonic() - started < 0.5
        assert not watcher.wait(0.05), "drained: no second wake for the same change"
        sh("nft", "delete", "table", "inet", "nwn_other", ns=node.ns)
        assert not watcher.wait(0.2)
        node.apply(policy(public()))  # repair: nodewall's own commit is notified too
        assert watcher.wait(1.0)
    finally:
        watcher.close()
        node.remove()
