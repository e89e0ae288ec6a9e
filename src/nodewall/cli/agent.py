"""`nodewall agent` in the typer app: listed in `nodewall --help`, and handing its whole command
line to the agent's own parser (`nodewall.agent.options`), so there is one definition of its
options. The console script normally takes the fast path (`nodewall.cli.main`) and never gets here.
"""

from __future__ import annotations

import typer

AGENT_HELP = ("Run the node agent: keep this node's kernel holding its policy from the control "
              "plane (--server) or a spec file (--spec). See `nodewall agent --help`.")


def agent_cmd(ctx: typer.Context) -> None:
    """Run the node agent (options: `nodewall agent --help`)."""
    from nodewall.agent.main import main

    raise typer.Exit(main(list(ctx.args)))


def register(app: typer.Typer) -> None:
    app.command("agent", help=AGENT_HELP, add_help_option=False, context_settings={
        "allow_extra_args": True, "ignore_unknown_options": True})(agent_cmd)
