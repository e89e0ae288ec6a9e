"""Which nodes a change touches, and recompiling exactly those into stored node policies.

A change recompiles only the nodes whose policy can depend on it: an ip_filter edit, that
service's nodes; a node added, replaced or removed, its service's nodes and the nodes of every
service integrated with it; an integration, both ends; the platform settings, every node; a
service deleted, every node of its project. A policy row is rewritten only when its content
changed, and those nodes are reported (held polls are answered only when the *version*, what the
kernel must hold, differs). It never commits: the caller's transaction does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodewall.policy.model import NodePolicy
from nodewall.server import metrics
from nodewall.spec.model import DeploymentSpec
from nodewall.store.models import NodePolicyRow

_TRACK = "nodewall.policy_changes"


@dataclass
class Tracked:
    """A node's policy around one change: text and version before (None: it had none) and
    after (None: it was removed); `compiled` is the after policy as compiled (None: read it
    from `after`), which spares a preview decoding it again."""

    before: str | None
    before_version: str | None
    after: str | None = None
    after_version: str | None = None
    compiled: NodePolicy | None = None


def tracked(session: Session) -> dict[str, Tracked]:
    """The policies this session's change has written or dropped so far, by node."""
    found: dict[str, Tracked] = session.info.setdefault(_TRACK, {})
    return found


def _note(session: Session, node: str, before: str | None, before_version: str | None,
          after: NodePolicy | None, after_text: str | None) -> None:
    notes = tracked(session)
    entry = notes.get(node)
    if entry is None:
        entry = notes[node] = Tracked(before, before_version)
    entry.after, entry.compiled = after_text, after
    entry.after_version = after.version if after is not None else None


def nodes_of(spec: DeploymentSpec, services: Iterable[str]) -> set[str]:
    wanted = set(services)
    return {n.name for s in spec.services if s.name in wanted for n in s.nodes}


def partners(spec: DeploymentSpec, service: str) -> set[str]:
    """Services sharing an integration with `service` (either end)."""
    result: set[str] = set()
    for integ in spec.integrations:
        ends = {integ.source, integ.dest} - {None}
        if service in ends:
            result |= {e for e in ends if e is not None and e != service}
    return result


def node_change_scope(spec: DeploymentSpec, service: str) -> set[str]:
    """Nodes affected by a node of `service` appearing, moving or going: its peers and the
    nodes of its integration partners."""
    return nodes_of(spec, {service} | partners(spec, service))


def refresh(session: Session, spec: DeploymentSpec, nodes: Iterable[str]) -> list[str]:
    """Compile `nodes` from `spec`, store what changed; return the nodes whose row changed."""
    from nodewall.compiler.service import compile_nodes
    from nodewall.policy.encoding import PolicyEncoder

    names = sorted(set(nodes) & set(spec.node_names))
    if not names:
        return []
    stored = {
        row.node_name: row
        for row in session.execute(
            select(NodePolicyRow).where(NodePolicyRow.node_name.in_(names))
        ).scalars()
    }
    changed: list[str] = []
    now = datetime.now(UTC)
    started = time.perf_counter()
    compiled = compile_nodes(spec, names)  # a service's nodes together: shared parts once
    encoder = PolicyEncoder()
    for name in names:
        policy = compiled[name]
        text, version = encoder.encode(policy)
        row = stored.get(name)
        if row is None:
            session.add(NodePolicyRow(node_name=name, version=version, policy=text,
                                      updated_at=now))
            changed.append(name)
            _note(session, name, None, None, policy, text)
        elif row.policy != text:
            changed.append(name)
            _note(session, name, row.policy, row.version, policy, text)
            if row.version != version:  # a new version: stamped with this change's time
                row.updated_at = now
            row.version, row.policy = version, text
    metrics.COMPILE_SECONDS.observe(time.perf_counter() - started)
    metrics.NODES_COMPILED.inc(len(names))
    return changed


def drop(session: Session, nodes: Iterable[str]) -> list[str]:
    """Forget the policies of removed nodes; they count as changed (their agents get 404)."""
    names = sorted(set(nodes))
    if names:
        for row in session.execute(select(NodePolicyRow.node_name, NodePolicyRow.policy,
                                          NodePolicyRow.version)
                                   .where(NodePolicyRow.node_name.in_(names))):
            _note(session, row.node_name, row.policy, row.version, None, None)
        session.execute(delete(NodePolicyRow).where(NodePolicyRow.node_name.in_(names)))
    return names


def policy_body(version: str, policy_json: str, changed: datetime) -> bytes:
    """The `{version, policy, changed_at}` answer, spliced from the stored JSON without
    re-encoding it; `changed_at` is the unix time of the change that produced the version (an
    agent measures change-to-kernel latency from it)."""
    stamp = (changed if changed.tzinfo else changed.replace(tzinfo=UTC)).timestamp()
    return (b'{"version":"' + version.encode() + b'","policy":' + policy_json.encode()
            + b',"changed_at":' + repr(round(stamp, 6)).encode() + b"}")

