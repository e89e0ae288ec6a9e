"""`nodewall token create | list | revoke`: the control plane's access tokens.

`create` works on the store (`--database`), also before any server has started, and prints the
new token: the only time its text is shown. `list` and `revoke` work on the store too, or,
with `--server`, through the API (`GET /v1/tokens`, `DELETE /v1/tokens/ID`, an admin token
needed). A list shows ids, kinds, nodes and times, never a token's text or hash. A revoked
token is refused by every server process within a second.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from nodewall.cli.common import fail
from nodewall.cli.platform import DatabaseOpt, JsonOpt, TokenFileOpt, TokenOpt, _api, _emit

token_app = typer.Typer(help="Access tokens of the control plane.", no_args_is_help=True,
                        add_completion=False)

RemoteOpt = Annotated[str | None, typer.Option(
    "--server", help="Work through this control plane's API instead of on the store "
    "(with an admin --token-file).")]


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    admin: Annotated[bool, typer.Option("--admin", help="A token that may change state.")] =
    False,
    node: Annotated[str | None, typer.Option("--node", help="A token for one node's agent.")] =
    None,
    allow_unknown_node: Annotated[bool, typer.Option(
        "--allow-unknown-node", help="Allow --node N before node N is added.")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Create a token, store its hash, print it (the only time it is shown)."""
    if admin == (node is not None):
        fail(2, "give exactly one of --admin or --node N")
    if node is not None:
        import re

        from nodewall.spec.vocabulary import NAME_PATTERN

        if not re.fullmatch(NAME_PATTERN, node):
            fail(2, f"--node: {node!r} is not a node name (lower-case letter, then up to 62 "
                    "lower-case letters, digits or '-')")
    from nodewall.server.auth import create_token
    from nodewall.store import open_store
    from nodewall.store.tokens import node_exists

    store = open_store(database)
    try:
        if node is not None and not allow_unknown_node and not node_exists(store, node):
            fail(2, f"--node: no node {node!r} in this store (add it first, or give "
                    "--allow-unknown-node to make its token beforehand)")
        typer.echo(create_token(store, node=node))
    finally:
        store.dispose()


@token_app.command("list")
def token_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="Revoked tokens too.")] = False,
    as_json: JsonOpt = False, database: DatabaseOpt = None, server: RemoteOpt = None,
    token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """List tokens: id, kind, node, created (and revoked); never their text."""
    if server:
        query = "?include_revoked=true" if include_revoked else ""
        rows = _api(server, token, token_file).call("GET", f"/v1/tokens{query}")["tokens"]
    else:
        from nodewall.store import open_store
        from nodewall.store.tokens import list_tokens

        store = open_store(database)
        try:
            rows = [_row(t.id, t.kind, t.node, t.created_at, t.revoked_at)
                    for t in list_tokens(store, include_revoked=include_revoked)]
        finally:
            store.dispose()
    if as_json:
        _emit({"tokens": rows})
        return
    typer.echo("id\tkind\tnode\tcreated\trevoked" if include_revoked else
               "id\tkind\tnode\tcreated")
    for r in rows:
        cells = [str(r["id"]), r["kind"], r["node"] or "-", _when(r["created_at"])]
        if include_revoked:
            cells.append(_when(r["revoked_at"]) if r["revoked_at"] else "-")
        typer.echo("\t".join(cells))


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `token list`).",
                                            min=1, max=2**31 - 1, show_default=False)],
    database: DatabaseOpt = None, server: RemoteOpt = None,
    token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Revoke a token: every server process refuses it within a second."""
    if server:
        _api(server, token, token_file).call("DELETE", f"/v1/tokens/{token_id}")
    else:
        from nodewall.store import open_store
        from nodewall.store.tokens import RevokeRefused, revoke_token

        store = open_store(database)
        try:
            revoke_token(store, token_id)
        except RevokeRefused as exc:
            fail(2 if exc.status == 404 else 1, str(exc))
        finally:
            store.dispose()
    typer.echo(f"token {token_id} revoked")


def _row(token_id: int, kind: str, node: str | None, created: datetime,
         revoked: datetime | None) -> dict[str, Any]:
    return {"id": token_id, "kind": kind, "node": node, "created_at": _unix(created),
            "revoked_at": _unix(revoked) if revoked else None}


def _unix(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

