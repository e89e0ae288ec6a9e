"""The `nodewall` command line: validate, plan, explain and schema here; the kernel commands
(render, apply, status, remove) and the platform commands (server, token, project, ...) are
registered from their own modules.

Commands import what they need inside their bodies, so `nodewall validate` starts fast. Bad
input exits 2 with every error on its own line, each with its path; nothing is changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from nodewall.errors import SpecError
    from nodewall.spec import DeploymentSpec

app = typer.Typer(
    name="nodewall",
    help="Host firewalls for fleets of managed database nodes: spec -> policy -> kernel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[Path, typer.Argument(help="Deployment spec, YAML or JSON.", show_default=False)]
NodeOpt = Annotated[str, typer.Option("--node", "-n", help="Node name.")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="text or json.")]


def fail_input(error: SpecError) -> NoReturn:
    """Report invalid input (every error, one per line) and exit 2."""
    for line in error.lines():
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(2)


def fail_usage(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def load(path: Path) -> DeploymentSpec:
    from nodewall.errors import SpecError
    from nodewall.spec import load_spec

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


@app.command()
def validate(spec_path: SpecArg) -> None:
    """Check a spec: exit 0, or exit 2 with every error and its path."""
    from nodewall.entry import run_validate

    raise typer.Exit(run_validate(spec_path))


@app.command()
def plan(
    spec_path: SpecArg,
    node: Annotated[str | None, typer.Option("--node", "-n", help="One node (default: all).")]
    = None,
    fmt: FormatOpt = "text",
) -> None:
    """Show a node's policy: open ports with their sources, every rule with its reason."""
    check_format(fmt)
    spec = load(spec_path)
    from nodewall.compiler import compile_node
    from nodewall.planview import plan_json, print_plan

    if node is not None:
        check_node(spec, node)
    names = [node] if node is not None else spec.node_names
    policies = [compile_node(spec, n) for n in names]
    if fmt == "json":
        docs = [plan_json(p) for p in policies]
        typer.echo(json.dumps(docs[0] if node is not None else {"nodes": docs}, indent=2))
        return
    from rich.console import Console

    console = Console(highlight=False)
    for policy in policies:
        print_plan(console, policy, spec)


@app.command()
def explain(
    spec_path: SpecArg,
    node: NodeOpt,
    src: Annotated[str, typer.Option(help="Source address.")],
    proto: Annotated[str, typer.Option(help="tcp, udp, icmp or esp.")],
    dst: Annotated[str | None, typer.Option(help="Destination (default: the node).")] = None,
    dport: Annotated[int | None, typer.Option(help="Destination port.")] = None,
    direction: Annotated[str, typer.Option(help="in or out.")] = "in",
    icmp_type: Annotated[str | None, typer.Option(help="ICMP type name.")] = None,
    uid: Annotated[int | None, typer.Option(help="Sending uid (egress).")] = None,
    state: Annotated[str, typer.Option(help="Conntrack state.")] = "new",
    fmt: FormatOpt = "text",
) -> None:
    """Say what the node's firewall does with one packet, and which rule decides."""
    import ipaddress

    check_format(fmt)
    spec = load(spec_path)
    check_node(spec, node)
    problems = []
    if proto not in ("tcp", "udp", "icmp", "esp"):
        problems.append(f"--proto: {proto!r} is not one of tcp, udp, icmp, esp")
    if direction not in ("in", "out"):
        problems.append(f"--direction: {direction!r} is not one of in, out")
    if state not in ("new", "established", "related", "invalid"):
        problems.append(f"--state: {state!r} is not a conntrack state")
    if dport is not None and not 1 <= dport <= 65535:
        problems.append(f"--dport: {dport} is not a port (1..65535)")
    if proto in ("tcp", "udp") and dport is None:
        problems.append(f"--dport: a {proto} packet needs a destination port")
    addresses = {}
    for flag, value in (("--src", src), ("--dst", dst)):
        if value is None:
            continue
        try:
            addresses[flag] = ipaddress.ip_address(value)
        except ValueError:
            problems.append(f"{flag}: {value!r} is not a valid IP address")
    if problems:
        from nodewall.errors import SpecError

        fail_input(SpecError([("", p) for p in problems]))
    from nodewall.compiler import compile_node
    from nodewall.evaluator import Packet, evaluate
    from nodewall.planview import explain_json

    _, node_spec = spec.node(node)
    family = addresses["--src"].version
    if dst is None:
        own = [a for a in node_spec.addresses if ipaddress.ip_address(a).version == family]
        dst = own[0] if own else ("0.0.0.0" if family == 4 else "::")
    packet = Packet(src=src, dst=dst, protocol=proto, dport=dport,  # type: ignore[arg-type]
                    direction=direction, icmp_type=icmp_type, uid=uid,  # type: ignore[arg-type]
                    ct_state=state)  # type: ignore[arg-type]
    try:
        verdict = evaluate(compile_node(spec, node), packet)
    except ValueError as exc:
        fail_usage(str(exc))
    if fmt == "json":
        typer.echo(json.dumps(explain_json(verdict), indent=2))
        return
    from nodewall.planview import describe_match

    typer.echo(f"{verdict.action}: {verdict.reason}")
    typer.echo(f"  rule {verdict.rule_index}: {describe_match(verdict.rule)}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the deployment spec, for editors."""
    from nodewall.spec import DeploymentSpec

    typer.echo(json.dumps(DeploymentSpec.model_json_schema(), indent=2))


def _register_command_groups() -> None:
    """Add the commands that live in their own modules (each imports its heavy parts lazily)."""
    from nodewall import cli_agent, cli_kernel, cli_platform

    cli_agent.register(app)
    cli_kernel.register(app)
    cli_platform.register(app)


_register_command_groups()
