"""The spec commands of `nodewall`: validate, plan, explain and schema.

Each reads a deployment spec, compiles what it needs and prints; none touches a kernel or a
server. Commands import the spec model and compiler inside their bodies, so the app stays cheap
to build. Bad input exits 2 with every error on its own line, each with its path.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from nodewall.cli.common import (
    FormatOpt,
    NodeOpt,
    SpecArg,
    check_format,
    check_node,
    fail_input,
    fail_usage,
    load,
)


def validate(spec_path: SpecArg) -> None:
    """Check a spec: exit 0, or exit 2 with every error and its path."""
    from nodewall.cli.validate import run_validate

    raise typer.Exit(run_validate(spec_path))


def plan(
    spec_path: SpecArg,
    node: Annotated[str | None, typer.Option("--node", "-n", help="One node (default: all).")]
    = None,
    fmt: FormatOpt = "text",
) -> None:
    """Show a node's policy: open ports with their sources, every rule with its reason."""
    check_format(fmt)
    spec = load(spec_path)
    from nodewall.cli.planview import plan_json, print_plan
    from nodewall.compiler.node import compile_node

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
    from nodewall.net import cidr

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
            addresses[flag] = cidr.parse_address(value)
        except ValueError:
            problems.append(f"{flag}: {value!r} is not a valid IP address")
    if problems:
        from nodewall.errors import SpecError

        fail_input(SpecError([("", p) for p in problems]))
    from nodewall.cli.planview import explain_json
    from nodewall.compiler.node import compile_node
    from nodewall.policy.evaluator import Packet, evaluate

    _, node_spec = spec.node(node)
    family, _ = addresses["--src"]
    if dst is None:
        own = [a for a in node_spec.addresses if cidr.parse_address(a)[0] == family]
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
    from nodewall.cli.planview import describe_match

    typer.echo(f"{verdict.action}: {verdict.reason}")
    typer.echo(f"  rule {verdict.rule_index}: {describe_match(verdict.rule)}")


def schema() -> None:
    """Print the JSON Schema of the deployment spec, for editors."""
    from nodewall.spec.model import DeploymentSpec

    typer.echo(json.dumps(DeploymentSpec.model_json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    """Add validate, plan, explain and schema to the `nodewall` app."""
    for command in (validate, plan, explain, schema):
        app.command()(command)
