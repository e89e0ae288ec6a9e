"""The typer application behind `nodewall`: one command group per module of this package.

`nodewall.cli.main` reaches it for every command line but the fast paths. Each group module
imports its heavy parts (spec model, backends, server, httpx) inside the command bodies, so that
building the app stays cheap.
"""

from __future__ import annotations

import typer

from nodewall.cli import agent, events, inventory, kernel, lab, platform, spec, tokens

app = typer.Typer(
    name="nodewall",
    help="Host firewalls for fleets of managed database nodes: spec -> policy -> kernel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

spec.register(app)
kernel.register(app)
platform.register(app)
inventory.register()
events.register(app)
tokens.register(app)
agent.register(app)
lab.register(app)
