"""Checks of a whole store: every row of every table, and every stored node policy against a
from-scratch compile of the stored state (used by the store and the API fault tests)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, select

from nodewall.compiler.node import compile_node
from nodewall.server.state import project_doc
from nodewall.spec.load import parse_spec
from nodewall.store import Store
from nodewall.store.models import NodePolicyRow, ProjectRow


def all_rows(store: Store) -> dict[str, Any]:
    meta = MetaData()
    meta.reflect(store.engine)
    with store.engine.connect() as conn:
        return {name: sorted(map(repr, conn.execute(select(t)).all()))
                for name, t in meta.tables.items()}


def stored_equals_fresh_compile(store: Store, after: object = None) -> None:
    with store.read_session() as s:
        stored = {r.node_name: r for r in s.execute(select(NodePolicyRow)).scalars()}
        expected: dict[str, str] = {}
        for project in s.execute(select(ProjectRow)).scalars():
            spec = parse_spec(project_doc(s, project).document)
            for node in spec.node_names:
                expected[node] = compile_node(spec, node).to_json()
    assert set(stored) == set(expected), "stored policies for the wrong set of nodes"
    for node, text in expected.items():
        assert stored[node].policy == text, f"stale policy stored for {node} after {after}"
