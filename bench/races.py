"""Races and crashes, the long runs (docs/reliability.md, "Lock-out, races and crashes").

Run as root: `.venv/bin/python bench/races.py [--backend nftables|iptables|both] [--kills 200]
[--applies 200] [--pairs 50] [--confirms 10]`. Everything happens in one network namespace this
script creates (`nwn<suffix>-node`) and deletes at the end, even after a failure.

Rows, per backend:
- SIGKILL of `nodewall apply` at random points (`--kills` runs; on iptables every other kill
  lands while `ip6tables-restore` runs): the kernel holds the old or the new policy whole,
  read back and compared with both candidates (`racing.held_policy`);
- a foreign writer (iptables -w rules in INPUT and a chain of its own, nft elements in its own
  table) during `--applies` applies: each succeeds or fails cleanly, nothing foreign is lost;
- two `nodewall apply` processes started at once (`--pairs` pairs): one policy whole;
- `apply --confirm 2` without a confirmation (`--confirms` runs): seconds from the watcher's
  deadline (`pending.json`) to the previous ruleset read back again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "kernel"))

from kspecs import in_vpc, policy, public  # noqa: E402
from netns import HOSTS, Topology, entered, sh  # noqa: E402
from normalise import xtables_save  # noqa: E402
from racing import (  # noqa: E402
    NODE,
    ForeignWriter,
    cli,
    held_policy,
    kill_runs,
    wait_unlocked,
    write_spec,
)

from nodewall.backends.base import BackendError  # noqa: E402
from nodewall.backends.iptables import xtables  # noqa: E402
from nodewall.backends.registry import get_backend  # noqa: E402

DOCS = {"wide": public(), "narrow": public(ip_filter=["192.0.2.0/24", "2001:db8:2::/48"]),
        "vpc": in_vpc()}


def _apply(ns: str, backend: str, spec: Path) -> float:
    start = time.monotonic()
    done = subprocess.run(cli(ns, "apply", str(spec), "--node", NODE, "--backend", backend),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return time.monotonic() - start


def _kills(ns: str, backend: str, specs: dict[str, Path], runs: int) -> str:
    window = _apply(ns, backend, specs["vpc"]) * 1.1
    tally = kill_runs(ns, backend, specs, {n: policy(d) for n, d in DOCS.items()}, runs, window)
    for line in tally.broken:
        print("  BROKEN", line)
    return (f"{tally.runs} runs, {len(tally.broken)} not whole ({tally.old} old, {tally.new} "
            f"new; {tally.stray_sets} spare sets left for the next apply), {tally.seconds:.0f} s")


def _foreign(ns: str, backend: str, applies: int) -> str:
    policies = [policy(d) for d in DOCS.values()]
    with entered(ns):
        chosen = get_backend(backend)
        variant = xtables.detect_variant()
    failed, wrong = [], 0
    start = time.monotonic()
    with ForeignWriter(ns, variant) as writer:
        for i in range(applies):
            target = policies[i % len(policies)]
            try:
                with entered(ns):
                    chosen.apply(target)
            except BackendError as exc:
                failed.append(str(exc).splitlines()[0])
                if held_policy(ns, backend, {str(j): p for j, p in enumerate(policies)},
                               variant)[0] is None:
                    wrong += 1
                continue
            if held_policy(ns, backend, {"t": target}, variant)[0] != "t":
                wrong += 1
        lost = writer.lost()
        writes, errors = writer.writes, len(writer.errors)
    for line in failed[:3]:
        print("  failed cleanly:", line)
    return (f"{applies} applies, {len(failed)} failed cleanly, {wrong} not whole, foreign "
            f"objects {'LOST' if lost else 'intact'} ({writes} foreign commands, {errors} "
            f"refused), {time.monotonic() - start:.0f} s")


def _pairs(ns: str, backend: str, specs: dict[str, Path], pairs: int) -> str:
    candidates = {n: policy(d) for n, d in DOCS.items()}
    whole = failed = 0
    start = time.monotonic()
    for i in range(pairs):
        pair = ("wide", "vpc") if i % 2 == 0 else ("vpc", "narrow")
        codes: dict[str, int] = {}
        barrier = threading.Barrier(2)

        def run(name: str, barrier: threading.Barrier = barrier,
                codes: dict[str, int] = codes) -> None:
            barrier.wait()
            codes[name] = subprocess.run(
                cli(ns, "apply", str(specs[name]), "--node", NODE, "--backend", backend),
                capture_output=True).returncode

        threads = [threading.Thread(target=run, args=(n,)) for n in pair]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed += sum(1 for c in codes.values() if c != 0)
        held, stray = held_policy(ns, backend, {n: candidates[n] for n in pair})
        whole += held is not None and stray == 0
    return (f"{pairs} pairs, {whole} ended with one policy whole, {failed} applies failed, "
            f"{time.monotonic() - start:.0f} s")


def _kernel(ns: str) -> str:
    saves = [line for v in ("nft", "legacy") for f in (4, 6)
             for line in xtables_save(sh(xtables.tool(v, f, "save"), ns=ns))]
    return "\n".join([sh("nft", "-s", "list", "ruleset", ns=ns), sh("ipset", "save", ns=ns),
                      *saves])


def _confirms(ns: str, backend: str, specs: dict[str, Path], runs: int, state: Path) -> str:
    window = 2
    lags = []
    _apply(ns, backend, specs["wide"])
    for _ in range(runs):
        wait_unlocked(ns)
        before = _kernel(ns)
        proc = subprocess.Popen(cli(ns, "apply", str(specs["narrow"]), "--node", NODE,
                                    "--backend", backend, "--confirm", str(window),
                                    "--state-dir", str(state)),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()
        deadline = json.loads((state / "pending.json").read_text())["deadline"]  # the watcher's
        while _kernel(ns) != before:
            if time.time() > deadline + 5:
                raise RuntimeError("the previous ruleset did not come back")
            time.sleep(0.01)
        lags.append(time.time() - deadline)
        proc.wait()
    lags.sort()
    return (f"{runs} runs, rolled back {lags[0]:.2f}..{lags[-1]:.2f} s after the deadline "
            f"(median {lags[len(lags) // 2]:.2f} s)")


def _rows(ns: str, backend: str, specs: dict[str, Path], args: argparse.Namespace,
          state: Path) -> None:
    rows = (("SIGKILL at random points", lambda: _kills(ns, backend, specs, args.kills)),
            ("foreign writer", lambda: _foreign(ns, backend, args.applies)),
            ("two applies at once", lambda: _pairs(ns, backend, specs, args.pairs)),
            ("confirm timeout", lambda: _confirms(ns, backend, specs, args.confirms, state)))
    for what, row in rows:
        print(f"{what:28} {row()}", flush=True)
        with entered(ns):
            for name in ("nftables", "iptables"):
                get_backend(name).remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["nftables", "iptables", "both"], default="both")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--applies", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--confirms", type=int, default=10)
    args = parser.parse_args()
    backends = ["nftables", "iptables"] if args.backend == "both" else [args.backend]
    topo = Topology(hosts={"node": HOSTS["node"]})
    try:
        topo.open()
        ns = topo.ns("node")
        with tempfile.TemporaryDirectory(prefix="nwn-races-") as tmp:
            specs = {n: write_spec(Path(tmp), n, d) for n, d in DOCS.items()}
            for backend in backends:
                print(f"== {backend}")
                _rows(ns, backend, specs, args, Path(tmp) / "state")
    finally:
        topo.close()


if __name__ == "__main__":
    main()
