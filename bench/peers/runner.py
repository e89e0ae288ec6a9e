"""The peer benchmark's run: for each policy size, every tool applied from nothing in a fresh
namespace pair, then one ip_filter entry changed, repeated (tools interleaved within each
repetition, so all see the same machine load), the connect latency measured after the last
repetition, verdicts checked against nodewall's once per tool, and medians and ratios to the
floors of the same run.

A tool stopped at the cut-off is recorded as over it, and not run again at that size or any
larger one (recorded as over it there too, `"skipped": true`). The host's tool directories
and the root namespace's ruleset are compared before and after the whole run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import probes
from .node import compiled, facts, write_spec
from .sandbox import HostFiles, Run, ensure_installed, new_prefix, pair, root_ruleset, run_script
from .tools import all_tools
from .tools.base import Case, Tool
from .tools.nodewall_cli import NODEWALL
from .tools.nodewall_resident import NodewallResident

REFERENCE = "nodewall-nftables"
FLOORS = ("nft-floor", "iptables-floor")


@dataclass
class Settings:
    sizes: Sequence[int] = (1, 1000, 8000)
    peers: Sequence[int] = (2, 299)
    tools: Sequence[str] = ()
    repeat: int = 3
    cutoff: float = 120.0
    connects: int = 300
    verify: bool = True


@dataclass
class Figures:
    apply_s: list[float] = field(default_factory=list)
    change_s: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    latency_us: float | None = None
    over: str | None = None
    skipped: bool = False
    verdicts: dict[str, str] | None = None
    verdict_differences: list[str] | None = None


def make_case(tmp: Path, entries: int, peers: int) -> Case:
    spec = write_spec(tmp / f"spec-{entries}-{peers}.json", entries, peers)
    changed = write_spec(tmp / f"spec-{entries}-{peers}-changed.json", entries, peers, True)

    def render(backend: str) -> str:
        return subprocess.run([NODEWALL, "render", str(spec), "--node", "big-0", "--backend",
                               backend], capture_output=True, text=True, check=True).stdout

    return Case(entries, peers, spec, changed, facts(compiled(spec)), facts(compiled(changed)),
                render("nftables"), render("iptables"))


def execute(tool: Tool, case: Case, work: Path, ns: str, cutoff: float, step: str) -> Run:
    """One timed step of a tool: its script, or the resident process's own timing."""
    if isinstance(tool, NodewallResident):
        return tool.measure(case.spec if step == "apply" else case.spec_changed, work, cutoff)
    script = tool.apply(case, work) if step == "apply" else tool.change(case, work)
    return run_script(script.text, ns, work, cutoff, script.binds, script.env, step)


def one_run(tool: Tool, case: Case, prefix: str, settings: Settings, figures: Figures,
            measure_latency: bool, reference: dict[str, str] | None) -> None:
    with tempfile.TemporaryDirectory(prefix="nwpr-") as tmp, pair(prefix) as ns:
        work = Path(tmp)
        with tool.session(ns.node, work):
            run = execute(tool, case, work, ns.node, settings.cutoff, "apply")
            if run.over:
                figures.over = f"apply over {settings.cutoff:.0f} s"
                return
            assert run.seconds is not None
            figures.apply_s.append(run.seconds)
            rss = run.max_rss_kb + tool.daemon_rss_kb()
            if reference is not None or (settings.verify and figures.verdicts is None
                                         and tool.name == REFERENCE):
                figures.verdicts = probes.verdicts(ns.node, ns.client, case.facts)
                if reference is not None:
                    figures.verdict_differences = probes.differences(reference,
                                                                     figures.verdicts)
            if measure_latency:
                figures.latency_us = 1e6 * probes.connect_latency(
                    ns.node, ns.client, case.facts.pg_port, settings.connects)
            change = execute(tool, case, work, ns.node, settings.cutoff, "change")
            if change.over:
                figures.over = f"change over {settings.cutoff:.0f} s"
                return
            assert change.seconds is not None
            figures.change_s.append(change.seconds)
            figures.rss_kb.append(max(rss, change.max_rss_kb + tool.daemon_rss_kb()))


