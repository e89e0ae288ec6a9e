"""The spec commands of `nodewall`: validate, plan, explain and schema.

Each reads a deployment spec, compiles what it needs and prints; none touches a kernel or a
server. Commands import the spec model and compiler inside their bodies, so the app stays cheap
to build. Bad input exits 2 with every error on its own line, each with its path.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from nodewall.cli.common import FormatOpt, NodeOpt, SpecArg, run


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
    from nodewall.cli import direct

    run(direct.plan, spec_path, node, fmt)


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
    from nodewall.cli import direct

    run(direct.explain, spec_path, node, src, proto, dst, dport, direction, icmp_type, uid,
        state, fmt)


def schema() -> None:
    """Print the JSON Schema of the deployment spec, for editors."""
    from nodewall.spec.model import DeploymentSpec

    typer.echo(json.dumps(DeploymentSpec.model_json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    """Add validate, plan, explain and schema to the `nodewall` app."""
    for command in (validate, plan, explain, schema):
        app.command()(command)
