"""`nodewall.spec.quick` (validate without pydantic) against the models it stands in for.

Whatever the quick reading accepts, the models must accept too, with the same cross-field
errors, the same warnings and the same counts; where it is not sure it says so (None) and the
models decide. Checked on every example spec, on generated valid specs (tests/strategies.py),
and on thousands of broken ones: every value of every example replaced by values of the wrong
type, length, pattern or range, every key removed, an unknown key added to every mapping. The
examples must take the quick path, or it would prove nothing; and `nodewall validate` prints
the same bytes either way. Every node compiles to the same policy from either reading (plan,
explain, render and apply take the quick reading too).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import strategies
from nodewall.compiler.node import compile_node
from nodewall.errors import SpecError
from nodewall.spec.document import read_document
from nodewall.spec.load import parse_spec
from nodewall.spec.quick import read_well_formed
from nodewall.spec.rules import document_errors
from nodewall.spec.warnings import client_warnings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 65536, 14000, 1.5, "", "a", "A", "x" * 64, "x" * 70, "1abc",
    "abc\n", "aws-eu-west-1", "pg", "kafka", "no-such-type", "standard", "ece", "10.0.0.0/8",
    "10.0.0.1/8", "010.0.0.0/8", "::/0", "2001:db8::1", "192.0.2.1", "0.0.0.0", "127.0.0.1",
    "224.0.0.1", "192.0.2.1:1080", "[2001:db8::1]:1080", "192.0.2.1:0", "x" * 44,
    "d" * 1025, [], [1], ["10.0.0.0/8"], {}, {"network": "10.0.0.0/8"}, {"zz": 1},
]


DELETE = object()


def outcome_by_models(data: Any) -> tuple[Any, ...]:
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        return ("error", exc.lines())
    return ("valid", len(spec.services), len(spec.node_names),
            [w for s in spec.services for w in client_warnings(spec, s)])  # type: ignore[arg-type]


def outcome_quick(data: Any) -> tuple[Any, ...] | None:
    spec = read_well_formed(data)
    if spec is None:
        return None
    errors = document_errors(spec)  # type: ignore[arg-type]
    if errors:
        return ("error", SpecError(errors).lines())
    return ("valid", len(spec.services), len(spec.node_names),
            [w for s in spec.services for w in client_warnings(spec, s)])  # type: ignore[arg-type]


def paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*at, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths(item, (*at, i))


def at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def mutants(doc: Any) -> Iterator[Any]:
    for path in paths(doc):
        if isinstance(at(doc, path), dict):
            changed = copy.deepcopy(doc)
            at(changed, path)["zz_unknown"] = 1
            yield changed
        if not path:
            continue
        for value in [*ODD_VALUES, DELETE]:
            changed = copy.deepcopy(doc)
            holder = at(changed, path[:-1])
            if value is DELETE:
                del holder[path[-1]]
            else:
                holder[path[-1]] = value
            yield changed


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_take_the_quick_path_with_the_models_outcome(example: Path) -> None:
    data = read_document(example)
    quick = outcome_quick(data)
    assert quick is not None
    assert quick == outcome_by_models(data)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_broken_examples_are_quick_only_where_the_models_agree(example: Path) -> None:
    data = read_document(example)
    taken = 0
    for mutant in mutants(data):
        quick = outcome_quick(mutant)
        if quick is not None:
            taken += 1
            assert quick == outcome_by_models(mutant), mutant
    assert taken > 0  # some mutants stay well-formed (e.g. another valid name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.deployment_specs())
def test_generated_specs_take_the_quick_path_with_the_models_outcome(doc: dict[str, Any]) -> None:
    quick = outcome_quick(doc)
    assert quick is not None
    assert quick == outcome_by_models(doc)


def same_policies(data: Any) -> None:
    """Every node compiled from the quick reading equals the one compiled from the models."""
    models = parse_spec(data)
    quick = load_quick(data)
    for node in models.node_names:
        ours, theirs = compile_node(quick, node), compile_node(models, node)
        assert ours == theirs
        assert ours.version == theirs.version


def load_quick(data: Any) -> Any:
    spec = read_well_formed(data)
    assert spec is not None
    return spec


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_compile_to_the_same_policies_either_way(example: Path) -> None:
    same_policies(read_document(example))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.deployment_specs())
def test_generated_specs_compile_to_the_same_policies_either_way(doc: dict[str, Any]) -> None:
    same_policies(doc)


def test_validate_prints_the_same_either_way(tmp_path: Path) -> None:
    """The command on the quick path and forced through the models: same bytes, same status."""
    forced = ("import sys; import nodewall.spec.quick as q; q.read_well_formed = lambda d: None;"
              "from nodewall.cli.main import main; main()")
    for example in EXAMPLES:
        runs = [subprocess.run([sys.executable, "-c", code, "validate", str(example)],
                               capture_output=True, text=True, check=False, timeout=60)
                for code in ("from nodewall.cli.main import main; main()", forced)]
        assert (runs[0].returncode, runs[0].stdout, runs[0].stderr) == (
            runs[1].returncode, runs[1].stdout, runs[1].stderr)
