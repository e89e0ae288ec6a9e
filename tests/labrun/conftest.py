"""Fixtures of the lab suite: `nodewall lab` run as users run it (the console script, as root),
in a work directory of its own under /var/tmp (the postgres user must reach it), and a snapshot
of what exists outside that directory before, to prove nothing is left behind.

Outside CI a test that cannot run here (not root, no namespaces, a tool missing) is skipped;
with `CI` set it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODEWALL = ROOT / ".venv" / "bin" / "nodewall"
TOOLS = ("ip", "nft", "iptables", "ipset", "openssl", "pg_isready", "microsocks", "runuser",
         "setpriv")
#: Places a lab run could leave files in besides its work directory.
WATCHED = (Path("/tmp"), Path("/var/tmp"), Path("/run/netns"), Path("/var/lib/nodewall"),
           Path("/run"), ROOT)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.kernel)


def lab_ready() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (scripts/setup.sh installs them)"
    if not NODEWALL.exists():
        return f"{NODEWALL} missing (run scripts/setup.sh)"
    return None


@pytest.fixture(scope="session", autouse=True)
def _require_lab() -> None:
    why = lab_ready()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"lab tests must run in CI: {why}")
        pytest.skip(why)


def snapshot() -> set[str]:
    """Every entry of the watched directories (one level), and the lab's namespaces."""
    out: set[str] = set()
    for place in WATCHED:
        if place.is_dir():
            out |= {str(p) for p in place.iterdir()}
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    out |= {f"netns:{line.split()[0]}" for line in listed.splitlines() if line.strip()}
    return out


def root_namespace() -> dict[str, str]:
    """The root namespace's firewall, links and addresses, as the tools print them."""
    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True).stdout

    saved = run("iptables-save")
    return {"nft": run("nft", "list", "ruleset"),
            "iptables": "\n".join(x for x in saved.splitlines() if not x.startswith("#")),
            "links": run("ip", "-o", "link", "show"), "addresses": run("ip", "-o", "address")}


def lab_processes(workdir: Path) -> list[str]:
    """Command lines of live processes that name the work directory (agents, server, postgres,
    listeners of this run)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(workdir) in cmdline and "pytest" not in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@dataclass
class Run:
    workdir: Path
    returncode: int
    output: str
    before: set[str]


def run_lab(workdir: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """`nodewall lab ARGS --workdir W` (the options come after a subcommand, too)."""
    return subprocess.run([str(NODEWALL), "lab", *args, "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=timeout, cwd="/")


@pytest.fixture
def workdir() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="nwlab-test-", dir="/var/tmp"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        if lab_processes(made) or (made / "lab.json").exists():
            run_lab(made, "down", timeout=60)
        shutil.rmtree(made, ignore_errors=True)
