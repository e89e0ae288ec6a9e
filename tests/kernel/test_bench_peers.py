"""The peer benchmark (bench/peers) keeps working: its smallest size runs for nodewall, the
floors and the iptables command script, and its verdict check tells a ruleset that refuses
with ICMP, or drops, from nodewall's, which resets.

Real namespaces (the benchmark's own, prefix `nwpr`), real tools; a few seconds.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from conftest import unavailable
from netns import kernel_ready

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from peers import probes
from peers.runner import Settings, make_case, run
from peers.sandbox import pair, run_script
from peers.tools.floors import NftFloor


def test_smallest_size_runs_and_agrees() -> None:
    unavailable(kernel_ready())
    result = run(Settings(sizes=[1], peers=[2], tools=["iptables-script"], repeat=1,
                          connects=20, cutoff=60.0), log=sys.stdout)
    assert result["host_files_changed"] == [] and result["root_ruleset_unchanged"]
    (case,) = result["cases"]
    rows = case["tools"]
    assert list(rows) == ["nodewall-nftables", "nft-floor", "iptables-floor", "iptables-script"]
    reference = rows["nodewall-nftables"]["verdicts"]
    assert reference["allowed client -> pg"] == "open"
    assert reference["refused client -> pg"] == "reset"
    assert reference["management -> ssh"] == "open"
    assert reference["v6 peer -> pgbouncer"] == "open"
    for name, row in rows.items():
        assert row["over"] is None, (name, row)
        assert row["apply_s"] > 0 and row["change_s"] > 0 and row["latency_us"] > 0, (name, row)
        assert row["rss_kb"] > 1000, (name, row)  # kB: a real process's resident set
        if name != "nodewall-nftables":
            assert row["verdict_differences"] == [], (name, row["verdict_differences"])
        assert row["ratio"]["nft-floor"]["apply_s"] is not None
    assert rows["nft-floor"]["ratio"]["nft-floor"]["apply_s"] == 1.0


def test_verdict_check_tells_icmp_and_drop_from_reset() -> None:
    unavailable(kernel_ready())
    with tempfile.TemporaryDirectory(prefix="nwpr-test-") as tmp:
        case = make_case(Path(tmp), 1, 2)
        found = {}
        variants = {"reset": case.nft_text,
                    "icmp": case.nft_text.replace("reject with tcp reset",
                                                  "reject with icmpx type port-unreachable"),
                    "drop": case.nft_text.replace("reject with tcp reset", "drop")}
        assert len(set(variants.values())) == 3
        for label, text in variants.items():
            with pair("nwprt") as ns:
                work = Path(tmp) / label
                work.mkdir()
                script = NftFloor().apply(case.__class__(**{**case.__dict__, "nft_text": text}),
                                          work)
                run_script(script.text, ns.node, work, 30.0)
                found[label] = probes.verdicts(ns.node, ns.client, case.facts, 0.3)
    assert probes.differences(found["reset"], found["reset"]) == []
    icmp = probes.differences(found["reset"], found["icmp"])
    assert "refused client -> pg: expected reset, found unreachable" in icmp
    assert "v6 refused -> ssh: expected reset, found unreachable" in icmp
    drop = probes.differences(found["reset"], found["drop"])
    assert "refused client -> pg: expected reset, found timeout" in drop
    assert not any(line.startswith(("allowed client -> pg", "peer -> pg")) for line in drop)
