"""The `nodewall` console script: fast paths for `nodewall validate SPEC` and `nodewall agent`,
typer for the rest.

`validate` is what scripts and editors call most, so it runs without loading the CLI framework
(typer, click, rich): only the spec model and the warnings. `agent` runs for years beside a
customer's database, so it never loads the CLI framework either (its options are argparse, in
`nodewall.agent.options`). Every other command line, including `validate --help`, goes through
the full CLI in `nodewall.cli`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def run_validate(spec_path: Path) -> int:
    """Validate a spec file; print warnings and errors to stderr. Returns the exit status."""
    from nodewall.errors import SpecError
    from nodewall.spec import load_spec

    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    from nodewall.spec_warnings import client_warnings

    for service in spec.services:
        for warning in client_warnings(spec, service):
            print(f"warning: {warning}", file=sys.stderr)
    print(f"{spec_path}: valid ({len(spec.services)} services, {len(spec.node_names)} nodes)")
    return 0


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "validate" and not args[1].startswith("-"):
        sys.exit(run_validate(Path(args[1])))
    if args[:1] == ["agent"]:
        from nodewall.agent.main import main as agent_main

        sys.exit(agent_main(args[1:]))
    from nodewall.cli import app

    app(prog_name="nodewall")
