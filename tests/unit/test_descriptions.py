"""Customer ip_filter descriptions are data: accepted, shown escaped by `plan`, and never found
in rules, reasons, set elements, `plan --format json`, warnings or rendered rulesets."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nodewall.cli.app import app

from .helpers import compiled, run_nodewall, service_doc, spec_doc

PAYLOADS = (
    '"; flush ruleset; accept #',
    "$(rm -rf /)",
    "\n}",
    "`reboot`",
    "} ; table inet evil { chain c { accept } }",
    "-A INPUT -j ACCEPT\nCOMMIT",
    "[bold red]markup[/]",
    "\x1b[2J\x1b[31mred\x00nul",
    "'; DROP TABLE services; --",
)


def hostile_doc() -> dict[str, Any]:
    entries: list[Any] = [{"network": "203.0.113.0/24", "description": p} for p in PAYLOADS]
    # a host-bits entry and an IPv6 entry on a type without IPv6, so that warnings name them
    entries.append({"network": "198.18.0.5/15", "description": PAYLOADS[0]})
    entries.append({"network": "2001:db8:1::/48", "description": PAYLOADS[2]})
    return spec_doc([
        service_doc("db", "mysql", [["192.0.2.11"], ["192.0.2.12"]],
                    user_config={"ip_filter": entries}),
        service_doc("vpcdb", "pg", [["10.20.0.11"]], vpc="vpc-a",
                    user_config={"ip_filter": [{"network": "192.0.2.0/24",
                                                "description": p} for p in PAYLOADS]}),
    ], vpcs=[{"id": "vpc-a", "cloud": "aws-eu-west-1", "network_cidr": "10.20.0.0/24"}])


def strings(value: Any) -> list[str]:
    """Every string inside a JSON-like value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings(v)]
    return []


def assert_no_payload(texts: list[str], where: str, whole_output: bool = False) -> None:
    """No payload in any of the texts. A whole formatted output (a ruleset, pretty JSON)
    legitimately holds newline-then-brace, so that payload is checked only in single strings."""
    for payload in PAYLOADS:
        if whole_output and payload == "\n}":
            continue
        found = [t for t in texts if payload in t]
        assert not found, f"{where}: description {payload!r} found in {found[:3]}"
    for marker in ("flush ruleset", "rm -rf", "DROP TABLE", "reboot", "\x1b", "\x00"):
        found = [t for t in texts if marker in t]
        assert not found, f"{where}: {marker!r} found in {found[:3]}"


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(hostile_doc()))
    return path


def test_hostile_descriptions_are_valid_input(spec_file: Path) -> None:
    result = run_nodewall("validate", str(spec_file), real=True)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    assert_no_payload([*result.stdout.splitlines(), *result.stderr.splitlines()],
                      "validate output")


@pytest.mark.parametrize("node", ["db-1", "vpcdb-1"])
def test_descriptions_never_enter_the_policy(node: str) -> None:
    policy = compiled(hostile_doc(), node)
    assert policy.warnings, "expected warnings (host bits, IPv6 ignored) to check"
    texts = [*strings([asdict(r) for r in policy.rules]), *strings(policy.warnings),
             *strings([asdict(s) for s in policy.sets]),
             *strings([asdict(c) for c in policy.components])]
    assert_no_payload(texts, f"policy of {node}")


@pytest.mark.parametrize("node", ["db-1", "vpcdb-1"])
def test_descriptions_never_appear_in_plan_json(spec_file: Path, node: str) -> None:
    result = CliRunner().invoke(app, ["plan", str(spec_file), "--node", node, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["rules"] and doc["warnings"], "plan json lacks rules or warnings to check"
    assert_no_payload(strings(doc), f"plan --format json of {node}")
    for payload in PAYLOADS:
        encoded = json.dumps(payload)[1:-1]
        assert encoded not in result.output, f"{payload!r} JSON-encoded in plan json output"


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_descriptions_never_appear_in_rendered_rules(spec_file: Path, backend: str) -> None:
    result = CliRunner().invoke(app, ["render", str(spec_file), "--node", "db-1",
                                      "--backend", backend])
    assert result.exit_code == 0, f"render --backend {backend}: {result.output[-1500:]}"
    assert "203.0.113.0/24" in result.output, "the ip_filter network should be rendered"
    assert_no_payload([result.output], f"render --backend {backend}", whole_output=True)


def test_descriptions_never_appear_in_explain(spec_file: Path) -> None:
    result = CliRunner().invoke(app, ["explain", str(spec_file), "--node", "db-1", "--src",
                                      "203.0.113.9", "--proto", "tcp", "--dport", "22",
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    assert_no_payload(strings(json.loads(result.output)), "explain --format json")
    result = CliRunner().invoke(app, ["explain", str(spec_file), "--node", "db-1", "--src",
                                      "203.0.113.9", "--proto", "icmp", "--icmp-type",
                                      "echo-reply"])
    assert result.exit_code == 0, result.output
    assert_no_payload(result.output.splitlines(), "explain")


def test_plan_text_shows_descriptions_escaped_and_only_in_their_table(spec_file: Path) -> None:
    result = run_nodewall("plan", str(spec_file), "--node", "db-1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b" not in out and "\x00" not in out, "raw control characters reached the terminal"
    assert "\\n}" in out, "the newline of a description should be shown escaped"
    assert "[bold red]markup[/]" in out, "markup in a description must be shown, not applied"
    head, sep, table = out.partition("ip_filter descriptions")
    assert sep, f"no descriptions table in plan output:\n{out[-2000:]}"
    assert_no_payload(head.splitlines(), "plan text before the descriptions table")
    assert "flush ruleset" in table, "the descriptions table should show the description"
