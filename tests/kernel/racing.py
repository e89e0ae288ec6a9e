"""Races and crashes against the real kernel: which whole policy the kernel holds, `nodewall`
runs as real processes (started, raced, SIGKILLed), and a foreign writer hammering iptables
and nft beside them. Shared by tests/kernel/test_kernel_races.py and test_kernel_confirm.py
(short runs) and bench/races.py (the long ones).

`held_policy` reads the node namespace and says which candidate policy it holds whole, worked
out from the candidates themselves (the nftables image `nftwire.build` makes, the iptables
chains `family_chains` renders and the members `ipset.members` gives), never from what the
backend records about itself (its version marker, its digests).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns import entered, sh

from nodewall.backends import applylock
from nodewall.backends.iptables import ipset, xtables
from nodewall.backends.iptables.render import FAMILIES, FIRST, HOOK, family_chains
from nodewall.backends.nftables import nfnetlink as nl
from nodewall.backends.nftables import wire as nftwire
from nodewall.policy.model import NodePolicy

CLI = [sys.executable, "-m", "nodewall"]
NODE = "pg-prod-1"


def cli(ns: str, *args: str) -> list[str]:
    """The argv running `nodewall ARGS` inside namespace `ns`."""
    return ["ip", "netns", "exec", ns, *CLI, *args]


def write_spec(directory: Path, name: str, doc: dict[str, Any]) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def wait_unlocked(ns: str, timeout: float = 20.0) -> None:
    """Return once no process holds the apply lock of `ns` (a detached commit has ended)."""
    with entered(ns), applylock.held(wait=timeout):
        pass


# --------------------------------------------------------------------------- what is held


def _nft_holds(ns: str, policy: NodePolicy) -> bool:
    with entered(ns):
        sock = nl.NfSocket()
        try:
            have = nftwire.read_image(sock)
        finally:
            sock.close()
    return have is not None and have == nftwire.build(policy).image


@dataclass
class IptView:
    chains: dict[int, dict[str, list[str]]]
    jumps: dict[int, dict[str, list[int]]]
    sets: dict[str, ipset.KernelSet]
    referenced: set[str] = field(default_factory=set)


def ipt_view(ns: str, variant: xtables.Variant) -> IptView:
    with entered(ns):
        tables = {f: xtables.read_filter(variant, f) for f in FAMILIES}
        sets = ipset.read_sets()
    view = IptView({f: t.ours() for f, t in tables.items()},
                   {f: {c: t.positions(h, f"-A {h} -j {c}") for c, h in HOOK.items()}
                    for f, t in tables.items()}, sets)
    for chains in view.chains.values():
        for lines in chains.values():
            for line in lines:
                view.referenced.update(re.findall(r"--match-set (nodewall-\S+) ", line))
    return view


def _ipt_holds(view: IptView, policy: NodePolicy) -> bool:
    names: dict[str, str] = {}
    for s in policy.sets:
        used = [n for n in (ipset.kernel_name(s.name, "a"), ipset.kernel_name(s.name, "b"))
                if n in view.referenced]
        names[s.name] = used[0] if len(used) == 1 else ipset.kernel_name(s.name, "a")
    for family in FAMILIES:
        if view.chains[family] != family_chains(policy, family, names, policy.version):
            return False
        if view.jumps[family] != FIRST:
            return False
    for s in policy.sets:
        got = view.sets.get(names[s.name])
        if names[s.name] in view.referenced and (
                got is None or (got.type, got.family, got.members)
                != (ipset.set_type(s), ipset.set_family(s), ipset.members(s))):
            return False
    return True


def held_policy(ns: str, backend: str, candidates: Mapping[str, NodePolicy],
                variant: xtables.Variant | None = None) -> tuple[str | None, int]:
    """(the candidate the kernel of `ns` holds whole, or None; the number of nodewall- sets
    no rule references, left by an interrupted apply and destroyed by the next one)."""
    if backend == "nftables":
        for name, policy in candidates.items():
            if _nft_holds(ns, policy):
                return name, 0
        return None, 0
    view = ipt_view(ns, variant or _variant(ns))
    stray = len(set(view.sets) - view.referenced)
    for name, policy in candidates.items():
        if _ipt_holds(view, policy):
            return name, stray
    return None, stray


def _variant(ns: str) -> xtables.Variant:
    with entered(ns):
        return xtables.detect_variant()


# ------------------------------------------------------------------------- killed applies


@dataclass
class KillTally:
    runs: int = 0
    old: int = 0
    new: int = 0
    broken: list[str] = field(default_factory=list)
    stray_sets: int = 0
    seconds: float = 0.0


def kill_runs(ns: str, backend: str, specs: Mapping[str, Path],
              candidates: Mapping[str, NodePolicy], runs: int, window: float,
              seed: int = 13) -> KillTally:
    """`runs` times: start `nodewall apply` of a candidate other than the one held, SIGKILL it
    after a random delay in [0, window) s, wait for any detached commit, then check that the
    kernel holds the old or the new policy whole. The first candidate is applied first."""
    rng = random.Random(seed)
    names = list(candidates)
    tally = KillTally()
    start = time.monotonic()
    first = subprocess.run(cli(ns, "apply", str(specs[names[0]]), "--node", NODE,
                               "--backend", backend), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    current = names[0]
    for run in range(runs):
        target = rng.choice([n for n in names if n != current])
        proc = subprocess.Popen(cli(ns, "apply", str(specs[target]), "--node", NODE,
                                    "--backend", backend),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if run % 2 and backend == "iptables":
            at_write(proc.pid, timeout=window * 2)  # the worst moment: a kernel write running
        else:
            time.sleep(rng.random() * window)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        wait_unlocked(ns)
        held, stray = held_policy(ns, backend, {current: candidates[current],
                                                target: candidates[target]})
        tally.runs += 1
        tally.stray_sets += stray
        if held is None:
            tally.broken.append(f"run {run}: {current} -> {target}, killed (exit "
                                f"{proc.returncode}): neither whole; {err.decode()[-300:]}")
            fix = subprocess.run(cli(ns, "apply", str(specs[current]), "--node", NODE,
                                     "--backend", backend), capture_output=True, text=True)
            assert fix.returncode == 0, fix.stderr
            continue
        if held == current:
            tally.old += 1
        else:
            tally.new += 1
        current = held
    tally.seconds = time.monotonic() - start
    return tally


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _program(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return os.path.basename(f.read().split(b"\0", 1)[0].decode(errors="replace"))
    except OSError:
        return ""


def at_write(pid: int, timeout: float) -> bool:
    """Wait until a descendant of `pid` runs `ip6tables-*-restore` (the first of the two
    family transactions: the moment a kill would split the families); False when none came
    within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((p := _program(c)).startswith("ip6tables-") and p.endswith("-restore")
               for c in descendants(pid)):
            return True
        time.sleep(0.0005)
    return False


