"""The agent's footprint rule: its process imports neither the server stack (FastAPI,
SQLAlchemy, uvicorn, alembic) nor the spec model, the compiler or the CLI framework (typer,
click, rich, pydantic); the serverless mode may load the spec model and the compiler, but
still no server stack and no CLI framework. Checked on real runs: the agent process fetches,
applies, caches, reports and serves metrics, is stopped, and dumps `sys.modules` at exit.
Tokens never reach its log."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from conftest import Cluster
from lab import Agent

ROOT = Path(__file__).resolve().parents[2]

SERVER_STACK = ("fastapi", "starlette", "sqlalchemy", "uvicorn", "alembic", "psycopg",
                "nodewall.server", "nodewall.store")
CLI_FRAMEWORK = ("typer", "click", "rich", "nodewall.cli.app", "nodewall.cli.common",
                 "nodewall.cli.spec", "nodewall.cli.kernel", "nodewall.cli.platform")
SPEC_MODEL = ("pydantic", "pydantic_core", "yaml", "nodewall.spec", "nodewall.compiler",
              "nodewall.catalogue")

DUMPER = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "nodewall"
from nodewall.cli.main import main
main()
"""


def loaded(names: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(n == p or n.startswith(p + ".") or
                                    (p.startswith("nodewall.") and n.startswith(p + "_"))
                                    for p in prefixes)]


def run_dumping(agent: Agent, dump: Path) -> None:
    """Start `agent` through the console script's entry point, dumping modules at exit."""
    cmd = agent.command()
    at = cmd.index("-m")
    agent.command = lambda: [*cmd[:at], "-c", DUMPER, str(dump), *cmd[at + 2:]]  # type: ignore[method-assign]
    agent.start()


def test_server_mode_imports_no_server_stack_spec_model_or_cli(cluster: Cluster,
                                                               tmp_path: Path) -> None:
    token = cluster.lab.server.token(cluster.node("n1")) if cluster.lab.server else ""
    agent = cluster.agent("n1", "nftables", token=token)
    dump = tmp_path / "modules.json"
    run_dumping(agent, dump)
    version = cluster.converged(agent, "n1")
    agent.wait_event("reported", match=lambda e: e["applied_version"] == version)
    assert agent.metrics()[("nodewall_agent_apply_failures_total", ())] == 0
    cluster.set_ip_filter(["192.0.2.0/24"])  # an in-place change too
    agent.wait_event("applied", match=lambda e: e["kind"] == "in-place")
    agent.signal(signal.SIGTERM)
    assert agent.proc is not None and agent.proc.wait(timeout=10) == 0
    names = json.loads(dump.read_text())
    assert "nodewall.agent.loop" in names and "nodewall.backends.nftables" in names
    for group in (SERVER_STACK, CLI_FRAMEWORK, SPEC_MODEL):
        assert not loaded(names, group), f"the agent loaded {loaded(names, group)}"
    log = agent.log.read_text()
    assert token not in log and token[:12] not in log, "a token reached the agent's log"


def test_spec_mode_loads_the_spec_model_but_no_server_stack_or_cli(cluster: Cluster,
                                                                   tmp_path: Path) -> None:
    spec = ROOT / "examples" / "pg-public.yaml"
    agent = Agent(cluster.lab.ns("n1"), "pg-prod-1", "iptables", tmp_path,
                  ["--spec", str(spec)])
    cluster.lab.agents.append(agent)
    dump = tmp_path / "modules.json"
    run_dumping(agent, dump)
    agent.wait_event("applied", timeout=20)
    agent.signal(signal.SIGINT)
    assert agent.proc is not None and agent.proc.wait(timeout=10) == 0
    names = json.loads(dump.read_text())
    assert "nodewall.compiler" in names, "the serverless mode compiles the spec"
    for group in (SERVER_STACK, CLI_FRAMEWORK):
        assert not loaded(names, group), f"the agent loaded {loaded(names, group)}"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602])
def test_token_file_open_to_others_is_refused(cluster: Cluster, tmp_path: Path,
                                              mode: int) -> None:
    import subprocess

    secret = "nwt_" + "s3cr3t" * 6
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    token_file.chmod(mode)
    done = subprocess.run(
        ["ip", "netns", "exec", cluster.lab.ns("n1"), sys.executable, "-m", "nodewall",
         "agent", "--server", "https://10.20.0.2:8443", "--node", cluster.node("n1"),
         "--token-file", str(token_file), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert f"--token-file: {token_file} is accessible by group or others (mode {mode:04o})" \
        in done.stderr
    assert secret not in done.stderr + done.stdout
    assert not (tmp_path / "state").exists(), "nothing may change on a refusal"
    assert not cluster.lab.agents and not Agent(cluster.lab.ns("n1"), "x", "nftables",
                                                tmp_path, []).kernel().present
