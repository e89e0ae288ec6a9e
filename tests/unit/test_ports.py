"""SPEC section 4: service-port allocation on the spec-file path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodewall import catalogue
from nodewall.catalogue.allocation import allocate_ports
from nodewall.catalogue.ports import PORT_MAX, PORT_MIN
from nodewall.compiler.components import service_ports
from nodewall.errors import SpecError
from nodewall.spec.load import parse_spec

from .helpers import compiled, port_of, run_nodewall, service_doc, spec_doc

TYPES = sorted(catalogue.service_types())


def ports_of(doc: dict[str, Any], service: str) -> dict[str, int]:
    spec = parse_spec(doc)
    return service_ports(spec, spec.service(service))


def pg(pins: dict[str, int] | None = None, base_port: int | None = 14000) -> dict[str, Any]:
    extra: dict[str, Any] = {"ports": pins} if pins else {}
    return spec_doc([service_doc("pg-prod", "pg", [["192.0.2.11"], ["192.0.2.12"]], **extra)],
                    base_port=base_port)


def test_pins_are_honoured_and_the_rest_allocated_around_them() -> None:
    policy = compiled(pg({"pg": 14017}), "pg-prod-1")
    assert port_of(policy, "pg") == 14017
    bouncer = port_of(policy, "pgbouncer")
    assert bouncer != 14017 and 14000 <= bouncer <= PORT_MAX, bouncer


def test_pin_outside_the_allocation_range_is_honoured() -> None:
    assert ports_of(pg({"pg": 5432}), "pg-prod")["pg"] == 5432


def test_all_pins_honoured_for_a_fully_pinned_service() -> None:
    assert ports_of(pg({"pg": 20001, "pgbouncer": 20000}), "pg-prod") == {
        "pg": 20001, "pgbouncer": 20000}


def test_same_spec_gives_the_same_ports_every_run(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(pg(base_port=None)))
    runs = [run_nodewall("plan", str(path), "--node", "pg-prod-1", "--format", "json")
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    components = [{c["name"]: c["port"] for c in json.loads(r.stdout)["components"]}
                  for r in runs]
    assert components[0] == components[1], f"ports differ between runs: {components}"
    assert components[0] == {c.name: c.port for c in compiled(pg(base_port=None),
                                                              "pg-prod-1").components}


def test_ports_do_not_move_when_other_services_or_settings_change() -> None:
    kafka = service_doc("events", "kafka", [["192.0.2.41"]])
    before = ports_of(spec_doc([kafka]), "events")
    other = service_doc("aaa-first", "pg", [["192.0.2.51"]])
    kafka_on = service_doc("events", "kafka", [["192.0.2.41"], ["192.0.2.42"]],
                           user_config={"kafka_rest": True, "schema_registry": True})
    after = ports_of(spec_doc([other, kafka_on]), "events")
    assert before == after, f"ports moved: {before} -> {after}"


def test_service_ports_are_consecutive_in_catalogue_order() -> None:
    for type_name in TYPES:
        names = [c.name for c in catalogue.service_type(type_name).port_components]
        ports = allocate_ports(type_name, 14000, {}, 12345)
        if not names:  # grafana: its one component is on 443
            assert ports == {}, f"{type_name} got service ports {ports}"
            continue
        got = [ports[n] for n in names]
        shown = dict(zip(names, got, strict=True))
        assert got == list(range(got[0], got[0] + len(got))), (
            f"{type_name}: ports not consecutive in catalogue order: {shown}")


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("base_port", [None, PORT_MIN, 14000, 29000])
def test_every_type_gets_ports_in_range_for_any_offset(
    type_name: str, base_port: int | None
) -> None:
    count = len(catalogue.service_type(type_name).port_components)
    for offset in (0, 1, 999, 1000, 19_999, 2**32 - 1):
        ports = allocate_ports(type_name, base_port, {}, offset)
        assert len(ports) == count
        low = PORT_MIN if base_port is None else base_port
        assert all(low <= p <= PORT_MAX for p in ports.values()), (
            f"{type_name} base {base_port} offset {offset}: {ports} outside {low}..{PORT_MAX}")
        assert len(set(ports.values())) == count, f"{type_name}: shared port in {ports}"


@settings(max_examples=200, deadline=None)
@given(type_name=st.sampled_from(TYPES), base=st.one_of(st.none(), st.integers(10000, 29000)),
       offset=st.integers(0, 2**32), pin_ports=st.lists(st.integers(10000, 30000), max_size=7,
                                                        unique=True))
def test_allocation_never_puts_two_components_on_one_port(
    type_name: str, base: int | None, offset: int, pin_ports: list[int]
) -> None:
    names = [c.name for c in catalogue.service_type(type_name).port_components]
    pins = dict(zip(names[::2], pin_ports, strict=False))
    try:
        ports = allocate_ports(type_name, base, pins, offset)
    except SpecError:
        return  # pins may leave no room; the error is the documented answer
    assert set(ports) == set(names)
    assert all(ports[c] == p for c, p in pins.items()), f"pins {pins} not honoured: {ports}"
    assert len(set(ports.values())) == len(ports), f"two components on one port: {ports}"
    assert all(PORT_MIN <= p <= PORT_MAX for c, p in ports.items() if c not in pins), ports


def test_base_port_30000_fits_a_one_port_service() -> None:
    doc = spec_doc([service_doc("cache", "valkey", [["192.0.2.61"]])], base_port=30000)
    assert ports_of(doc, "cache") == {"valkey": 30000}


def test_base_port_30000_fits_pg_with_pg_pinned() -> None:
    assert ports_of(pg({"pg": 15432}, base_port=30000), "pg-prod") == {
        "pg": 15432, "pgbouncer": 30000}


def test_base_port_30000_with_two_ports_is_a_validation_error() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(pg(base_port=30000))
    assert [p for p, _ in info.value.errors] == ["project.base_port"], info.value.errors
    assert "pg-prod" in info.value.errors[0][1], info.value.errors


def test_base_port_29999_fits_pg_at_the_very_top() -> None:
    assert ports_of(pg(base_port=29999), "pg-prod") == {"pg": 29999, "pgbouncer": 30000}


def test_absent_base_port_gives_ports_anywhere_in_range() -> None:
    seen = set()
    for i in range(20):
        doc = spec_doc([service_doc(f"svc{i}", "thanos", [[f"192.0.2.{i + 1}"]])],
                       base_port=None)
        ports = ports_of(doc, f"svc{i}")
        assert all(PORT_MIN <= p <= PORT_MAX for p in ports.values()), ports
        seen.add(min(ports.values()) // 1000)
    assert len(seen) > 3, f"20 services without base port all start in {seen} (thousands)"


def test_base_port_bounds_the_block_from_below() -> None:
    for i in range(20):
        doc = spec_doc([service_doc(f"svc{i}", "clickhouse", [["192.0.2.1"]])], base_port=25000)
        ports = ports_of(doc, f"svc{i}")
        assert all(25000 <= p <= PORT_MAX for p in ports.values()), ports


def test_colliding_pins_are_an_error_naming_both() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(pg({"pg": 15000, "pgbouncer": 15000}))
    paths = sorted(p for p, _ in info.value.errors)
    assert paths == ["services[0].ports.pg", "services[0].ports.pgbouncer"], info.value.errors


@pytest.mark.parametrize("port", [22, 80, 443, 500, 4500, 9273, 30287])
def test_pin_on_a_fixed_port_is_an_error(port: int) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(pg({"pg": port}))
    assert [p for p, _ in info.value.errors] == ["services[0].ports.pg"], info.value.errors


def test_fixed_port_components_take_no_service_port() -> None:
    for type_name in TYPES:
        ports = allocate_ports(type_name, 14000, {}, 0)
        fixed = [c.name for c in catalogue.service_type(type_name).components
                 if not c.takes_service_port]
        assert not set(fixed) & set(ports), f"{type_name}: fixed components {fixed} got {ports}"


def test_a_node_never_has_two_components_on_one_port() -> None:
    doc = spec_doc([service_doc("k", "kafka", [["192.0.2.41"]], user_config={
        "kafka_rest": True, "schema_registry": True, "kafka_connect": True,
        "kafka_authentication_methods": {"sasl": True}})],
        integrations=[{"type": "prometheus", "source": "k"}])
    policy = compiled(doc, "k-1")
    served = [(c.port, c.protocol) for c in policy.components]
    assert len(served) == len(set(served)), policy.components
    assert {c.name for c in policy.components} >= {
        "kafka", "kafka_sasl", "kafka_rest", "schema_registry", "kafka_connect",
        "kafka_controller", "prometheus"}
