"""The whole lab in one go (`nodewall lab`): up, the matrix, each live change followed by the
matrix again, the report, down (unless kept). SIGTERM and Ctrl-C end it through the same
clean-up as a failure. The steps are also offered one by one (`lab up`, `check`, `change`,
`report`, `down`), each working on the lab recorded in the work directory.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from rich.console import Console

from nodewall.lab import changes, check, report, scenario
from nodewall.lab.down import down
from nodewall.lab.netns import LabError
from nodewall.lab.state import LabState
from nodewall.lab.up import connect, up

DEFAULT_WORKDIR = Path("/var/tmp/nodewall-lab")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def bring_up(console: Console, workdir: Path, backend: str) -> LabState:
    with console.status("starting the lab") as status:
        state = up(workdir, backend, lambda text: status.update(text))
    nodes = sum(len(n) for n in state.nodes.values())
    console.print(f"[green]lab up[/] in {state.up_seconds:.1f} s: {nodes} nodes on "
                  f"{backend}, every kernel holding its policy (prefix {state.prefix}, "
                  f"work dir {workdir})")
    return state


def measure(console: Console, state: LabState, title: str) -> int:
    with console.status(f"measuring the matrix ({title})"):
        record = check.measure(state, title)
    check.show(console, record)
    return len(check.disagreements(record))


def make_changes(console: Console, state: LabState, keys: list[str] | None = None,
                 remeasure: bool = True) -> int:
    """Each change (all, or those named), timed, each followed by the matrix; disagreements."""
    bad = 0
    done = {c["key"] for c in state.changes}
    for change in scenario.CHANGES:
        if keys is not None and change.key not in keys:
            continue
        if change.key in done:
            console.print(f"[dim]{change.title}: already made[/]")
            continue
        api = connect(state)
        try:
            with console.status(change.title):
                record = changes.make(state, api, change)
        finally:
            api.close()
        changed = len(record["nodes"])
        console.print(f"[bold]{change.title}[/]: API {record['api_seconds'] * 1000:.0f} ms, "
                      f"every kernel enforcing in {record['converged_seconds'] * 1000:.0f} ms "
                      f"({changed} node(s) changed)")
        if remeasure:
            bad += measure(console, state, f"after: {change.title}")
    return bad


def write_report(console: Console, state: LabState) -> Path:
    path = report.write(state)
    console.print(f"report: {path}")
    return path


def whole(console: Console, workdir: Path, backend: str, keep: bool) -> int:
    """`nodewall lab`: 0 when every cell agreed and every change converged."""
    bad = 0
    state: LabState | None = None
    try:
        with sigterm_as_interrupt():
            state = bring_up(console, workdir, backend)
            bad += measure(console, state, "at start")
            bad += make_changes(console, state)
            write_report(console, state)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        bad = -1
    except LabError as exc:
        console.print(f"[bold red]lab failed:[/] {exc}")
        bad = -1
    finally:
        if state is not None and state.matrices and bad < 0:
            write_report(console, state)
        if not keep:
            with console.status("removing the lab"):
                down(workdir)
            console.print("lab removed (namespaces, processes, runtime files)")
        else:
            console.print(f"lab kept running: `nodewall lab down --workdir {workdir}` removes "
                          "it")
    if bad:
        if bad > 0:
            console.print(f"[bold red]{bad} disagreement(s) between the kernel and the "
                          "policy[/]")
        return 1
    return 0


def loaded(workdir: Path) -> LabState:
    state = LabState.load(workdir)
    if state is None:
        raise LabError(f"no lab is recorded in {workdir}: run `nodewall lab up` first")
    return state
