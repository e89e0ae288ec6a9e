"""Apply as a transaction: a failed apply changes nothing, a repeated one sends nothing, an
incremental one ends where a fresh one would, drift is reported and repaired, and other tools'
tables are never touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import FAILURE_INJECTORS, TAMPER, Node
from kspecs import NODE, PG_PORT, policy, public
from netns import HOSTS, probe, sh

from nodewall.backends.base import BackendError

WIDER = public(ip_filter=["203.0.113.0/24", "192.0.2.0/24", "2001:db8:1::/48"])
FOREIGN = """table ip nwn_dockerlike {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 8080 counter dnat to 172.17.0.2:80
	}
}
"""


def test_failed_apply_leaves_previous_ruleset_byte_identical(node: Node,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    node.apply(policy(public()))
    before = node.ruleset()
    offending = FAILURE_INJECTORS[node.backend_name](monkeypatch)
    with pytest.raises(BackendError) as failure:
        node.apply(policy(WIDER))
    assert offending in str(failure.value), "the error must show the offending line"
    assert node.ruleset() == before
    monkeypatch.undo()
    assert node.status().drift == ()
    assert probe(node.topo.ns("internet"), HOSTS["internet"][0], node.v4, "tcp",
                 PG_PORT) == "refused"


def test_failed_first_apply_leaves_nothing(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    before = node.ruleset()
    FAILURE_INJECTORS[node.backend_name](monkeypatch)
    with pytest.raises(BackendError):
        node.apply(policy(public()))
    assert node.ruleset() == before
    assert not node.status().present


def test_reapply_is_a_noop_and_incremental_equals_fresh(node: Node) -> None:
    first = node.apply(policy(public()))
    assert first.changed
    held = node.ruleset()
    again = node.apply(policy(public()))
    assert (again.changed, again.version) == (False, first.version)
    assert node.ruleset() == held

    step = node.apply(policy(WIDER))  # only set contents differ
    assert step.changed and step.incremental
    incremental = node.ruleset()
    node.remove()
    fresh = node.apply(policy(WIDER))
    assert fresh.changed and not fresh.incremental
    assert node.ruleset() == incremental, "an incremental apply must end where a fresh one does"
    assert node.status().version == fresh.version


@pytest.mark.parametrize("tamper", ["delete", "edit"])
def test_drift_is_reported_and_repaired(node: Node, tamper: str) -> None:
    applied = node.apply(policy(public()))
    clean = node.ruleset()
    for cmd in TAMPER[node.backend_name][tamper]:
        sh(*cmd, ns=node.ns)
    status = node.status()
    assert status.drift, f"{tamper} behind nodewall's back must show as drift"
    assert status.present == (tamper != "delete")
    repaired = node.apply(policy(public()))
    assert repaired.changed and repaired.version == applied.version
    assert node.status().drift == ()
    assert node.ruleset() == clean
    # tampered again, then a different policy: whatever the backend remembers, the result holds
    for cmd in TAMPER[node.backend_name][tamper]:
        sh(*cmd, ns=node.ns)
    wider = node.apply(policy(WIDER))
    assert node.status().drift == () and node.status().version == wider.version
    assert probe(node.topo.ns("internet"), HOSTS["internet"][0], node.v4, "tcp",
                 PG_PORT) == "open"


def test_other_tools_tables_untouched(node: Node) -> None:
    subprocess.run(["ip", "netns", "exec", node.ns, "nft", "-f", "-"], input=FOREIGN, text=True,
                   check=True)
    sh("iptables", "-A", "INPUT", "-s", "192.0.2.1/32", "-j", "ACCEPT", ns=node.ns)
    foreign_rule = "-A INPUT -s 192.0.2.1/32 -j ACCEPT"
    try:
        for step in (lambda: node.apply(policy(public())), lambda: node.apply(policy(WIDER)),
                     node.remove):
            step()
            assert sh("nft", "-s", "list", "table", "ip", "nwn_dockerlike",
                      ns=node.ns) == FOREIGN
            assert foreign_rule in sh("iptables", "-S", "INPUT", ns=node.ns)
        assert not node.status().present
        assert node.remove() is False
    finally:
        sh("nft", "delete", "table", "ip", "nwn_dockerlike", ns=node.ns, check=False)
        sh("iptables", "-D", "INPUT", "-s", "192.0.2.1/32", "-j", "ACCEPT", ns=node.ns,
           check=False)


def test_cli_render_apply_status_remove(node: Node, tmp_path: Path) -> None:
    import json
    import sys

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(public()))
    cli = [sys.executable, "-m", "nodewall"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", node.ns, *cli, *args],
                              capture_output=True, text=True, check=False)

    backend = ["--backend", node.backend_name]
    rendered = run("render", str(spec), "--node", NODE, *backend)
    assert rendered.returncode == 0 and rendered.stdout.strip(), rendered.stderr
    applied = run("apply", str(spec), "--node", NODE, *backend)
    assert applied.returncode == 0, applied.stderr
    status = run("status", "--backend", node.backend_name)
    assert status.returncode == 0 and "drift: none" in status.stdout, status.stdout
    assert policy(public()).version in status.stdout
    bad = run("apply", str(spec), "--node", "no-such-node", *backend)
    assert bad.returncode == 2 and "--node" in bad.stderr
    removed = run("remove")
    assert removed.returncode == 0 and node.backend_name in removed.stdout
    assert run("status").returncode == 1
