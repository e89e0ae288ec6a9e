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
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nodewall.cli.common import (
    REFUSED,
    BackendOpt,
    FormatOpt,
    MaybeBackendOpt,
    NodeOpt,
    SpecArg,
    check_node,
    fail,
    fail_usage,
    load,
)
from nodewall.cli.confirm import StateDirOpt, confirm_cmd

if TYPE_CHECKING:
    from nodewall.backends.base import Backend
    from nodewall.policy.model import NodePolicy

def _backend(name: str) -> Backend:
    from nodewall.backends.registry import get_backend

    try:
        return get_backend(name)
    except ValueError as exc:
        fail_usage(f"--backend: {exc}")


def _resolve(chosen: Backend) -> Backend:
    """The concrete backend behind `auto`, after saying on stderr which one it picked and why."""
    from nodewall.backends.auto import AutoBackend
    from nodewall.backends.base import BackendError

    if not isinstance(chosen, AutoBackend):
        return chosen
    try:
        concrete = chosen.backend()
    except BackendError as exc:
        fail(REFUSED, str(exc))
    typer.echo(f"backend auto: {chosen.chosen} ({chosen.why})", err=True)
    return concrete


def _concrete_backends(only: str | None) -> list[Backend]:
    from nodewall.backends.registry import BACKENDS

    names = [only] if only else [n for n in BACKENDS if n != "auto"]
    return [_backend(n) for n in names]


def _policy(spec_path: Path, node: str, guard: bool = False) -> NodePolicy:
    """The node's policy; with `guard`, refused (exit 2) when it would shut every management
    network out (`nodewall.policy.lockout`)."""
    from nodewall.compiler.node import compile_node

    spec = load(spec_path)
    check_node(spec, node)
    policy = compile_node(spec, node)
    if guard:
        from nodewall.policy.lockout import lockout_reason

        _, spec_node = spec.node(node)
        why = lockout_reason(policy, [str(n) for n in spec.platform.management_networks],
                             [a.partition("/")[0] for a in spec_node.addresses])
        if why is not None:
            fail_usage(f"refused: {why}\n(nothing applied; `apply --force` applies it anyway)")
    return policy


def render_cmd(spec_path: SpecArg, node: NodeOpt, backend: BackendOpt = "auto") -> None:
    """Print the exact ruleset text `apply` would load."""
    policy = _policy(spec_path, node)
    chosen = _resolve(_backend(backend))
    typer.echo(chosen.render(policy), nl=False)


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
    from nodewall.backends.base import BackendError
    from nodewall.gcpause import collector_paused

    # One burst of short-lived work, then the process ends: the cyclic collector waits for the
    # end instead of scanning the spec, the policy and the table between the steps.
    with collector_paused():
        policy = _policy(spec_path, node, guard=not force)
        chosen = _resolve(_backend(backend))
        if confirm is not None:
            from nodewall.cli.confirm import apply_with_confirm

            apply_with_confirm(chosen, policy, confirm, state_dir)
        try:
            result = chosen.apply(policy)
        except BackendError as exc:
            fail(REFUSED, str(exc))
    how = "unchanged" if not result.changed else (
        "set elements updated" if result.incremental else "ruleset updated")
    typer.echo(f"applied policy {result.version} with {result.backend}: {how}; "
               f"{result.flows_cut} flow(s) cut, " + (
                   f"{result.sockets_closed} socket(s) closed" if result.sockets_closed is not None
                   else "sockets left open (this kernel cannot destroy sockets)"))


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
