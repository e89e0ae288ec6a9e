"""The benchmark plots, drawn with matplotlib (Agg, PNG) from the JSON files bench/run.py
keeps under docs/bench/: for the peer benchmark, apply time, one-entry change time, connect
latency and peak RSS against ip_filter size, one line per tool, one panel per peer count (a
tool stopped at the cut-off is drawn at the cut-off with an upward marker); for the fan-out
benchmark, each agent's delay as a distribution when it was run with `--samples`.

It reads only those files and writes only PNGs beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLE = {"nodewall-nftables": ("tab:blue", "-", "o"), "nodewall-iptables": ("tab:cyan", "-", "o"),
         "nodewall-nftables-resident": ("tab:blue", "-.", "*"),
         "nodewall-iptables-resident": ("tab:cyan", "-.", "*"),
         "nft-floor": ("black", ":", "."), "iptables-floor": ("gray", ":", "."),
         "iptables-script": ("tab:red", "--", "s"), "ferm": ("tab:orange", "--", "^"),
         "ufw": ("tab:purple", "--", "v"), "firewalld": ("tab:green", "--", "D")}

FIGURES = {"apply_s": ("time to apply from nothing (s)", 1.0, True),
           "change_s": ("time to apply one changed ip_filter entry (s)", 1.0, True),
           "latency_us": ("new-connection latency, client matched last (µs)", 1.0, False),
           "rss_kb": ("peak RSS of the processes doing the work (MB)", 1 / 1024, False)}


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")).get("data") if path.exists() else None


def peers_plots(data: dict[str, Any], out: Path) -> list[Path]:
    peer_counts = sorted({c["peers"] for c in data["cases"]})
    tools = list(data["cases"][0]["tools"])
    cutoff = data["cutoff_s"]
    drawn = []
    for key, (label, scale, log) in FIGURES.items():
        fig, axes = plt.subplots(1, len(peer_counts), figsize=(6 * len(peer_counts), 4.5),
                                 squeeze=False, sharey=True)
        for ax, peers in zip(axes[0], peer_counts, strict=True):
            cases = sorted((c for c in data["cases"] if c["peers"] == peers),
                           key=lambda c: c["entries"])
            for tool in tools:
                color, line, marker = STYLE.get(tool, ("tab:brown", "-", "x"))
                xs, ys, over_x = [], [], []
                for case in cases:
                    row = case["tools"].get(tool, {})
                    if row.get(key) is not None:
                        xs.append(case["entries"])
                        ys.append(row[key] * scale)
                    elif row.get("over") and key in ("apply_s", "change_s"):
                        over_x.append(case["entries"])
                if xs:
                    ax.plot(xs, ys, line, marker=marker, color=color, label=tool)
                if over_x:
                    ax.plot(over_x, [cutoff] * len(over_x), linestyle="none", marker="^",
                            markersize=10, color=color,
                            label=f"{tool}: over {cutoff:.0f} s" if not xs else None)
            ax.set_xscale("log")
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("ip_filter entries")
            ax.set_title(f"{peers} cluster peers")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel(label)
        axes[0][-1].legend(fontsize=8, loc="best")
        fig.suptitle(f"pg node: {label}; median of {data['repeat']} runs")
        fig.tight_layout()
        path = out / f"peers_{key.removesuffix('_s').removesuffix('_us').removesuffix('_kb')}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        drawn.append(path)
    return drawn


def fanout_plot(data: dict[str, Any], out: Path) -> list[Path]:
    runs = [r for r in data.get("json", []) if isinstance(r, dict) and r.get("delays_s")]
    if not runs:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        delays = sorted(r["delays_s"])
        share = [(i + 1) / len(delays) for i in range(len(delays))]
        ax.plot(delays, share, label=f"{r['backend']}: {r['agents']} agents, {r['nodes']} nodes")
    ax.set_xlabel("seconds from the change request until the agent holds the new policy")
    ax.set_ylabel("share of agents")
    ax.set_title("control-plane fan-out: distribution of agent delays")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "fanout_delays.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def draw_all(out: Path) -> list[Path]:
    drawn: list[Path] = []
    peers = _load(out / "peers.json")
    if peers and peers.get("cases"):
        drawn += peers_plots(peers, out)
    fanout = _load(out / "fanout.json")
    if fanout:
        drawn += fanout_plot(fanout, out)
    return drawn
