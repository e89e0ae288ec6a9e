"""Benchmark and long run: fuzz the spec reader with 100,000 generated spec files.

Run: `.venv/bin/python bench/fuzz_input.py [--inputs N]`. Each input goes through
`tests/fuzzspec.py:check` (bytes -> UTF-8 -> YAML 1.2 or strict JSON -> model and rules ->
compile and render); a broken promise is counted and its first lines kept, not raised, so that
the run reports every failure it meets. Prints inputs, accepted, rejected, failures, the
slowest single input, the run's time and the process's peak RSS, as a markdown table for
docs/reliability.md; exits 1 when any input failed.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from fuzzspec import check, spec_files  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    args = parser.parse_args()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    slowest = [0.0, 0]
    sizes = [0, 0]

    @settings(max_examples=args.inputs, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(spec_files())
    def run(case: tuple[str, bytes, list[str]]) -> None:
        name, data, markers = case
        start = time.perf_counter()
        try:
            outcomes[check(name, data, markers)] += 1
        except Exception as exc:  # a broken promise, or any other exception: a failure
            outcomes["failed"] += 1
            if len(failures) < 20:
                failures.append(f"{type(exc).__name__}: {str(exc)[:300]} <- {name} "
                                f"{data[:200]!r}")
        took = time.perf_counter() - start
        if took > slowest[0]:
            slowest[:] = [took, len(data)]
        sizes[0] += len(data)
        sizes[1] = max(sizes[1], len(data))

    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    total = sum(outcomes.values())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("| inputs | accepted | rejected | failures | slowest input | bytes (mean / max) "
          "| time | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {total} | {outcomes['accepted']} | {outcomes['rejected']} | {outcomes['failed']} "
          f"| {slowest[0] * 1e3:.0f} ms ({slowest[1]} bytes) | {sizes[0] // max(total, 1)} / "
          f"{sizes[1]} | {elapsed:.0f} s | {peak_mib:.0f} MiB |")
    for failure in failures:
        print(f"failure: {failure}")
    return 1 if outcomes["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
