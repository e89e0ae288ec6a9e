"""Command line of the peer benchmark: `python bench/peers [options]` or `python -m peers`
from bench/ (root; it makes and deletes its own namespaces). Prints the table, writes the
JSON where `--json` says."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/peers`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "peers"

from peers.runner import Settings, run
from peers.table import markdown
from peers.tools import all_tools


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="nodewall beside ferm, ufw, firewalld and an "
                                                 "iptables script, on one pg node's policy")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 1000, 8000],
                        help="ip_filter entries")
    parser.add_argument("--peers", type=int, nargs="+", default=[2, 299])
    parser.add_argument("--tools", nargs="+", choices=sorted(all_tools()), default=[])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cutoff", type=float, default=120.0, help="seconds per script")
    parser.add_argument("--connects", type=int, default=300)
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    result = run(Settings(args.sizes, args.peers, args.tools, args.repeat, args.cutoff,
                          args.connects, not args.no_verify))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(markdown(result))
    if result["host_files_changed"] or not result["root_ruleset_unchanged"]:
        sys.exit(f"the host changed: files {result['host_files_changed']}, root ruleset "
                 f"unchanged: {result['root_ruleset_unchanged']}")


if __name__ == "__main__":
    main()
