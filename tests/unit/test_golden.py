"""Golden plans: `nodewall plan EXAMPLE --node N --format json` must match the checked-in JSON
under tests/unit/golden/.

When a change of the compiler, catalogue or plan format is intended, regenerate and review the
diff before committing (`tests/golden.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from golden import check_golden
from nodewall.cli.app import app

from .helpers import EXAMPLES

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = {
    "pg-public.pg-prod-1.json": ("pg-public.yaml", "pg-prod-1"),
    "kafka-vpc.kafka-events-1.json": ("kafka-vpc.yaml", "kafka-events-1"),
}


@pytest.mark.parametrize("golden", sorted(GOLDEN))
def test_plan_json_matches_the_golden_file(golden: str) -> None:
    example, node = GOLDEN[golden]
    result = CliRunner().invoke(app, ["plan", str(EXAMPLES / example), "--node", node,
                                      "--format", "json"])
    assert result.exit_code == 0, f"plan {example} --node {node}: {result.output[-2000:]}"
    actual = json.loads(result.output)
    text = json.dumps(actual, indent=2, sort_keys=True) + "\n"
    check_golden(GOLDEN_DIR / golden, text, f"plan {example} --node {node}")


def test_golden_files_hold_what_the_spec_promises() -> None:
    """The checked-in files themselves satisfy the contract, so a regeneration cannot quietly
    bless a broken plan: components with name/port/protocol/sources, rules with reasons."""
    pg = json.loads((GOLDEN_DIR / "pg-public.pg-prod-1.json").read_text())
    comps = {c["name"]: c for c in pg["components"]}
    assert comps["pg"]["port"] == 14017 and comps["pg"]["protocol"] == "tcp"
    assert set(comps["pg"]["sources"]) == {"203.0.113.0/24", "2001:db8:1::/48",
                                           "192.0.2.17/32"}
    assert comps["prometheus"]["port"] == 9273
    assert all(r["reason"] for r in pg["rules"])
    assert [r["action"] for r in pg["rules"] if r["direction"] == "in"][-1] == "reject"
    kafka = json.loads((GOLDEN_DIR / "kafka-vpc.kafka-events-1.json").read_text())
    kcomps = {c["name"]: c for c in kafka["components"]}
    assert set(kcomps["kafka"]["sources"]) == {"10.20.0.0/24", "10.50.0.0/16"}
    assert set(kcomps["kafka_rest"]["sources"]) == {"0.0.0.0/0"}
    assert "office" not in json.dumps(pg) and "analytics peering" not in json.dumps(kafka)
