"""`nodewall events`: the audit trail of a project, newest first, two lines per event: when,
which token id, the route; what changed and how many nodes' policies moved (`--format json`: the
API's events, with every resulting version). Reads only; prints what the server answered, which
holds no customer descriptions."""

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
    for e in events:
        token = e["token_id"] if e["token_id"] is not None else "-"
        typer.echo(f"#{e['id']} {e['at'][:19]}Z token {token} {e['method']} {e['path']}")
        summary = {k: v for k, v in e["summary"].items() if k != "action"}
        moved = len(e["versions"])
        typer.echo(f"    {e['summary'].get('action', '')} {json.dumps(summary, sort_keys=True)}"
                   f" ({moved} node polic{'y' if moved == 1 else 'ies'} changed)")
