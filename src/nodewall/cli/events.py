"""`nodewall events`: the audit trail of a project, newest first: when, which token id, the
route, what changed and how many nodes' policies moved (`--format json`: the API's events, with
every resulting version). Reads only; prints what the server answered, which holds no customer
descriptions."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from nodewall.cli.common import FormatOpt, check_format, fail
from nodewall.cli.platform import (
    DEFAULT_SERVER,
    ProjectOpt,
    ServerOpt,
    TokenFileOpt,
    TokenOpt,
    _api,
)


def register(app: typer.Typer) -> None:
    app.command("events")(events_command)


def events_command(
    project: ProjectOpt,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many events.")] = 20,
    fmt: FormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Show the project's audit trail: accepted changes, newest first."""
    check_format(fmt)
    if limit < 1:
        fail(2, "--limit: must be at least 1")
    api = _api(server, token, token_file)
    events: list[dict[str, Any]] = []
    cursor = None
    while len(events) < limit:
        page_size = min(1000, limit - len(events))
        query = f"?limit={page_size}" + (f"&cursor={cursor}" if cursor else "")
        page = api.call("GET", f"/v1/project/{project}/events{query}")
        events += page["events"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if fmt == "json":
        typer.echo(json.dumps({"events": events}, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table("id", "at", "token", "route", "change", "nodes", title=f"events of {project}")
    for e in events:
        summary = {k: v for k, v in e["summary"].items() if k != "action"}
        detail = e["summary"].get("action", "") + " " + json.dumps(summary, sort_keys=True)
        table.add_row(str(e["id"]), escape(e["at"][:19] + "Z"),
                      str(e["token_id"]) if e["token_id"] is not None else "-",
                      escape(f"{e['method']} {e['path']}"), escape(detail),
                      str(len(e["versions"])))
    Console(highlight=False).print(table)
