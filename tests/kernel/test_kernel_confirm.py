"""Lock-out safety in the kernel: `nodewall apply` refuses a policy that shuts every
management network out unless `--force`; `apply --confirm S` keeps the new policy when
`nodewall confirm` comes in time, and otherwise puts the previous ruleset back exactly (read
from the kernel, and probed) within S+1 seconds, also when the waiting process is SIGKILLed.
Both backends, as real processes in the node namespace."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Node, saved
from kspecs import PG_PORT, public
from netns import HOSTS, probe, sh
from racing import NODE, cli, held_policy, pid_alive, wait_unlocked, write_spec

from nodewall.backends.iptables import xtables

OPEN_TO_OFFICE = public()  # ip_filter holds the office network
CLOSED_TO_OFFICE = public(ip_filter=["192.0.2.0/24"])
WINDOW = 2  # seconds of --confirm


def _kernel(node: Node) -> str:
    """Everything the node's kernel holds: nft ruleset (stateless), both variants' and
    families' filter tables (normalised, counters out), every ipset."""
    parts = [sh("nft", "-s", "list", "ruleset", ns=node.ns)]
    for variant in ("nft", "legacy"):
        for family in (4, 6):
            fam: xtables.FamilyNum = 4 if family == 4 else 6
            parts += saved(node.ns, variant, fam)
    return "\n".join([*parts, sh("ipset", "save", ns=node.ns)])


def _office(node: Node) -> str:
    return probe(node.topo.ns("office"), HOSTS["office"][0], node.v4, "tcp", PG_PORT)


def _apply(node: Node, spec: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(node.ns, "apply", str(spec), "--node", NODE, "--backend",
                              node.backend_name, *extra), capture_output=True, text=True)


