"""The peer benchmark's results as Markdown tables, from the JSON `runner.run` returns."""

from __future__ import annotations

from typing import Any


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}" if value >= 0.1 else f"{value * 1000:.1f}"


def _ratio(row: dict[str, Any], key: str, floor: str = "nft-floor") -> str:
    value = row.get("ratio", {}).get(floor, {}).get(key)
    return "-" if value is None else f"{value:.2f}"


def verdict_cell(row: dict[str, Any]) -> str:
    diffs = row.get("verdict_differences")
    if diffs is None:
        return "reference" if row.get("verdicts") else "-"
    return "same" if not diffs else "DIFFER: " + "; ".join(diffs)


def markdown(result: dict[str, Any]) -> str:
    lines = ["| entries | peers | tool | apply (ms) | x nft floor | x iptables floor | "
             "change (ms) | x nft floor | connect (µs) | x nft floor | peak RSS (MB) | "
             "verdicts |", "|" + "---|" * 12]
    for case in result["cases"]:
        for name, row in case["tools"].items():
            over = row.get("over")
            apply_ = f"**{over}**" if over and not row.get("apply_s") else _ms(row["apply_s"])
            change = (f"**{over}**" if over and row.get("apply_s") else _ms(row["change_s"]))
            latency = "-" if row.get("latency_us") is None else f"{row['latency_us']:.0f}"
            rss = "-" if row.get("rss_kb") is None else f"{row['rss_kb'] / 1024:.1f}"
            lines.append(
                f"| {case['entries']} | {case['peers']} | {name} | {apply_} | "
                f"{_ratio(row, 'apply_s')} | {_ratio(row, 'apply_s', 'iptables-floor')} | "
                f"{change} | {_ratio(row, 'change_s')} | {latency} | "
                f"{_ratio(row, 'latency_us')} | {rss} | {verdict_cell(row)} |")
    return "\n".join(lines)
