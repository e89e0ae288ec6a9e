"""What every command group of `nodewall` shares: option aliases, exit helpers, spec loading.

Exit codes: 0 done; 1 the kernel or the server refused, or the kernel differs; 2 bad input,
with every error on its own line, each with its path; nothing is changed then. Only nodewall's
own messages are printed here, never customer text.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from nodewall.errors import SpecError
    from nodewall.spec.model import DeploymentSpec

SpecArg = Annotated[Path, typer.Argument(help="Deployment spec, YAML or JSON.", show_default=False)]
NodeOpt = Annotated[str, typer.Option("--node", "-n", help="Node name.")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="text or json.")]
BackendOpt = Annotated[
    str, typer.Option("--backend", "-b", help="nftables, iptables, or auto: the host's choice.")
]
MaybeBackendOpt = Annotated[
    str | None, typer.Option("--backend", "-b", help="Only this backend (default: every one).")
]

USAGE, REFUSED = 2, 1


def fail(code: int, *lines: str) -> NoReturn:
    """Print each line as an error and exit with `code`."""
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def fail_input(error: SpecError) -> NoReturn:
    """Report invalid input (every error, one per line) and exit 2."""
    fail(USAGE, *error.lines())


def fail_usage(message: str) -> NoReturn:
    fail(USAGE, message)


def load(path: Path) -> DeploymentSpec:
    from nodewall.errors import SpecError
    from nodewall.spec.load import load_spec

    try:
        return load_spec(path)
    except SpecError as exc:
        fail_input(exc)


def check_node(spec: DeploymentSpec, node: str) -> None:
    if node not in spec.node_names:
        known = ", ".join(spec.node_names) or "none"
        fail_usage(f"--node: unknown node {node!r} (nodes: {known})")


def check_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        fail_usage(f"--format: {fmt!r} is not one of text, json")
