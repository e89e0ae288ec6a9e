"""Run the project's benchmarks, keep their results as JSON under docs/bench/, draw the plots.

    .venv/bin/python bench/run.py                      # every benchmark, each with its defaults
    .venv/bin/python bench/run.py peers compile        # a named subset
    .venv/bin/python bench/run.py --quick              # smaller sizes, fewer repetitions
    .venv/bin/python bench/run.py peers --args peers="--sizes 1 1000 --repeat 5"
    .venv/bin/python bench/run.py --plots-only         # redraw from the JSON already there

Each benchmark runs as its own process (most need root and make their own namespaces); what
it prints is kept whole and also parsed: JSON objects it prints (apply_nftables, fanout) and
Markdown tables (the others) become `data`; the peer benchmark writes its JSON itself. The
plots (bench/plots.py) are drawn from the files in docs/bench/, so a subset run redraws what
it changed and keeps the rest.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "bench"

#: name -> (argv after the interpreter, extra arguments of --quick)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "compile": (["bench/compile.py"], []),
    "apply_nftables": (["bench/apply_nftables.py"], ["--repeat", "3", "--connects", "300"]),
    "apply_iptables": (["bench/apply_iptables.py"], ["--repeat", "3", "--connects", "300"]),
    "conntrack_cut": (["bench/conntrack_cut.py"], ["--repeat", "5"]),
    "fanout": (["bench/fanout.py", "--samples"],
               ["--backend", "sqlite", "--agents", "200", "--nodes", "20"]),
    "agent": (["bench/agent.py"], ["--agents", "5", "--changes", "5", "--entries", "1000",
                                   "--peers", "20", "--idle", "5"]),
    "peers": (["bench/peers"], ["--sizes", "1", "1000", "--peers", "2", "--repeat", "1"]),
}


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in `text`, as rows keyed by the header cells."""
    tables: list[list[dict[str, str]]] = []
    block: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2:
            header, rows = block[0], [r for r in block[1:] if not set("".join(r)) <= set("-:")]
            tables.append([dict(zip(header, r, strict=False)) for r in rows])
        block = []
    return tables


def json_objects(text: str) -> list[Any]:
    """Every JSON object printed in `text`, one starting at the beginning of a line."""
    decoder, found, pos = json.JSONDecoder(), [], 0
    while (start := text.find("{", pos)) != -1:
        if start and text[start - 1] != "\n":
            pos = start + 1
            continue
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        found.append(value)
        pos = end
    return found


def run_one(name: str, quick: bool, extra: list[str]) -> dict[str, Any]:
    argv, quick_args = BENCHES[name]
    command = [sys.executable, *argv, *(quick_args if quick else []), *extra]
    peers_json = OUT / "peers.data.json"
    if name == "peers":
        command += ["--json", str(peers_json)]
    print(f"run.py: {shlex.join(command)}", file=sys.stderr, flush=True)
    started = time.time()
    # stderr (progress) passes through; stdout (results) is kept
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    data: Any = {"json": json_objects(done.stdout), "tables": markdown_tables(done.stdout)}
    if name == "peers" and peers_json.exists():
        data = json.loads(peers_json.read_text(encoding="utf-8"))
        peers_json.unlink()
    return {"name": name, "argv": command[1:], "started": started,
            "seconds": round(time.time() - started, 1), "returncode": done.returncode,
            "stdout": done.stdout, "data": data}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default all): {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="smaller, fewer repetitions")
    parser.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                        help="extra arguments for one benchmark")
    parser.add_argument("--plots-only", action="store_true")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    extra: dict[str, list[str]] = {}
    for item in args.args:
        name, _, text = item.partition("=")
        if name not in BENCHES:
            parser.error(f"--args: unknown benchmark {name!r}")
        extra[name] = shlex.split(text)
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.plots_only:
        for name in args.names or list(BENCHES):
            result = run_one(name, args.quick, extra.get(name, []))
            (OUT / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n",
                                              encoding="utf-8")
            if result["returncode"] != 0:
                failed.append(name)
            print(f"run.py: {name} done in {result['seconds']} s (exit {result['returncode']})",
                  file=sys.stderr, flush=True)
    sys.path.insert(0, str(ROOT / "bench"))
    from plots import draw_all

    for path in draw_all(OUT):
        print(f"run.py: drew {path.relative_to(ROOT)}", file=sys.stderr)
    if failed:
        sys.exit(f"run.py: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
