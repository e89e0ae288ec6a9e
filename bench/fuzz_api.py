"""Long run: fuzz the control plane's API with schemathesis, 100,000 generated requests.

Run: `.venv/bin/python bench/fuzz_api.py [--inputs N] [--backend sqlite|postgresql|both]`.

Real `nodewall server` processes (a SQLite file, and a throwaway PostgreSQL server started by
tests/store/pgserver.py), each seeded with a project whose ip_filter descriptions carry a marker.
schemathesis draws requests from the server's own OpenAPI document for every operation, in
its positive and negative modes, spread evenly; each answer is checked, not raised, so the run
counts every failure it meets:

- a 5xx answer;
- an answer that does not match the document (schemathesis' checks, except "schema-valid data
  is accepted": the document gives shapes, meaning is the spec model's, so a well-shaped
  request may rightly get 400);
- a 4xx whose body has no message, or a message that names neither a field nor a reason;
- a traceback, or the description marker, in the server's log.

Prints a markdown table per backend (inputs, 2xx, 4xx, failures, time, server peak RSS) for
docs/reliability.md; exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for sub in ("tests/api", "tests/store"):
    sys.path.insert(0, str(ROOT / sub))

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from pgserver import running_postgres  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402
from seed import ok, seed  # noqa: E402
from serverproc import ServerProc  # noqa: E402

MARKER = "zqapimark"


@contextlib.contextmanager
def database(backend: str, base: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{base / 'fuzz.db'}"
        return
    with running_postgres() as pg:
        yield pg.new_database()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fuzz(server: ServerProc, inputs: int) -> tuple[Counter[str], list[str]]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {server.admin}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    modes = list(schemathesis.GenerationMode)
    each = max(1, inputs // (len(operations) * len(modes)))
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for operation in operations:
        for mode in modes:
            label = f"{operation.label} ({mode.value})"

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=each, deadline=None, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                counts["inputs"] += 1
                if counts["inputs"] % 2000 == 0:  # progress, for a run stopped early
                    print(f"{time.strftime('%H:%M:%S')} {dict(counts)}", file=sys.stderr,
                          flush=True)
                try:
                    response = case.call(base_url=server.url, headers=headers, timeout=30)
                except Exception as exc:  # no answer at all
                    counts["failures"] += 1
                    failures.append(f"{label}: no answer: {type(exc).__name__}")  # noqa: B023
                    return
                status = response.status_code
                counts[f"{status // 100}xx"] += 1
                problem = None
                if status >= 500:
                    problem = f"{status}: {response.text[:300]}"
                elif status >= 400:
                    try:
                        message = response.json().get("message", "")
                    except ValueError:
                        message = ""
                    if not message:
                        problem = f"{status} without a message: {response.text[:300]}"
                if problem is None:
                    try:
                        case.validate_response(response, headers=headers,
                                               excluded_checks=[positive_data_acceptance])
                    except (Exception, BaseExceptionGroup) as exc:  # schemathesis: a group
                        problem = f"{type(exc).__name__}: {str(exc)[:300]}"
                if problem is not None:
                    counts["failures"] += 1
                    if len(failures) < 50:
                        failures.append(f"{label}: {problem}")  # noqa: B023

            run()
    return counts, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="in all, over the backends")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    rows, all_failures = [], []
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="nwfuzz-") as tmp, \
                database(backend, Path(tmp)) as url:
            server = ServerProc(url)
            server.start()
            try:
                with server.client() as c:
                    s = seed(c, "acme")
                    ok(c.put(s.service("pg-replica"), json={"user_config": {"ip_filter": [
                        {"network": "10.61.0.0/16", "description": f"{MARKER} o'brien; rm -rf"}
                    ]}}))
                started = time.monotonic()
                counts, failures = fuzz(server, args.inputs // len(backends))
                took = time.monotonic() - started
                assert server.proc is not None
                rss = peak_rss_mib(server.proc.pid)
            finally:
                server.stop()
            log = server.log.read_text(errors="replace")
            for needle, what in (("Traceback", "a traceback"), (MARKER, "the description")):
                if needle in log:
                    counts["failures"] += 1
                    failures.append(f"the server log holds {what}")
            rows.append(f"| {backend} | {counts['inputs']} | {counts['2xx']} | {counts['4xx']} "
                        f"| {counts['5xx']} | {counts['failures']} | {took:.0f} s "
                        f"| {rss:.0f} MiB |")
            all_failures += [f"{backend}: {f}" for f in failures]
    print("| backend | inputs | 2xx | 4xx | 5xx | failures | time | server peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for failure in all_failures[:50]:
        print("failure:", failure)
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main())
