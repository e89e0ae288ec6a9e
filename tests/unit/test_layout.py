"""The layout's promises (docs/architecture.md), checked on the source itself: imports run one
way down the stages, no import circle (counting imports inside functions too, so none can hide
behind a lazy import), no module over 500 lines, a docstring atop every module, and every
declared dependency imported somewhere."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "nodewall"

#: Each top-level part of the package and the parts it may import (besides itself).
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(), "gcpause": set(), "net": set(), "__init__": set(), "__main__": {"cli"},
    "catalogue": {"net", "errors"},
    "spec": {"catalogue", "net", "errors", "gcpause"},
    "policy": set(),
    "compiler": {"spec", "catalogue", "net", "policy", "gcpause", "errors"},
    "backends": {"policy", "gcpause", "net"},
    "store": set(),
    "server": {"store", "spec", "compiler", "catalogue", "net", "policy", "errors", "__init__"},
    "agent": {"policy", "backends", "gcpause", "net", "__init__"},
    "lab": {"policy", "backends", "server", "store", "__init__"},
    "cli": {"spec", "compiler", "catalogue", "net", "policy", "backends", "server", "store",
            "agent", "lab", "errors", "gcpause", "__init__"},
}
#: The agent's serverless mode (`--spec FILE`) compiles a spec file itself, lazily.
SPEC_MODE = {"agent.specsource"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path, name: str) -> set[str]:
    """Every nodewall module `path` imports, at any depth of its code."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("nodewall")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(["nodewall", *package.split(".")][: len(package.split(".")) + 1
                                                                  - node.level + 1]) + (
                    f".{base}" if base else "")
            if not base.startswith("nodewall"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub.removeprefix("nodewall.") in MODULES else base)
    return {"__init__" if m == "nodewall" else m.removeprefix("nodewall.") for m in out}


GRAPH = {name: _imports(path, name) - {name} for name, path in MODULES.items()}


def test_no_import_circle() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(GRAPH.get(m, ())):
            if dep not in MODULES:
                continue
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_imports_run_one_way_down_the_stages() -> None:
    wrong = []
    for name, deps in GRAPH.items():
        part = name.split(".")[0]
        for dep in deps:
            other = dep.split(".")[0]
            if other != part and other not in MAY_IMPORT[part] and name not in SPEC_MODE:
                wrong.append(f"{name} imports {dep}")
    assert not wrong, "imports against the layout (docs/architecture.md):\n" + "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small_and_says_what_it_is_for(name: str) -> None:
    path = MODULES[name]
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= 500, f"{path.relative_to(ROOT)}: {lines} lines (the limit is 500)"
    if "migrations/versions" not in str(path) and name not in ("__main__",):
        assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(ROOT)}: no docstring"


def test_every_declared_dependency_is_imported() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    #: distribution name -> the module it is imported as, where they differ
    module_of = {"pyyaml": "yaml", "psycopg[binary]": "psycopg", "prometheus-client":
                 "prometheus_client",
                 # not imported by nodewall itself: uvicorn's event loop and HTTP parser, which
                 # it picks at run time; click, pinned for typer (0.20 builds on click 8.1)
                 "uvloop": None, "httptools": None, "click": None}
    used = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                used |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                used.add(node.module.split(".")[0])
    missing = []
    for requirement in project["dependencies"]:
        dist = re.split(r"[=<>~!]", requirement)[0].strip()
        module = module_of.get(dist, dist.replace("-", "_"))
        if module is not None and module not in used:
            missing.append(dist)
    assert not missing, f"declared in pyproject.toml but never imported: {missing}"
