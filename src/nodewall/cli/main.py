"""The `nodewall` console script: fast paths first, then the typer app for everything else.

`nodewall validate SPEC` (what scripts and editors call most) runs without typer, click or rich
(`nodewall.cli.validate`); so do plain command lines of `plan`, `explain`, `render` and `apply`
(`nodewall.cli.fastpath`: the same bodies as the typer commands, `nodewall.cli.direct`), and
`nodewall agent` (its options are argparse, in `nodewall.agent.options`: it runs for years beside
a customer's database and imports only what it needs). Every other command line, `--help` and
every usage error included, goes through `nodewall.cli.app`, imported only then because
building it costs about 100 ms.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "validate" and not args[1].startswith("-"):
        from nodewall.cli.validate import run_validate

        sys.exit(run_validate(Path(args[1])))
    if args[:1] == ["agent"]:  # runs for years beside a customer's database: no CLI framework
        from nodewall.agent.main import main as agent_main

        sys.exit(agent_main(args[1:]))
    from nodewall.cli.fastpath import parse

    plain = parse(args)
    if plain is not None:
        from nodewall.cli.fastpath import run

        sys.exit(run(*plain))
    from nodewall.cli.app import app

    app(prog_name="nodewall")
