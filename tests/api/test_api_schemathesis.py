"""Property-based API test: schemathesis generates requests from the server's own OpenAPI
document (positive and negative data) against a real server process with a seeded project, on
SQLite and on PostgreSQL (which refuses some values SQLite stores, e.g. NUL characters), and
checks every answer: no 5xx, status codes, content types and bodies as documented.

(schemathesis' pytest plugin does not run under pytest 9, so the test drives its hypothesis
strategies per operation directly; the checks are `call_and_validate`'s defaults except
"schema-valid data is accepted": the OpenAPI document gives shapes, and meaning (CIDRs, service
types, references) is the spec model's, so a well-shaped request may still rightly get 400.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from seed import seed
from serverproc import ServerProc

#: Examples per operation, generation mode and backend; keeps the test near 30 s on two cores.
EXAMPLES = 10


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def schema_server(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    if request.param == "sqlite":
        base: Path = tmp_path_factory.mktemp("schemathesis")
        url = f"sqlite:///{base / 'server.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    proc = ServerProc(url)
    proc.start()
    try:
        with proc.client() as c:
            seed(c, "acme")
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_api_conforms_to_its_schema(schema_server: ServerProc,
                                    mode: schemathesis.GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{schema_server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {schema_server.admin}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, "the OpenAPI document lost routes"
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(base_url=schema_server.url, headers=headers,
                                   excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
