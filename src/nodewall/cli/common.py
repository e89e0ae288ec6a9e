"""What every command group of `nodewall` shares: option aliases and exit helpers.

Exit codes: 0 done; 1 the kernel or the server refused, or the kernel differs; 2 bad input,
with every error on its own line, each with its path; nothing is changed then. Only nodewall's
own messages are printed here, never customer text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

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


def fail_usage(message: str) -> NoReturn:
    fail(USAGE, message)


def run(body: Callable[..., None], *args: Any) -> None:
    """Run a command body of `nodewall.cli.direct`; its failure becomes the command's exit."""
    from nodewall.cli.direct import Failed, failed

    try:
        body(*args)
    except Failed as exc:
        raise typer.Exit(failed(exc)) from None


def check_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        fail_usage(f"--format: {fmt!r} is not one of text, json")