# --------------------------------------------------------------------------- foreign writer


FOREIGN_TABLE = "nwn_foreign"
FOREIGN_CHAIN = "NWNFOREIGN"
#: Objects the writer makes once and never changes: each must still be there at the end.
_KEEP_V4 = ["-A", "INPUT", "-s", "192.0.2.201/32", "-p", "tcp", "--dport", "5555",
            "-m", "comment", "--comment", "nwn-foreign-keep", "-j", "ACCEPT"]


class ForeignWriter:
    """Another tool writing beside nodewall: `iptables -w` appending and deleting rules in
    INPUT and a chain of its own, and `nft` adding and deleting elements and rules in its own
    table, in a loop, until stopped. Its permanent objects are checked by `lost()`."""

    def __init__(self, ns: str, variant: xtables.Variant) -> None:
        self.ns, self.variant = ns, variant
        self.iptables = xtables.tool(variant, 4, "")
        self.writes = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="foreign-writer", daemon=True)

    def _run(self, *argv: str) -> None:
        proc = subprocess.run(["ip", "netns", "exec", self.ns, *argv], capture_output=True,
                              text=True, check=False)
        self.writes += 1
        if proc.returncode != 0:
            self.errors.append(f"{' '.join(argv)}: {proc.stderr.strip()}")

    def __enter__(self) -> ForeignWriter:
        ipt = self.iptables
        sh(ipt, "-w", "-N", FOREIGN_CHAIN, ns=self.ns)
        sh(ipt, "-w", "-A", FOREIGN_CHAIN, "-s", "192.0.2.202/32", "-j", "RETURN", ns=self.ns)
        sh(ipt, "-w", *_KEEP_V4, ns=self.ns)
        subprocess.run(["ip", "netns", "exec", self.ns, "nft", "-f", "-"], check=True, text=True,
                       input=f"table inet {FOREIGN_TABLE} {{\n set keep {{ type ipv4_addr; "
                             f"elements = {{ 192.0.2.203 }}; }}\n set churn {{ type ipv4_addr; "
                             f"}}\n chain c {{\n ip saddr @keep counter\n }}\n}}\n")
        self.keep = self.snapshot()
        self._thread.start()
        return self

    def _loop(self) -> None:
        ipt, n = self.iptables, 0
        while not self._stop.is_set():
            n += 1
            address = f"192.0.2.{10 + n % 200}"
            self._run(ipt, "-w", "-A", "INPUT", "-s", address, "-j", FOREIGN_CHAIN)
            self._run("nft", "add", "element", "inet", FOREIGN_TABLE, "churn", f"{{ {address} }}")
            self._run(ipt, "-w", "-D", "INPUT", "-s", address, "-j", FOREIGN_CHAIN)
            self._run("nft", "delete", "element", "inet", FOREIGN_TABLE, "churn",
                      f"{{ {address} }}")

    def snapshot(self) -> str:
        rules = sh(self.iptables, "-w", "-S", FOREIGN_CHAIN, ns=self.ns)
        keep = [line for line in sh(self.iptables, "-w", "-S", "INPUT", ns=self.ns).splitlines()
                if "nwn-foreign-keep" in line]
        table = sh("nft", "list", "set", "inet", FOREIGN_TABLE, "keep", ns=self.ns)
        chain = sh("nft", "list", "chain", "inet", FOREIGN_TABLE, "c", ns=self.ns)
        return "\n".join([rules, *keep, table, re.sub(r"packets \d+ bytes \d+", "", chain)])

    def lost(self) -> str | None:
        """None when every permanent foreign object is as it was made."""
        now = self.snapshot()
        return None if now == self.keep else f"foreign objects changed:\n{self.keep}\n---\n{now}"

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        ipt = self.iptables
        for argv in ([ipt, "-w", "-D", *_KEEP_V4[1:]], [ipt, "-w", "-F", FOREIGN_CHAIN],
                     [ipt, "-w", "-X", FOREIGN_CHAIN],
                     ["nft", "delete", "table", "inet", FOREIGN_TABLE]):
            sh(*argv, ns=self.ns, check=False)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
