"""Fuzzing the spec reader in CI (a few hundred inputs; bench/fuzz_input.py runs 100,000): no
crash or traceback, every rejection names its field or place, no description in an error, a
policy or a ruleset (tests/fuzzspec.py says exactly what holds)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from fuzzspec import check, spec_files


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec_files())
def test_the_reader_refuses_or_accepts_every_input_cleanly(
        case: tuple[str, bytes, list[str]]) -> None:
    name, data, markers = case
    assert check(name, data, markers) in ("accepted", "rejected")
