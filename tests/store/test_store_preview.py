"""The change preview against the real change, on a real SQLite file and a real PostgreSQL
server, over random sequences of changes (hypothesis): for every change, the dry run leaves
every table as it was, refuses exactly what the real change refuses (same status), and names
exactly the nodes, set networks, ports and versions that the real change then moves, where the
real change's effect is read back from the stored policies before and after it (not from what
the change noted about itself)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from storecheck import all_rows, stored_equals_fresh_compile

from nodewall.server import ops, preview, removals, schemas
from nodewall.server.control import Control, How
from nodewall.server.errors import ApiError
from nodewall.server.hub import PolicyHub
from nodewall.server.policies import Tracked
from nodewall.store import Store
from nodewall.store.models import IntegrationRow, NodePolicyRow, ProjectRow

_projects = itertools.count()

networks = st.lists(st.sampled_from(
    ["10.0.0.0/16", "10.0.1.0/24", "10.9.0.0/16", "192.0.2.0/24", "0.0.0.0/0", "::/0",
     "2001:db8::/48", "10.0.0.7/32"]), max_size=4, unique=True)
services = st.sampled_from(["pg", "kafka", "os"])
changes = st.lists(st.one_of(
    st.tuples(st.just("ip_filter"), services, networks),
    st.tuples(st.just("toggle"), st.just("kafka"), st.booleans()),
    st.tuples(st.just("public"), services, st.booleans()),
    st.tuples(st.just("add"), services, st.integers(0, 5)),
    st.tuples(st.just("replace"), services, st.integers(0, 5)),
    st.tuples(st.just("remove"), services, st.integers(0, 5)),
    st.tuples(st.just("integrate"), st.sampled_from(
        [("logs", "kafka", "os"), ("read_replica", "pg", "pg"), ("prometheus", "pg", None),
         ("metrics", "pg", "os")]), st.none()),
    st.tuples(st.just("unintegrate"), st.integers(0, 3), st.none()),
    st.tuples(st.just("delete_service"), services, st.none()),
    st.tuples(st.just("delete_vpc"), st.none(), st.none()),
    st.tuples(st.just("delete_project"), st.booleans(), st.none()),
    st.tuples(st.just("create_service"), st.sampled_from(["kv", "pg"]), st.none()),
    st.tuples(st.just("platform"), st.sampled_from(
        [["198.51.100.0/28"], ["198.51.100.0/28", "2001:db8:ff::/64"]]), st.none()),
), min_size=1, max_size=6)


def _policies(store: Store) -> dict[str, tuple[str, str]]:
    with store.read_session() as s:
        return {r.node_name: (r.policy, r.version)
                for r in s.execute(select(NodePolicyRow)).scalars()}


def _effect(before: dict[str, tuple[str, str]],
            after: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """The real change's effect, from the stored rows alone."""
    moved = {}
    for node in set(before) | set(after):
        b, a = before.get(node), after.get(node)
        moved[node] = Tracked(b[0] if b else None, b[1] if b else None,
                              a[0] if a else None, a[1] if a else None)
    return preview.diffs(moved)


def _setup(control: Control, project: str) -> str:
    control.change(ops.create_project, schemas.ProjectIn(project=project, base_port=12000))
    vpc = control.change(ops.create_vpc, project, schemas.VpcIn(
        cloud_name="aws-eu-west-1", network_cidr="10.0.0.0/16", peer_cidrs=["10.9.0.0/16"]))
    vpc_id: str = vpc["project_vpc_id"]
    for name, stype in (("pg", "pg"), ("kafka", "kafka"), ("os", "opensearch")):
        control.change(ops.create_service, project, schemas.ServiceIn(
            service_name=name, service_type=stype, cloud_name="aws-eu-west-1",
            project_vpc_id=vpc_id if name != "os" else None))
    for i, name in enumerate(("pg", "kafka", "os")):
        control.change(ops.put_node, project, name, f"{project}-{name}-0", schemas.NodeIn(
            addresses=[f"10.0.{i}.1", f"2001:db8:{i + 1}::1"]))
    return vpc_id


def _op(store: Store, project: str, vpc: str, change: tuple[Any, Any, Any]) -> tuple[Any, ...]:
    kind, a, b = change
    if kind == "ip_filter":
        return (ops.update_service, project, a, schemas.ServiceUpdate(user_config={
            "ip_filter": [{"network": n, "description": "office\n'x"} for n in b]}))
    if kind == "toggle":
        return (ops.update_service, project, a,
                schemas.ServiceUpdate(user_config={"kafka_rest": b}))
    if kind == "public":
        key = {"pg": "pg", "kafka": "kafka", "os": "opensearch"}[a]
        return (ops.update_service, project, a,
                schemas.ServiceUpdate(user_config={"public_access": {key: b}}))
    if kind in ("add", "replace"):
        index = {"pg": 0, "kafka": 1, "os": 2}[a]
        host = b + (10 if kind == "replace" else 2)
        return (ops.put_node, project, a, f"{project}-{a}-{b}",
                schemas.NodeIn(addresses=[f"10.0.{index}.{host}"]))
    if kind == "remove":
        return (ops.remove_node, project, a, f"{project}-{a}-{b}")
    if kind == "integrate":
        itype, source, dest = a
        return (ops.create_integration, project, schemas.IntegrationIn(
            integration_type=itype, source_service=source, dest_service=dest))
    if kind == "unintegrate":
        with store.read_session() as s:
            ids = sorted(s.execute(select(IntegrationRow.id).join(
                ProjectRow, ProjectRow.id == IntegrationRow.project_id).where(
                ProjectRow.name == project)).scalars())
        return (removals.delete_integration, project, ids[a] if a < len(ids) else 2**31 - 1)
    if kind == "delete_service":
        return (ops.delete_service, project, a)
    if kind == "delete_vpc":
        return (removals.delete_vpc, project, vpc)
    if kind == "delete_project":
        return (removals.delete_project, project, a)
    if kind == "create_service":
        return (ops.create_service, project, schemas.ServiceIn(
            service_name=a, service_type="valkey", cloud_name="aws-eu-west-1",
            project_vpc_id=vpc))
    return (ops.set_platform, schemas.PlatformIn(management_networks=a))


def _run(control: Control, how: How, op: tuple[Any, ...]) -> tuple[int, Any]:
    try:
        return 200, control.submit(how, *op)
    except ApiError as exc:
        return exc.status, exc.messages


@settings(max_examples=10, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(sequence=changes)
def test_the_preview_is_what_the_change_then_does(store: Store,
                                                  sequence: list[tuple[Any, Any, Any]]) -> None:
    control = Control(store, PolicyHub(store))
    control.change(ops.set_platform, schemas.PlatformIn(management_networks=["198.51.100.0/28"]))
    project = f"h{next(_projects)}"
    vpc = _setup(control, project)
    for step, change in enumerate(sequence):
        op = _op(store, project, vpc, change)
        rows = all_rows(store)
        before = _policies(store)
        status, previewed = _run(control, How(dry_run=True), op)
        assert all_rows(store) == rows, f"the dry run of {change} wrote to the store"
        real_status, answer = _run(control, How(), op)
        assert status == real_status, (change, previewed, answer)
        if status != 200:
            assert previewed == answer, f"step {step} {change}: different refusals"
            continue
        effect = _effect(before, _policies(store))
        assert previewed["nodes"] == effect, f"step {step} {change}: preview differs"
        if change[0] not in ("integrate", "create_service"):  # fresh ids, random ports
            assert previewed["result"] == answer, f"step {step} {change}: answers differ"
    stored_equals_fresh_compile(store, sequence)
