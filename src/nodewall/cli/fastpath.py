"""Plain command lines of `plan`, `explain`, `render` and `apply`, read without the CLI framework.

Building the typer app (typer, click, rich and every command group) costs about 100 ms, more
than these commands' own work on a small spec. `parse` reads a command line only when it is one
of the plain shapes below: the command, one SPEC argument, and options of the command each given
at most once as `--name VALUE`, `--name=VALUE` or `-n VALUE`, every required one present, every
integer an integer. Anything else (`--help`, an unknown or repeated option, a missing value, a
value starting with `-`, `--`, `apply --confirm`) gives None, and `nodewall.cli.main` hands the
line to the typer app, which reads it as it always did (and words every usage error). So a line
the fast path takes means exactly what typer would have made of it, and `nodewall.cli.direct`
runs the same body either way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

#: per command: option spellings -> parameter, the integer parameters, the flags, the required
#: options, and the defaults of the others (as `nodewall.cli.spec` and `.kernel` declare them)
_NODE = {"--node": "node", "-n": "node"}
_FORMAT = {"--format": "fmt", "-f": "fmt"}
_BACKEND = {"--backend": "backend", "-b": "backend"}
_EXPLAIN = {f"--{name.replace('_', '-')}": name for name in (
    "src", "proto", "dst", "dport", "direction", "icmp_type", "uid", "state")}

_SHAPES: dict[str, tuple[dict[str, str], frozenset[str], dict[str, str], frozenset[str],
                         dict[str, Any]]] = {
    "plan": (_NODE | _FORMAT, frozenset(), {}, frozenset(), {"node": None, "fmt": "text"}),
    "explain": (_NODE | _FORMAT | _EXPLAIN, frozenset({"dport", "uid"}), {},
                frozenset({"node", "src", "proto"}),
                {"dst": None, "dport": None, "direction": "in", "icmp_type": None, "uid": None,
                 "state": "new", "fmt": "text"}),
    "render": (_NODE | _BACKEND, frozenset(), {}, frozenset({"node"}), {"backend": "auto"}),
    "apply": (_NODE | _BACKEND, frozenset(), {"--force": "force"}, frozenset({"node"}),
              {"backend": "auto", "force": False}),
}


def parse(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The command and its parameters, for a plain command line; None for any other."""
    if not args or args[0] not in _SHAPES:
        return None
    options, integers, flags, required, defaults = _SHAPES[args[0]]
    values: dict[str, Any] = {}
    spec: str | None = None
    rest = iter(args[1:])
    for token in rest:
        if not token.startswith("-"):
            if spec is not None:
                return None
            spec = token
            continue
        if token in flags:
            if flags[token] in values:
                return None
            values[flags[token]] = True
            continue
        name, eq, value = token.partition("=")
        if name not in options or (eq and not name.startswith("--")):
            return None
        if not eq:
            value = next(rest, "-")
            if value.startswith("-"):
                return None
        param = options[name]
        if param in values:
            return None
        if param in integers:
            try:
                values[param] = int(value)
            except ValueError:
                return None
        else:
            values[param] = value
    if spec is None or spec == "" or not required <= values.keys():
        return None
    return args[0], {"spec_path": Path(spec), **defaults, **values}


def run(command: str, params: dict[str, Any]) -> int:
    """Run a parsed command line (`parse`); the exit status."""
    from nodewall.cli import direct

    bodies: dict[str, Callable[..., None]] = {
        "plan": direct.plan, "explain": direct.explain,
        "render": lambda backend, **rest: direct.render(backend_name=backend, **rest),
        "apply": lambda backend, **rest: direct.apply(backend_name=backend, **rest),
    }
    try:
        bodies[command](**params)
    except direct.Failed as exc:
        return direct.failed(exc)
    return 0
