"""What the hot `nodewall` commands import, so they stay quick to start.

Each command line runs in a fresh interpreter through the console script's entry point
(`nodewall.cli.main.main`), which dumps `sys.modules` at exit: `validate`, plain `plan`, `explain`
and `render` lines import neither the CLI framework (typer, click; rich only for the text
`plan`), nor the server stack, nor an HTTP client; `validate` and `plan` no backend, and
`validate` of a well-formed spec not even pydantic (`nodewall.spec.quick`). A line the
fast path does not take (`--help`) still reaches the typer app, and says so by importing it.
Timings are bench/startup.py's job; this only checks what is loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "examples" / "pg-public.yaml")

DUMPER = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "nodewall"
from nodewall.cli.main import main
main()
"""

CLI_FRAMEWORK = ("typer", "click", "nodewall.cli.app", "nodewall.cli.common", "nodewall.cli.spec",
                 "nodewall.cli.kernel", "nodewall.cli.platform")
SERVER_STACK = ("fastapi", "starlette", "sqlalchemy", "uvicorn", "alembic", "psycopg", "httpx",
                "nodewall.server", "nodewall.store", "nodewall.agent")
BACKENDS = ("nodewall.backends",)
EXPLAIN = ["explain", SPEC, "--node", "pg-prod-1", "--src", "203.0.113.9", "--proto", "tcp",
           "--dport", "5432"]


def modules(tmp_path: Path, *args: str, status: int = 0) -> list[str]:
    dump = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", DUMPER, str(dump), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == status, done.stderr
    names: list[str] = json.loads(dump.read_text(encoding="utf-8"))
    return names


def loaded(names: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize("args", [
    ["validate", SPEC],
    ["plan", SPEC, "--node", "pg-prod-1", "--format", "json"],
    ["plan", SPEC, "-n", "pg-prod-1"],
    ["plan", SPEC, "--format=json"],
    EXPLAIN,
    [*EXPLAIN, "-f", "json"],
], ids=lambda a: " ".join(x for x in a if x != SPEC))
def test_spec_commands_load_no_cli_framework_server_or_backend(tmp_path: Path,
                                                               args: list[str]) -> None:
    names = modules(tmp_path, *args)
    assert "nodewall.spec.rules" in names  # it did run the command
    assert loaded(names, CLI_FRAMEWORK) == []
    assert loaded(names, SERVER_STACK) == []
    assert loaded(names, BACKENDS) == []
    assert loaded(names, ("pydantic", "nodewall.spec.model")) == []  # a well-formed spec
    text_plan = args[0] == "plan" and "json" not in " ".join(args)
    assert bool(loaded(names, ("rich",))) == text_plan  # rich draws the text plan's tables only


def test_validate_of_a_well_formed_spec_loads_no_pydantic(tmp_path: Path) -> None:
    names = modules(tmp_path, "validate", SPEC)
    assert "nodewall.spec.quick" in names
    assert loaded(names, ("pydantic", "pydantic_core", "nodewall.spec.model")) == []


def test_render_loads_its_backend_but_no_cli_framework_or_server(tmp_path: Path) -> None:
    names = modules(tmp_path, "render", SPEC, "--node", "pg-prod-1", "--backend", "nftables")
    assert "nodewall.backends.nftables.render" in names or "nodewall.backends.nftables" in names
    assert loaded(names, (*CLI_FRAMEWORK, "rich")) == []
    assert loaded(names, SERVER_STACK) == []


def test_bad_input_on_the_fast_path_loads_no_cli_framework(tmp_path: Path) -> None:
    names = modules(tmp_path, "plan", SPEC, "--node", "nope", status=2)
    assert loaded(names, CLI_FRAMEWORK) == []


@pytest.mark.parametrize("args", [
    ["plan", "--help"],
    ["plan", SPEC, "--node", "a", "--node", "b"],
    ["explain", SPEC, "--node", "pg-prod-1", "--src", "203.0.113.9", "--proto", "tcp",
     "--dport", "x"],
    ["apply", SPEC, "--node", "pg-prod-1", "--confirm", "0"],
], ids=["help", "repeated option", "not an integer", "apply --confirm"])
def test_other_lines_go_to_the_typer_app(tmp_path: Path, args: list[str]) -> None:
    names = modules(tmp_path, *args, status=0 if "--help" in args else 2)
    assert "nodewall.cli.app" in names and "typer" in names
