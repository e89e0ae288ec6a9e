"""The kernel commands of `nodewall`: render, apply (with --force and --confirm), confirm,
status, remove.

`register(app)` adds them to the main typer app. Each command imports the spec, compiler and
backends inside its body (a backend may load a C library), and acts on the network namespace
the process runs in. Exit codes: 0 done (status: applied, no drift); 1 the kernel refused or
differs (status: drift or nothing applied); 2 bad input, with every error on its own line.
It must never print customer text unescaped: only nodewall's own messages and rulesets.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from nodewall.cli.common import (
    REFUSED,
    BackendOpt,
    FormatOpt,
    MaybeBackendOpt,
    NodeOpt,
    SpecArg,
    fail,
    run,
)
from nodewall.cli.confirm import StateDirOpt, confirm_cmd

if TYPE_CHECKING:
    from nodewall.backends.base import Backend

def _backend(name: str) -> Backend:
    from nodewall.cli import direct

    try:
        return direct.backend(name)
    except direct.Failed as exc:
        raise typer.Exit(direct.failed(exc)) from None


def _concrete_backends(only: str | None) -> list[Backend]:
    from nodewall.backends.registry import BACKENDS

    names = [only] if only else [n for n in BACKENDS if n != "auto"]
    return [_backend(n) for n in names]


def render_cmd(spec_path: SpecArg, node: NodeOpt, backend: BackendOpt = "auto") -> None:
    """Print the exact ruleset text `apply` would load."""
    from nodewall.cli import direct

    run(direct.render, spec_path, node, backend)


ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Apply even a policy that shuts every management network out.")]
ConfirmOpt = Annotated[int | None, typer.Option(
    "--confirm", min=1, max=3600, show_default=False,
    help="Roll back by itself unless `nodewall confirm` runs within this many seconds.")]


def apply_cmd(spec_path: SpecArg, node: NodeOpt, backend: BackendOpt = "auto",
              force: ForceOpt = False, confirm: ConfirmOpt = None,
              state_dir: StateDirOpt = None) -> None:
    """Apply the node's policy to this network namespace, atomically; exit 0 only when the
    kernel, read back, holds it. A policy that would shut every management network out is
    refused (exit 2) unless --force."""
    from nodewall.cli import direct

    if confirm is None:
        run(direct.apply, spec_path, node, backend, force)
        return
    from nodewall.cli.confirm import apply_with_confirm
    from nodewall.gcpause import collector_paused

    with collector_paused():  # as in `direct.apply`
        try:
            policy = direct.policy(spec_path, node, guard=not force)
            chosen = direct.resolve(direct.backend(backend))
        except direct.Failed as exc:
            raise typer.Exit(direct.failed(exc)) from None
        apply_with_confirm(chosen, policy, confirm, state_dir)


def status_cmd(backend: MaybeBackendOpt = None, fmt: FormatOpt = "text") -> None:
    """What is applied here: policy version, backend and drift."""
    from nodewall.backends.base import BackendError

    found = []
    for chosen in _concrete_backends(backend):
        try:
            found.append(chosen.status())
        except BackendError as exc:
            fail(REFUSED, str(exc))
    present = [s for s in found if s.present]
    if fmt == "json":
        typer.echo(json.dumps([{"backend": s.backend, "present": s.present, "version": s.version,
                                "drift": list(s.drift)} for s in found], indent=2))
    else:
        if not present:
            typer.echo("nothing applied (" + "; ".join(
                f"{s.backend}: {', '.join(s.drift) or 'absent'}" for s in found) + ")")
        for s in present:
            typer.echo(f"backend: {s.backend}\nversion: {s.version or 'unknown'}")
            typer.echo("drift: none" if not s.drift else "drift:")
            for line in s.drift:
                typer.echo(f"  - {line}")
    if not present or any(s.drift for s in present):
        raise typer.Exit(1)


def remove_cmd(backend: MaybeBackendOpt = None) -> None:
    """Remove nodewall's objects (of either backend, whichever are present) and nothing else."""
    from nodewall.backends.base import BackendError

    removed = []
    for chosen in _concrete_backends(backend):
        try:
            if chosen.remove():
                removed.append(chosen.name)
        except BackendError as exc:
            fail(REFUSED, str(exc))
    typer.echo(f"removed: {', '.join(removed)}" if removed else "nothing to remove")


def register(app: typer.Typer) -> None:
    """Add render, apply, status and remove to the `nodewall` app."""
    app.command("render")(render_cmd)
    app.command("apply")(apply_cmd)
    app.command("status")(status_cmd)
    app.command("remove")(remove_cmd)
    app.command("confirm")(confirm_cmd)