def _start_confirm(node: Node, spec: Path, state: Path,
                   window: int = WINDOW) -> tuple[subprocess.Popen[str], float]:
    """`apply --confirm WINDOW` started; returns once it says it applied (and when)."""
    proc = subprocess.Popen(cli(node.ns, "apply", str(spec), "--node", NODE, "--backend",
                                node.backend_name, "--confirm", str(window), "--state-dir",
                                str(state)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    applied_at = time.monotonic()
    assert line.startswith("applied policy"), (line, proc.stderr.read() if proc.stderr else "")
    return proc, applied_at


def _confirm(node: Node, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(node.ns, "confirm", "--state-dir", str(state)),
                          capture_output=True, text=True)


def _deadline(state: Path) -> float:
    """The watcher's deadline (wall clock), as it wrote it once the new policy was applied."""
    return float(json.loads((state / "pending.json").read_text())["deadline"])


def _back_by(node: Node, before: str, limit: float) -> float:
    """Seconds past the deadline `limit - 1` at which the kernel holds `before` again; fails
    when it does not by `limit` (wall clock)."""
    while time.time() < limit:
        if _kernel(node) == before:
            return time.time() - (limit - 1.0)
        time.sleep(0.05)
    raise AssertionError(f"the previous ruleset was not back within the window plus 1 s:\n"
                         f"{_kernel(node)}\n--- expected ---\n{before}")


def test_lockout_is_refused_unless_forced(node: Node, tmp_path: Path) -> None:
    doc = public()
    doc["platform"]["management_networks"] = ["127.0.0.0/8", "::1/128"]
    spec = write_spec(tmp_path, "lockout", doc)
    before = _kernel(node)
    refused = _apply(node, spec)
    assert refused.returncode == 2, refused.stderr
    assert "shuts every management network out" in refused.stderr
    assert "127.0.0.0/8" in refused.stderr and "loopback source" in refused.stderr
    assert "--force" in refused.stderr
    assert _kernel(node) == before, "a refused apply changed the kernel"
    forced = _apply(node, spec, "--force")
    assert forced.returncode == 0, forced.stderr
    assert node.status().present and node.status().drift == ()
    # the management host is now shut out indeed: what the refusal was about
    mgmt = probe(node.topo.ns("mgmt"), HOSTS["mgmt"][0], node.v4, "tcp", 22)
    assert mgmt == "refused"


def test_confirm_in_time_keeps_the_new_policy(node: Node, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert _apply(node, write_spec(tmp_path, "open", OPEN_TO_OFFICE)).returncode == 0
    assert _office(node) == "open"
    closed = write_spec(tmp_path, "closed", CLOSED_TO_OFFICE)
    proc, _ = _start_confirm(node, closed, state, window=20)
    assert _office(node) == "refused"
    second = _apply(node, closed, "--confirm", "5", "--state-dir", str(state))
    assert second.returncode == 1 and "awaits confirmation" in second.stderr, second.stderr
    confirmed = _confirm(node, state)
    assert confirmed.returncode == 0, confirmed.stderr
    # `apply` ends only after its watcher has: nothing is left that could still roll back
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "confirmed" in out, (out, err)
    assert sorted(p.name for p in state.iterdir()) == ["last.json"]
    assert json.loads((state / "last.json").read_text())["outcome"] == "confirmed"
    from kspecs import policy

    held, _ = held_policy(node.ns, node.backend_name, {"closed": policy(CLOSED_TO_OFFICE)})
    assert held == "closed"
    assert _office(node) == "refused"
    again = _confirm(node, state)
    assert again.returncode == 1 and "nothing awaits confirmation" in again.stderr


@pytest.mark.parametrize("previous", ["policy", "nothing"])
def test_no_confirm_rolls_back_exactly(node: Node, tmp_path: Path, previous: str) -> None:
    state = tmp_path / "state"
    if previous == "policy":
        assert _apply(node, write_spec(tmp_path, "open", OPEN_TO_OFFICE)).returncode == 0
    before = _kernel(node)
    assert _office(node) == "open"
    proc, _ = _start_confirm(node, write_spec(tmp_path, "closed", CLOSED_TO_OFFICE), state)
    deadline = _deadline(state)
    assert _kernel(node) != before and _office(node) == "refused"
    late_by = _back_by(node, before, deadline + 1.0)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "rolled back" in err, (out, err)
    assert _office(node) == "open"
    assert late_by >= -0.1, f"rolled back {-late_by:.2f} s before the deadline"
    late = _confirm(node, state)
    assert late.returncode == 1 and "rolled back" in late.stderr, late.stderr


@pytest.mark.parametrize("then", ["no confirm", "confirm"])
def test_sigkill_of_the_waiting_process(node: Node, tmp_path: Path, then: str) -> None:
    """The watcher, not the killed process, waits: without a confirmation it still rolls back
    within the window plus a second; with one (from another shell) the new policy stays."""
    state = tmp_path / "state"
    assert _apply(node, write_spec(tmp_path, "open", OPEN_TO_OFFICE)).returncode == 0
    before = _kernel(node)
    window = WINDOW if then == "no confirm" else 20
    proc, _ = _start_confirm(node, write_spec(tmp_path, "closed", CLOSED_TO_OFFICE), state,
                             window)
    deadline = _deadline(state)
    watcher = int(json.loads((state / "pending.json").read_text())["pid"])
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert pid_alive(watcher), "the watcher died with the process that started it"
    if then == "no confirm":
        _back_by(node, before, deadline + 1.0)
        assert _office(node) == "open"
        return
    confirmed = _confirm(node, state)
    assert confirmed.returncode == 0, confirmed.stderr
    gone_by = time.monotonic() + 5
    while pid_alive(watcher) and time.monotonic() < gone_by:
        time.sleep(0.02)
    assert not pid_alive(watcher), "the watcher did not end after the confirmation"
    wait_unlocked(node.ns)
    assert _kernel(node) != before and _office(node) == "refused"
    assert json.loads((state / "last.json").read_text())["outcome"] == "confirmed"
