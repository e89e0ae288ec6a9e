"""`nodewall lab`: a whole platform on this machine in network namespaces (`nodewall.lab`).
`nodewall lab` alone runs it all and removes it; `up`, `check`, `change`, `report` and `down`
go step by step on the lab recorded in the work directory. Exit 1 when a cell disagrees with the
policy or a step fails, 2 for bad options or without root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nodewall.cli.common import fail

if TYPE_CHECKING:
    from rich.console import Console

BACKENDS = ("nftables", "iptables")

lab_app = typer.Typer(help="A whole platform on this machine, in network namespaces: server, "
                           "agents, clients, the reachability matrix, live changes, a report.",
                      no_args_is_help=False, invoke_without_command=True)

WORKDIR = Path("/var/tmp/nodewall-lab")
BackendOpt = Annotated[str, typer.Option("--backend", "-b", help="nftables or iptables.")]
WorkdirOpt = Annotated[Path, typer.Option(
    "--workdir", help="Where the lab keeps its record, logs, runtime files and report "
    "(must be searchable by the postgres user).")]
KeepOpt = Annotated[bool, typer.Option("--keep", help="Leave the lab running at the end.")]


def _checked(backend: str) -> None:
    if backend not in BACKENDS:
        fail(2, f"--backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if os.geteuid() != 0:
        fail(2, "nodewall lab needs root: it creates network namespaces and applies firewalls "
                "inside them (run it with sudo)")


def _console() -> Console:
    import sys

    from rich.console import Console

    # the matrix is wide: when the output is not a terminal (a log, CI), do not cut it at 80
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@lab_app.callback()
def lab(ctx: typer.Context, backend: BackendOpt = "nftables",
        workdir: WorkdirOpt = WORKDIR, keep: KeepOpt = False) -> None:
    """Run the whole lab: up, the matrix, live changes, the report, down (unless --keep)."""
    if ctx.invoked_subcommand is not None:
        return
    _checked(backend)
    from nodewall.lab.run import whole

    raise typer.Exit(whole(_console(), workdir, backend, keep))


def _step(action: str, backend: str | None, workdir: Path, **kwargs: object) -> None:
    """One step; `backend` only for `up` (the others use the recorded lab's)."""
    from nodewall.lab import run
    from nodewall.lab.netns import LabError

    if action != "down":
        _checked(backend or "nftables")
    console = _console()
    try:
        if action == "up":
            try:
                with run.sigterm_as_interrupt():
                    run.bring_up(console, workdir, backend or "nftables")
            except (LabError, KeyboardInterrupt):
                from nodewall.lab.down import down

                down(workdir)
                raise
            return
        if action == "down":
            from nodewall.lab.down import down

            removed = down(workdir)
            console.print(f"removed {len(removed)} object(s)" if removed else "nothing to remove")
            return
        state = run.loaded(workdir)
        if action == "check":
            bad = run.measure(console, state, "check")
        elif action == "change":
            keys = kwargs.get("keys") or None
            bad = run.make_changes(console, state, keys)  # type: ignore[arg-type]
        else:
            bad = 0
        run.write_report(console, state)
        if bad:
            raise typer.Exit(1)
    except LabError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@lab_app.command("up")
def up_cmd(backend: BackendOpt = "nftables", workdir: WorkdirOpt = WORKDIR) -> None:
    """Create the lab and wait until every node's kernel holds its policy; leave it running."""
    _step("up", backend, workdir)


@lab_app.command("check")
def check_cmd(workdir: WorkdirOpt = WORKDIR) -> None:
    """Measure the reachability matrix of the running lab against its policies."""
    _step("check", None, workdir)


@lab_app.command("change")
def change_cmd(keys: Annotated[list[str] | None, typer.Argument(
        help="Which changes: ip_filter, replace, public_access, integration (default: all "
             "not yet made).")] = None, workdir: WorkdirOpt = WORKDIR) -> None:
    """Make the live changes through the API, timing each until every kernel enforces it."""
    from nodewall.lab.scenario import CHANGES

    known = [c.key for c in CHANGES]
    for key in keys or []:
        if key not in known:
            fail(2, f"change: {key!r} is not one of {', '.join(known)}")
    _step("change", None, workdir, keys=keys)


@lab_app.command("report")
def report_cmd(workdir: WorkdirOpt = WORKDIR) -> None:
    """Write the HTML report of what the running lab measured so far."""
    _step("report", None, workdir)


@lab_app.command("down")
def down_cmd(workdir: WorkdirOpt = WORKDIR) -> None:
    """Remove the lab: processes, namespaces, runtime files (also after a killed run)."""
    _step("down", None, workdir)


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
