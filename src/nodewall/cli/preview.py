"""`--dry-run` of the platform commands: the change is sent with `?dry_run=true` and the
server's preview is printed, as a readable diff (rich) or, with `--format json`, as the API's
JSON. Nothing is changed either way.

The text form groups nodes whose diff is the same (a 1000-node service's ip_filter edit is one
diff and a list of nodes with their versions). It prints only what the server answered, which
holds no customer descriptions (the preview's `result` echoes the request, and is shown by
`--format json` only).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Protocol

import typer

from nodewall.cli.common import check_format

DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Show what the change would do to the nodes' policies; change nothing.")]
PreviewFormatOpt = Annotated[str, typer.Option(
    "--format", "-f", help="Preview as text (a diff) or json.")]


class Caller(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


def with_query(path: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{path}{'&' if '?' in path else '?'}{query}"


def send(api: Caller, method: str, path: str, body: dict[str, Any] | None, dry_run: bool,
         fmt: str) -> Any:
    """Make the change, or with `dry_run` preview it and print the preview (returns None)."""
    check_format(fmt)
    if not dry_run:
        return api.call(method, path, body)
    show(api.call(method, with_query(path, dry_run="true"), body), fmt)
    return None


def _diff_key(node: dict[str, Any]) -> str:
    return json.dumps([node["sets"], node["ports_opened"], node["ports_closed"],
                       node["version_before"] is None, node["version_after"] is None])


def show(preview: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps(preview, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    summary = preview.get("summary") or {}
    action = summary.get("action", "no change")
    console.print(f"[bold]dry run[/]: {escape(str(action))} (nothing was changed)")
    for key, value in sorted(summary.items()):
        if key != "action":
            console.print(f"  {escape(key)}: {escape(json.dumps(value, sort_keys=True))}")
    nodes = preview.get("nodes") or []
    if not nodes:
        console.print("no node's policy changes")
        return
    console.print(f"{len(nodes)} node(s) whose policy changes:")
    groups: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        groups.setdefault(_diff_key(node), []).append(node)
    for members in groups.values():
        _show_group(console, members)


def _show_group(console: Any, members: list[dict[str, Any]]) -> None:
    from rich.markup import escape

    first = members[0]
    console.print()
    for node in members:
        before, after = node["version_before"] or "(none)", node["version_after"] or "(removed)"
        console.print(f"[bold]{escape(node['node'])}[/]  {escape(before)} -> {escape(after)}")
    if first["version_after"] is None:  # everything goes: say so, not each network
        networks = sum(len(c["removed"]) for c in first["sets"])
        console.print(f"  [red]policy removed[/]: {len(first['sets'])} sets ({networks} "
                      f"networks), {len(first['ports_closed'])} open ports")
        return
    for change in first["sets"]:
        console.print(f"  set {escape(change['set'])}")
        for net in change["added"]:
            console.print(f"    [green]+ {escape(net)}[/]")
        for net in change["removed"]:
            console.print(f"    [red]- {escape(net)}[/]")
    for label, colour, key in (("opened", "green", "ports_opened"),
                               ("closed", "red", "ports_closed")):
        for port in first[key]:
            console.print(f"  [{colour}]port {label}: {port['port']}/{escape(port['protocol'])}"
                          f" from {escape(port['from'])}[/]")
