"""The `nodewall` command line: one module per command group (`spec`, `kernel`, `platform`,
and the agent), their shared options in `common`, the typer app in `app`, the console script
in `main`."""
