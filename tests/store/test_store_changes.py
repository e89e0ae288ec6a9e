"""State changes on the store (real SQLite file, real PostgreSQL), without HTTP: after any
sequence of changes every stored node policy equals a from-scratch compile of the stored state
(so the "which nodes does this change touch" logic misses nothing), ports stay as first drawn,
and a refused change leaves every table as it was."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select
from storecheck import all_rows, stored_equals_fresh_compile

from nodewall.server import ops, schemas
from nodewall.server.control import Control
from nodewall.server.errors import ApiError
from nodewall.server.hub import PolicyHub
from nodewall.server.state import get_project
from nodewall.store import Store
from nodewall.store.models import ServicePortRow


def test_random_changes_keep_every_policy_current(store: Store) -> None:
    rng = random.Random(5)
    control = Control(store, PolicyHub(store))
    control.change(ops.set_platform, schemas.PlatformIn(management_networks=["198.51.100.0/28"]))
    control.change(ops.create_project, schemas.ProjectIn(project="acme", base_port=12000))
    vpc = control.change(ops.create_vpc, "acme", schemas.VpcIn(
        cloud_name="aws-eu-west-1", network_cidr="10.0.0.0/16", peer_cidrs=["10.9.0.0/16"]))
    kinds = [("pg", {}), ("kafka", {"kafka_rest": True}), ("opensearch", {}), ("thanos", {}),
             ("kafka_connect", {})]
    for name, (stype, config) in zip(["pg", "kafka", "os", "thanos", "connect"], kinds,
                                     strict=True):
        control.change(ops.create_service, "acme", schemas.ServiceIn(
            service_name=name, service_type=stype, cloud_name="aws-eu-west-1",
            project_vpc_id=vpc["project_vpc_id"], user_config=config))
    with store.read_session() as s:
        first_ports = sorted((p.service_id, p.component, p.port)
                             for p in s.execute(select(ServicePortRow)).scalars())
    for integ in (("read_replica", "pg", None), ("kafka_connect", "kafka", "connect"),
                  ("metrics", "pg", "thanos"), ("logs", "kafka", "os"),
                  ("prometheus", "pg", None)):
        itype, source, dest = integ
        if itype == "read_replica":
            continue
        control.change(ops.create_integration, "acme", schemas.IntegrationIn(
            integration_type=itype, source_service=source, dest_service=dest))
    services = ["pg", "kafka", "os", "thanos", "connect"]
    nodes: dict[str, str] = {}
    next_ip = 10
    for step in range(60):
        action = rng.choice(["add", "add", "replace", "remove", "filter", "toggle"])
        service = rng.choice(services)
        if action == "add" or (action in ("replace", "remove") and not nodes):
            node = f"{service}-{step}"
            next_ip += 1
            control.change(ops.put_node, "acme", service, node, schemas.NodeIn(
                addresses=[f"10.0.{next_ip // 250}.{next_ip % 250 + 1}",
                           f"2001:db8::{next_ip:x}"]))
            nodes[node] = service
        elif action == "replace":
            node = rng.choice(sorted(nodes))
            next_ip += 1
            control.change(ops.put_node, "acme", nodes[node], node, schemas.NodeIn(
                addresses=[f"10.0.{next_ip // 250}.{next_ip % 250 + 1}"]))
        elif action == "remove":
            node = rng.choice(sorted(nodes))
            control.change(ops.remove_node, "acme", nodes.pop(node), node)
        elif action == "filter":
            nets = [f"10.{rng.randrange(256)}.0.0/16" for _ in range(rng.randrange(4))]
            control.change(ops.update_service, "acme", service,
                           schemas.ServiceUpdate(user_config={"ip_filter": nets}))
        else:
            control.change(ops.update_service, "acme", service, schemas.ServiceUpdate(
                user_config={"public_access": {}} if service != "kafka"
                else {"schema_registry": rng.choice([True, False])}))
        if step % 15 == 14:
            stored_equals_fresh_compile(store, (step, action, service))
    stored_equals_fresh_compile(store)
    control.change(ops.delete_service, "acme", "connect")
    stored_equals_fresh_compile(store)
    with store.read_session() as s:
        assert sorted((p.service_id, p.component, p.port)
                      for p in s.execute(select(ServicePortRow)).scalars()) == [
            p for p in first_ports if p[0] != _service_id(store, "connect", first_ports)]


def _service_id(store: Store, name: str, ports: list[tuple[int, str, int]]) -> int:
    # the deleted service is the one whose id no longer owns a row
    with store.read_session() as s:
        live = {p.service_id for p in s.execute(select(ServicePortRow)).scalars()}
    gone = {p[0] for p in ports} - live
    assert len(gone) == 1, (name, gone)
    return gone.pop()


def test_a_refused_change_leaves_every_table_as_it_was(store: Store) -> None:
    control = Control(store, PolicyHub(store))
    control.change(ops.set_platform, schemas.PlatformIn(management_networks=["198.51.100.0/28"]))
    control.change(ops.create_project, schemas.ProjectIn(project="acme"))
    control.change(ops.create_service, "acme", schemas.ServiceIn(
        service_name="pg", service_type="pg", cloud_name="aws-eu-west-1"))
    control.change(ops.put_node, "acme", "pg", "pg-1", schemas.NodeIn(addresses=["192.0.2.1"]))
    before = all_rows(store)
    refused = [
        lambda: control.change(ops.put_node, "acme", "pg", "pg-2",
                               schemas.NodeIn(addresses=["192.0.2.1"])),
        lambda: control.change(ops.update_service, "acme", "pg", schemas.ServiceUpdate(
            user_config={"ip_filter": ["192.0.2.0/24", "x"]})),
        lambda: control.change(ops.create_service, "acme", schemas.ServiceIn(
            service_name="pg", service_type="pg", cloud_name="aws-eu-west-1")),
        lambda: control.change(ops.create_integration, "acme", schemas.IntegrationIn(
            integration_type="read_replica", source_service="pg", dest_service="pg")),
        lambda: control.change(ops.remove_node, "acme", "pg", "pg-9"),
    ]
    for attempt in refused:
        with pytest.raises(ApiError):
            attempt()
    assert all_rows(store) == before
    with store.read_session() as s:
        assert get_project(s, "acme").name == "acme"
