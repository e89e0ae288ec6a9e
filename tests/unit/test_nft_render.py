"""The nftables text itself (no kernel needed): golden renders of the examples, customer text
never in it, comments sanitised. Goldens: tests/unit/golden/*.nft (`tests/golden.py` says how
to regenerate them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from golden import check_golden
from nodewall.backends.nftables.backend import comment, render
from nodewall.compiler.node import compile_node
from nodewall.spec.load import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
CASES = [("pg-public.yaml", "pg-prod-1"), ("kafka-vpc.yaml", "kafka-events-1"),
         ("ece-azure.yaml", "ledger-1")]


@pytest.mark.parametrize(("example", "node"), CASES)
def test_golden_render(example: str, node: str) -> None:
    text = render(compile_node(load_spec(ROOT / "examples" / example), node))
    check_golden(GOLDEN / f"{Path(example).stem}.{node}.nft", text,
                 f"render {example} --node {node}")


def test_customer_descriptions_never_rendered() -> None:
    nasty = 'x" accept\n}\ntable ip evil { chain c { type filter hook input priority 0; } }#'
    spec = {
        "platform": {"management_networks": ["198.51.100.0/28"]},
        "project": {"name": "acme"},
        "services": [{"name": "pg-a", "type": "pg", "cloud": "aws-eu-west-1",
                      "user_config": {"ip_filter": [{"network": "203.0.113.0/24",
                                                     "description": nasty}]},
                      "nodes": [{"name": "pg-a-1", "addresses": ["10.0.0.1"]}]}],
    }
    text = render(compile_node(parse_spec(spec), "pg-a-1"))
    assert "evil" not in text and 'x"' not in text
    assert text.count("table ") == 1


def test_comment_is_sanitised_and_bounded() -> None:
    assert comment('a"b\nc;d{e}') == "a_b_c_d_e_"
    assert len(comment("x" * 500)) == 128
    assert comment("ip_filter[3] of pg-prod") == "ip_filter[3] of pg-prod"