def summary(figures: Figures) -> dict[str, Any]:
    def median(values: Sequence[float]) -> float | None:
        return statistics.median(values) if values else None

    return {"apply_s": median(figures.apply_s), "change_s": median(figures.change_s),
            "rss_kb": median(figures.rss_kb), "latency_us": figures.latency_us,
            "over": figures.over, "skipped": figures.skipped,
            "apply_runs_s": figures.apply_s, "change_runs_s": figures.change_s,
            "verdicts": figures.verdicts, "verdict_differences": figures.verdict_differences}


def ratios(rows: dict[str, dict[str, Any]]) -> None:
    """Each figure of each tool divided by the same figure of each floor, same run."""
    for row in rows.values():
        row["ratio"] = {}
        for floor in FLOORS:
            base = rows.get(floor)
            if base is None:
                continue
            row["ratio"][floor] = {
                key: (row[key] / base[key] if row.get(key) and base.get(key) else None)
                for key in ("apply_s", "change_s", "rss_kb", "latency_us")}


def run(settings: Settings, log: Any = sys.stderr) -> dict[str, Any]:
    tools = all_tools()
    wanted = [t for name, t in tools.items() if not settings.tools or name in settings.tools]
    # the reference first (its verdicts are what the others are checked against), then the
    # floors (the ratios need them), then the rest in the tables' order
    first = [REFERENCE] if settings.verify else []
    names = [*first, *FLOORS, *(t.name for t in wanted if t.name not in (*first, *FLOORS))]
    chosen = [tools[n] for n in names]
    installed = ensure_installed({c: p for t in chosen for c, p in t.commands})
    host, ruleset_before = HostFiles(), root_ruleset()
    prefix = new_prefix()
    started = time.time()
    cases: list[dict[str, Any]] = []
    over_at: dict[str, tuple[int, int]] = {}
    verified: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="nwpr-specs-") as tmp:
        for peers in settings.peers:
            for entries in settings.sizes:
                case = make_case(Path(tmp), entries, peers)
                figures = {t.name: Figures() for t in chosen}
                for tool in chosen:
                    worse = over_at.get(tool.name)
                    if worse and entries >= worse[0] and peers >= worse[1]:
                        figures[tool.name].over = f"over {settings.cutoff:.0f} s at a smaller size"
                        figures[tool.name].skipped = True
                reference: dict[str, str] | None = None
                for rep in range(settings.repeat):
                    for tool in chosen:
                        fig = figures[tool.name]
                        if fig.over:
                            continue
                        check = (settings.verify and tool.name != REFERENCE
                                 and tool.name not in verified and reference is not None)
                        t0 = time.monotonic()
                        one_run(tool, case, prefix, settings, fig,
                                rep == settings.repeat - 1, reference if check else None)
                        if check:
                            verified.add(tool.name)
                        if tool.name == REFERENCE and reference is None:
                            reference = fig.verdicts
                        if fig.over:
                            over_at.setdefault(tool.name, (entries, peers))
                        print(f"peers: {entries} entries, {peers} peers, {tool.name} run "
                              f"{rep + 1}: {fig.over or 'ok'} ({time.monotonic() - t0:.1f} s)",
                              file=log, flush=True)
                rows = {name: summary(f) for name, f in figures.items()}
                ratios(rows)
                cases.append({"entries": entries, "peers": peers, "tools": rows})
    changed = host.changed()
    return {"bench": "peers", "started": started, "seconds": round(time.time() - started, 1),
            "repeat": settings.repeat, "cutoff_s": settings.cutoff,
            "connects": settings.connects, "installed": installed,
            "host_files_changed": changed, "root_ruleset_unchanged":
                root_ruleset() == ruleset_before, "cases": cases}
