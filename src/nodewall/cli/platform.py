"""The platform commands of `nodewall`: `server` and the API client commands `platform`,
`project`, `vpc`, `service`, `node`, `integration` (`token` is `nodewall.cli.tokens`), in the
habits of the platform's own CLI (`-c key=value` user_config edits, `--project`, `--json`).

Heavy modules (httpx, the server, SQLAlchemy) are imported inside the commands so that
`nodewall validate` stays fast. Invalid input exits 2 with every error on its own line; an API
refusal exits 1. Emptying ip_filter asks first (or `--yes`). Tokens are never printed except by
`token create`, which prints the new one once. Every command that changes state takes
`--dry-run` (`nodewall.cli.preview`); deletes, lists and `events` are in `nodewall.cli.inventory`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nodewall.cli.common import fail
from nodewall.cli.preview import DryRunOpt, PreviewFormatOpt, send

if TYPE_CHECKING:
    import httpx

DEFAULT_LISTEN = "127.0.0.1:9780"
DEFAULT_SERVER = f"http://{DEFAULT_LISTEN}"

ServerOpt = Annotated[str, typer.Option("--server", envvar="NODEWALL_SERVER",
                                        help="Control-plane URL.")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="NODEWALL_TOKEN",
                                              help="Bearer token (prefer --token-file).")]
TokenFileOpt = Annotated[Path | None, typer.Option("--token-file", envvar="NODEWALL_TOKEN_FILE",
                                                   help="File holding the bearer token.")]
ProjectOpt = Annotated[str, typer.Option("--project", envvar="NODEWALL_PROJECT",
                                         help="Project name.")]
ConfigOpt = Annotated[list[str] | None, typer.Option(
    "-c", "--config", help="user_config edit KEY=VALUE; VALUE is JSON or a plain string; "
    "dotted keys reach nested settings (-c public_access.pg=true).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DatabaseOpt = Annotated[str | None, typer.Option(
    "--database", envvar="NODEWALL_DATABASE",
    help="Store URL: sqlite:///path or postgresql://... (default: a local SQLite file).")]


# --- talking to the API --------------------------------------------------------------------

def _token(token: str | None, token_file: Path | None) -> str:
    if token:
        return token
    if token_file is not None:
        try:
            return token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(2, f"--token-file: cannot read {token_file}: {exc.strerror}")
    fail(2, "no token: give --token-file, --token or NODEWALL_TOKEN")


class Api:
    """A small client of the control-plane API that turns error answers into exits."""

    def __init__(self, server: str, token: str | None, token_file: Path | None) -> None:
        import httpx

        self._client: httpx.Client = httpx.Client(
            base_url=server.rstrip("/"), timeout=60,
            headers={"Authorization": f"Bearer {_token(token, token_file)}"})

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            fail(1, f"cannot reach the control plane: {type(exc).__name__}: {exc}")
        if response.status_code >= 400:
            try:
                messages = [e["message"] for e in response.json()["errors"]]
            except (ValueError, KeyError, TypeError):
                messages = [f"HTTP {response.status_code}"]
            fail(2 if response.status_code == 400 else 1, *messages)
        return response.json()

    def collect(self, path: str, key: str) -> list[Any]:
        """Every item of a paginated list route, following `next_cursor`."""
        items: list[Any] = []
        cursor = None
        while True:
            page = self.call("GET", path + (f"?limit=1000&cursor={cursor}" if cursor
                                            else "?limit=1000"))
            items += page[key]
            cursor = page.get("next_cursor")
            if not cursor:
                return items


def _api(server: str, token: str | None, token_file: Path | None) -> Api:
    return Api(server, token, token_file)


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


# --- -c KEY=VALUE ---------------------------------------------------------------------------

def parse_config_edits(edits: list[str]) -> list[tuple[list[str], Any]]:
    """['ip_filter=["10.0.0.0/8"]', 'public_access.pg=true'] -> [(keys, value), ...]."""
    result = []
    for edit in edits:
        key, sep, raw = edit.partition("=")
        if not sep or not key:
            fail(2, f"-c {edit!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        result.append((key.split("."), value))
    return result


def apply_config_edits(current: dict[str, Any], edits: list[tuple[list[str], Any]]) -> dict[
    str, Any
]:
    """The top-level user_config keys to send: each edited key with its new nested value."""
    changed: dict[str, Any] = {}
    for keys, value in edits:
        head = keys[0]
        if len(keys) == 1:
            changed[head] = value
            continue
        base = changed.get(head, current.get(head))
        node: dict[str, Any] = json.loads(json.dumps(base)) if isinstance(base, dict) else {}
        changed[head] = node
        for key in keys[1:-1]:
            child = node.get(key)
            node[key] = child if isinstance(child, dict) else {}
            node = node[key]
        node[keys[-1]] = value
    return changed


def _confirm_ip_filter(user_config: dict[str, Any], yes: bool) -> None:
    if user_config.get("ip_filter") == [] and not yes:
        typer.confirm("An empty ip_filter lets no client connect. Continue?", abort=True)


# --- commands ------------------------------------------------------------------------------

def register(app: typer.Typer) -> None:
    """Add server, platform, project, vpc, service, node and integration commands."""
    app.command("server")(server_command)
    for name, group in (("platform", platform_app),
                        ("project", project_app), ("vpc", vpc_app),
                        ("service", service_app), ("node", node_app),
                        ("integration", integration_app)):
        app.add_typer(group, name=name)


def server_command(
    database: DatabaseOpt = None,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve on.")] =
    DEFAULT_LISTEN,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] =
    False,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", help="PEM certificate (chain): serve HTTPS (with --tls-key).")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", help="PEM private key of --tls-cert.")] = None,
    insecure_http: Annotated[bool, typer.Option(
        "--insecure-http", help="Allow plain HTTP on a non-loopback address.")] = False,
    db_wait: Annotated[float, typer.Option(
        "--db-wait", min=0.1, max=300,
        help="Seconds a request waits for the database (a locked SQLite file, a PostgreSQL "
             "connection) before it is answered 503.")] = 10.0,
) -> None:
    """Run the control plane (SQLite file by default; PostgreSQL by URL for a fleet)."""
    from nodewall.server.run import check_listen, parse_listen, run

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        fail(2, f"--listen: {exc}")
    if (tls_cert is None) != (tls_key is None):
        fail(2, "--tls-cert and --tls-key go together")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not path.is_file():
            fail(2, f"{flag}: {path} is not a readable file")
    refused = check_listen(host, tls=tls_cert is not None, insecure_http=insecure_http)
    if refused:
        fail(2, f"--listen: {refused}")
    run(database, host, port, access_log=access_log,
        tls_cert=str(tls_cert) if tls_cert else None, tls_key=str(tls_key) if tls_key else None,
        db_wait=db_wait)


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False)


platform_app = _group("Platform settings every node's policy uses.")
project_app = _group("Projects.")
vpc_app = _group("Project VPCs.")
service_app = _group("Services.")
node_app = _group("Nodes of a service.")
integration_app = _group("Service integrations.")


@platform_app.command("set")
def platform_set(
    management_network: Annotated[list[str], typer.Option(
        "--management-network", "-m", help="Source network of 22/tcp and 30287/tcp.")],
    dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Set the management networks (every node's policy is recompiled)."""
    _emit_change(_api(server, token, token_file), "PUT", "/v1/platform",
                 {"management_networks": management_network}, dry_run, fmt)


