"""The platform commands that list and delete: `project list|delete`, `vpc delete`,
`integration list|delete`. Added to the command groups of `nodewall.cli.platform` (which
stays the home of the API client and the create/update commands). Deletes ask first unless
`--yes` or `--dry-run`; lists follow the API's pages to the end."""

from __future__ import annotations

from typing import Annotated

import typer

from nodewall.cli.platform import (
    DEFAULT_SERVER,
    ProjectOpt,
    ServerOpt,
    TokenFileOpt,
    TokenOpt,
    YesOpt,
    _api,
    _emit,
    _emit_change,
    integration_app,
    project_app,
    vpc_app,
)
from nodewall.cli.preview import DryRunOpt, PreviewFormatOpt

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]


def register() -> None:
    project_app.command("list")(project_list)
    project_app.command("delete")(project_delete)
    vpc_app.command("delete")(vpc_delete)
    integration_app.command("list")(integration_list)
    integration_app.command("delete")(integration_delete)


def project_list(as_json: JsonOpt = False, server: ServerOpt = DEFAULT_SERVER,
                 token: TokenOpt = None, token_file: TokenFileOpt = None) -> None:
    """List the projects."""
    projects = _api(server, token, token_file).collect("/v1/project", "projects")
    if as_json:
        _emit({"projects": projects})
        return
    for p in projects:
        typer.echo(f"{p['project_name']}\tbase port {p['base_port'] or '-'}")


def project_delete(
    name: Annotated[str, typer.Argument(help="Project name.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Delete its services (nodes, ports, integrations) too.")] = False,
    yes: YesOpt = False, dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Delete a project (refused while it has services, unless --force)."""
    if not (yes or dry_run):
        what = " with all its services and nodes" if force else ""
        typer.confirm(f"Delete project {name}{what}?", abort=True)
    path = f"/v1/project/{name}" + ("?force=true" if force else "")
    _emit_change(_api(server, token, token_file), "DELETE", path, None, dry_run, fmt)


def vpc_delete(
    vpc: Annotated[str, typer.Argument(help="project_vpc_id.")], project: ProjectOpt,
    yes: YesOpt = False, dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Delete a project VPC (refused while a service uses it)."""
    if not (yes or dry_run):
        typer.confirm(f"Delete VPC {vpc}?", abort=True)
    _emit_change(_api(server, token, token_file), "DELETE",
                 f"/v1/project/{project}/vpcs/{vpc}", None, dry_run, fmt)


def integration_list(project: ProjectOpt, as_json: JsonOpt = False,
                     server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
                     token_file: TokenFileOpt = None) -> None:
    """List the project's integrations with their ids."""
    items = _api(server, token, token_file).collect(f"/v1/project/{project}/integration",
                                                    "integrations")
    if as_json:
        _emit({"integrations": items})
        return
    for i in items:
        typer.echo(f"{i['integration_id']}\t{i['integration_type']}\t{i['source_service']}"
                   f"\t{i['dest_service'] or '-'}")


def integration_delete(
    integration_id: Annotated[int, typer.Argument(help="Integration id (integration list).")],
    project: ProjectOpt,
    yes: YesOpt = False, dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Delete an integration (both ends' policies are recompiled)."""
    if not (yes or dry_run):
        typer.confirm(f"Delete integration {integration_id}?", abort=True)
    _emit_change(_api(server, token, token_file), "DELETE",
                 f"/v1/project/{project}/integration/{integration_id}", None, dry_run, fmt)

