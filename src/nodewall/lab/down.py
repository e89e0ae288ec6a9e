"""`nodewall lab down`: stop every process the lab recorded (and whatever else still runs in its
namespaces), delete its namespaces (with them every veth, address and firewall it made) and its
runtime files. The report and the logs stay in the work directory.

Works from the record a killed run left, and also sweeps namespaces carrying the lab's prefix
that the record does not name (a run killed between making one and saving the record).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from nodewall.lab import processes
from nodewall.lab.netns import PREFIX, existing, remove_namespace
from nodewall.lab.state import STATE_FILE, LabState


def down(workdir: Path) -> list[str]:
    """Remove the lab recorded in `workdir`; what was removed (namespaces, processes)."""
    removed: list[str] = []
    state = LabState.load(workdir)
    prefix = state.prefix if state is not None else PREFIX
    if state is not None:
        names = list(state.pids)
        removed += [f"process {n}" for n in names if processes.alive(state.pids[n])]
        agents = [n for n in names if n.startswith("agent-")]
        processes.stop_all(state, agents, timeout=3)  # before the server they poll
        processes.stop_all(state, [n for n in names if n not in agents], timeout=3)
    for ns in existing(prefix):
        remove_namespace(ns)
        removed.append(f"namespace {ns}")
    if state is not None:
        shutil.rmtree(state.run_dir, ignore_errors=True)
        (workdir / STATE_FILE).unlink(missing_ok=True)
    return removed