@project_app.command("create")
def project_create(
    name: Annotated[str, typer.Argument(help="Project name.")],
    base_port: Annotated[int | None, typer.Option("--base-port")] = None,
    dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Create a project."""
    _emit_change(_api(server, token, token_file), "POST", "/v1/project",
                 {"project": name, "base_port": base_port}, dry_run, fmt)


@vpc_app.command("create")
def vpc_create(
    project: ProjectOpt,
    cloud: Annotated[str, typer.Option("--cloud")],
    network_cidr: Annotated[str, typer.Option("--network-cidr")],
    peer_cidr: Annotated[list[str] | None, typer.Option("--peer-cidr")] = None,
    dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Create a project VPC; prints its project_vpc_id."""
    _emit_change(_api(server, token, token_file), "POST", f"/v1/project/{project}/vpcs",
                 {"cloud_name": cloud, "network_cidr": network_cidr,
                  "peer_cidrs": peer_cidr or []}, dry_run, fmt)


@vpc_app.command("list")
def vpc_list(project: ProjectOpt, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
             token_file: TokenFileOpt = None) -> None:
    """List the project's VPCs."""
    _emit({"vpcs": _api(server, token, token_file).collect(f"/v1/project/{project}/vpcs",
                                                           "vpcs")})


@service_app.command("create")
def service_create(
    name: Annotated[str, typer.Argument(help="Service name.")],
    project: ProjectOpt,
    service_type: Annotated[str, typer.Option("--service-type", "-t")],
    cloud: Annotated[str, typer.Option("--cloud")],
    project_vpc_id: Annotated[str | None, typer.Option("--project-vpc-id")] = None,
    environment: Annotated[str | None, typer.Option("--environment")] = None,
    socks5_proxy: Annotated[str | None, typer.Option("--socks5-proxy")] = None,
    config: ConfigOpt = None, yes: YesOpt = False, as_json: JsonOpt = False,
    dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Create a service; its ports are allocated once and kept."""
    user_config = apply_config_edits({}, parse_config_edits(config or []))
    _confirm_ip_filter(user_config, yes or dry_run)
    body = {"service_name": name, "service_type": service_type, "cloud_name": cloud,
            "project_vpc_id": project_vpc_id, "environment": environment,
            "socks5_proxy": socks5_proxy, "user_config": user_config}
    answer = send(_api(server, token, token_file), "POST", f"/v1/project/{project}/service",
                  body, dry_run, fmt)
    if answer is not None:
        _show_service(answer["service"], as_json)


@service_app.command("update")
def service_update(
    name: Annotated[str, typer.Argument(help="Service name.")],
    project: ProjectOpt,
    config: ConfigOpt = None, yes: YesOpt = False, as_json: JsonOpt = False,
    dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Change user_config keys (-c ip_filter='["203.0.113.0/24"]'); others stay."""
    edits = parse_config_edits(config or [])
    if not edits:
        fail(2, "nothing to change: give -c KEY=VALUE")
    api = _api(server, token, token_file)
    path = f"/v1/project/{project}/service/{name}"
    current: dict[str, Any] = {}
    if any(len(keys) > 1 for keys, _ in edits):
        current = api.call("GET", path)["service"]["user_config"]
    user_config = apply_config_edits(current, edits)
    _confirm_ip_filter(user_config, yes or dry_run)
    answer = send(api, "PUT", path, {"user_config": user_config}, dry_run, fmt)
    if answer is not None:
        _show_service(answer["service"], as_json)


@service_app.command("get")
def service_get(
    name: Annotated[str, typer.Argument(help="Service name.")], project: ProjectOpt,
    as_json: JsonOpt = False,
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Show a service: components with ports and routes, nodes, user_config."""
    answer = _api(server, token, token_file).call("GET", f"/v1/project/{project}/service/{name}")
    _show_service(answer["service"], as_json)


@service_app.command("list")
def service_list(
    project: ProjectOpt, as_json: JsonOpt = False,
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """List the project's services."""
    answer = {"services": _api(server, token, token_file).collect(
        f"/v1/project/{project}/service", "services")}
    if as_json:
        _emit(answer)
        return
    for s in answer["services"]:
        ports = " ".join(f"{c['component']}:{c['port']}" for c in s["components"])
        typer.echo(f"{s['service_name']}\t{s['service_type']}\t{s['cloud_name']}\t"
                   f"{len(s['nodes'])} nodes\t{ports}")


@service_app.command("delete")
def service_delete(
    name: Annotated[str, typer.Argument(help="Service name.")], project: ProjectOpt,
    yes: YesOpt = False, dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Delete a service; its ports are released."""
    if not (yes or dry_run):
        typer.confirm(f"Delete service {name} and release its ports?", abort=True)
    _emit_change(_api(server, token, token_file), "DELETE",
                 f"/v1/project/{project}/service/{name}", None, dry_run, fmt)


def _show_service(service: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit({"service": service})
        return
    typer.echo(f"{service['service_name']} ({service['service_type']}, {service['cloud_name']}, "
               f"{service['environment']}, vpc {service['project_vpc_id'] or '-'})")
    for c in service["components"]:
        typer.echo(f"  component {c['component']}: {c['port']} ({c['route']})")
    for n in service["nodes"]:
        typer.echo(f"  node {n['name']}: {', '.join(n['addresses'])} "
                   f"policy {n['policy_version'] or '-'} applied {n['applied_version'] or '-'}")
    typer.echo("  user_config: " + json.dumps(service["user_config"], sort_keys=True))


def _emit_change(api: Api, method: str, path: str, body: dict[str, Any] | None,
                 dry_run: bool, fmt: str) -> None:
    """Make the change and print the answer as JSON, or print its preview."""
    answer = send(api, method, path, body, dry_run, fmt)
    if answer is not None:
        _emit(answer)


def _node_put(server: str, token: str | None, token_file: Path | None, project: str,
              service: str, node: str, addresses: list[str], dry_run: bool, fmt: str) -> None:
    _emit_change(_api(server, token, token_file), "PUT",
                 f"/v1/project/{project}/service/{service}/node/{node}",
                 {"addresses": addresses}, dry_run, fmt)


AddressOpt = Annotated[list[str], typer.Option("--address", "-a", help="Node address (repeat).")]
ServiceArg = Annotated[str, typer.Argument(help="Service name.")]
NodeArg = Annotated[str, typer.Argument(help="Node name.")]


@node_app.command("status")
def node_status(
    project: ProjectOpt,
    service: Annotated[str | None, typer.Option("--service", help="One service only.")] = None,
    as_json: JsonOpt = False, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Per node: desired and applied version, backend, last error, last report; lagging nodes
    flagged (exit 1 when any lags)."""
    import time

    query = f"?service={service}" if service else ""
    answer = _api(server, token, token_file).call(
        "GET", f"/v1/project/{project}/nodes/status{query}")
    if as_json:
        _emit(answer)
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table("service", "node", "desired", "applied", "backend", "last report",
                      "error", title=f"nodes of {project}")
        now = time.time()
        for n in answer["nodes"]:
            seen = "never" if n["reported_at"] is None else f"{now - n['reported_at']:.0f} s ago"
            applied = escape(n["applied_version"] or "-")
            if n["lagging"]:
                behind = n["behind_seconds"]
                applied = f"[red]{applied} (lagging{f', {behind:.0f} s' if behind else ''})[/]"
            table.add_row(*(escape(str(v)) for v in (n["service"], n["node"],
                                                     n["desired_version"] or "-")),
                          applied, escape(n["backend"] or "-"), seen, escape(n["error"] or ""))
        Console(highlight=False).print(table)
    if any(n["lagging"] for n in answer["nodes"]):
        raise typer.Exit(1)


@node_app.command("add")
def node_add(service: ServiceArg, node: NodeArg, project: ProjectOpt, address: AddressOpt,
             dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
             server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
             token_file: TokenFileOpt = None) -> None:
    """Add a node to a service (its peers and integration partners are recompiled)."""
    _node_put(server, token, token_file, project, service, node, address, dry_run, fmt)


@node_app.command("replace")
def node_replace(service: ServiceArg, node: NodeArg, project: ProjectOpt, address: AddressOpt,
                 dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
                 server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
                 token_file: TokenFileOpt = None) -> None:
    """Give a node new addresses (e.g. after maintenance)."""
    _node_put(server, token, token_file, project, service, node, address, dry_run, fmt)


@node_app.command("remove")
def node_remove(service: ServiceArg, node: NodeArg, project: ProjectOpt,
                dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
                server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
                token_file: TokenFileOpt = None) -> None:
    """Remove a node from a service."""
    _emit_change(_api(server, token, token_file), "DELETE",
                 f"/v1/project/{project}/service/{service}/node/{node}", None, dry_run, fmt)


@integration_app.command("create")
def integration_create(
    project: ProjectOpt,
    integration_type: Annotated[str, typer.Option("--integration-type", "-t")],
    source: Annotated[str, typer.Option("--source-service", "-s")],
    dest: Annotated[str | None, typer.Option("--dest-service", "-d")] = None,
    dry_run: DryRunOpt = False, fmt: PreviewFormatOpt = "text",
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, token_file: TokenFileOpt = None,
) -> None:
    """Create an integration between two services (or a prometheus one on one service)."""
    _emit_change(_api(server, token, token_file), "POST", f"/v1/project/{project}/integration",
                 {"integration_type": integration_type, "source_service": source,
                  "dest_service": dest}, dry_run, fmt)

