"""The lab step by step (`up`, `check`, `change`, `report`, `down`), and its clean-up when things
go wrong: `lab down` after a `lab up` killed with SIGKILL half-way, Ctrl-C during a whole run,
and the refusal to run without root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import NODEWALL, lab_processes, run_lab


def namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def recorded(workdir: Path) -> dict[str, object]:
    try:
        return json.loads((workdir / "lab.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def test_step_by_step(workdir: Path) -> None:
    up = run_lab(workdir, "up", "--backend", "nftables")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
    prefix = str(recorded(workdir)["prefix"])
    assert len(namespaces(prefix)) == 17
    check = run_lab(workdir, "check")
    assert check.returncode == 0, check.stdout[-3000:]
    assert "cells agree with the policy" in check.stdout
    change = run_lab(workdir, "change", "ip_filter")
    assert change.returncode == 0, change.stdout[-3000:]
    assert "every kernel enforcing in" in change.stdout
    again = run_lab(workdir, "change", "ip_filter")
    assert "already made" in again.stdout
    assert (workdir / "lab-report.html").exists()
    down = run_lab(workdir, "down")
    assert down.returncode == 0
    assert namespaces(prefix) == []
    assert lab_processes(workdir) == []
    assert not (workdir / "run").exists()


def test_down_after_a_killed_up(workdir: Path) -> None:
    proc = subprocess.Popen([str(NODEWALL), "lab", "up", "--workdir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = recorded(workdir).get("pids", {})
        if sum(1 for name in pids if str(name).startswith("agent-")) >= 3:  # type: ignore[union-attr]
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError("lab up did not start three agents within 60 s")
    proc.kill()
    proc.wait(timeout=10)
    prefix = str(recorded(workdir)["prefix"])
    assert namespaces(prefix) and lab_processes(workdir)  # what the killed run left
    down = run_lab(workdir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert namespaces(prefix) == []
    assert lab_processes(workdir) == []


def test_ctrl_c_cleans_up(workdir: Path) -> None:
    proc = subprocess.Popen([str(NODEWALL), "lab", "--workdir", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
    deadline = time.monotonic() + 60
    while not recorded(workdir).get("nodes") and time.monotonic() < deadline:
        time.sleep(0.05)
    prefix = str(recorded(workdir)["prefix"])
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out[-2000:]
    assert "interrupted" in out and "lab removed" in out
    assert namespaces(prefix) == []
    assert lab_processes(workdir) == []


def test_refuses_without_root(workdir: Path) -> None:
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           str(NODEWALL), "lab", "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=60, cwd="/",
                          env={**os.environ, "HOME": "/nonexistent"})
    assert proc.returncode == 2
    assert "needs root" in proc.stderr + proc.stdout
    assert not (workdir / "lab.json").exists()
