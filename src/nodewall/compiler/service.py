"""The compiler for many nodes of one service at once: the same policies as `compile_node`,
with the work shared that is the same for every node of a service.

Only two things of a node's policy depend on which node of its service it is: the `node` name
and its cluster peer sets (every other node's addresses). Everything else (management,
integration and client sets, rules, components, warnings) is the service's. So one node is
compiled in full, its peer sets from the whole service's addresses, parsed once; each other node
gets that policy with its own name and peer sets, made by leaving its own addresses out of the
service's. The set and element objects are shared between the policies, which lets an encoder
write each of them once (`nodewall.policy.encoding`). When the service's addresses are not all
distinct (one address on two nodes: its element carries both nodes' reasons, and leaving one
node out changes it), every node is compiled on its own.

It must give exactly what `compile_node` gives, node by node (tests/unit/test_service_compile.py
compares them); it never writes customer text into a policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from nodewall.compiler import node as single
from nodewall.gcpause import collector_paused
from nodewall.net import cidr
from nodewall.policy import reasons
from nodewall.policy.encoding import cut
from nodewall.policy.model import AddressSet, NodePolicy, SetElement
from nodewall.spec.model import DeploymentSpec, ServiceSpec

_PEER_SETS = {4: "peers_v4", 6: "peers_v6"}


def compile_nodes(spec: DeploymentSpec, names: Iterable[str]) -> dict[str, NodePolicy]:
    """The policy of each named node, service by service. Raises KeyError for an unknown
    node."""
    by_service: dict[str, list[str]] = {}
    for name in names:
        service, _ = spec.node(name)
        by_service.setdefault(service.name, []).append(name)
    result: dict[str, NodePolicy] = {}
    with collector_paused():  # many small acyclic objects (see `nodewall.gcpause`)
        for service_name, members in by_service.items():
            result.update(_compile_service(spec, spec.service(service_name), members))
    return result


def _compile_service(spec: DeploymentSpec, service: ServiceSpec,
                     names: list[str]) -> dict[str, NodePolicy]:
    if len(names) < 2:
        return {n: single._compile(spec, n) for n in names}
    shared = _service_peers(service, reasons.peers_set(service.name))
    if shared is None:
        return {n: single._compile(spec, n) for n in names}
    template = single._compile(spec, names[0])
    result = {}
    for name in names:
        peer_sets = {_PEER_SETS[f]: _peer_set(shared[f], name) for f in single.FAMILIES}
        result[name] = NodePolicy(
            node=name, service=template.service, service_type=template.service_type,
            environment=template.environment,
            sets=tuple(peer_sets.get(s.name, s) for s in template.sets),
            rules=template.rules, components=template.components, warnings=template.warnings,
        )
    return result


def _service_peers(service: ServiceSpec, purpose: str) -> dict[int, _Whole] | None:
    """Per family, every node's addresses as one peer set, parsed once, with where each node's
    elements sit in it; None when an address is on two nodes (their reasons merge, so no node's
    peer set is the whole less its own)."""
    owners = [n.name for n in service.nodes for _ in n.addresses]
    parsed = cidr.parse_many(a.partition("/")[0] for n in service.nodes for a in n.addresses)
    items = [(net, owner, text) for (net, _), owner, text
             in zip(parsed.parsed, owners, parsed.texts, strict=True)]
    result: dict[int, _Whole] = {}
    for family in single.FAMILIES:
        texts, owned = cidr.reduce_named(x for x in items if x[0].family == family)
        if any(len(o) != 1 for o in owned):
            return None
        where: dict[str, list[int]] = {}
        for index, (owner,) in enumerate(owned):
            where.setdefault(owner, []).append(index)
        elements = tuple(SetElement(t, (reasons.cluster_peer(o),))
                         for t, (o,) in zip(texts, owned, strict=True))
        whole = AddressSet(_PEER_SETS[family], family, True, purpose, elements)
        whole.__dict__["networks"] = tuple(texts)  # the cached property's slot
        result[family] = _Whole(whole, where)
    return result


class _Whole(NamedTuple):
    """A service's peer set of one family with every node in it, and each node's positions."""

    whole: AddressSet
    positions: dict[str, list[int]]


def _peer_set(shared: _Whole, node: str) -> AddressSet:
    return cut(shared.whole, shared.positions.get(node, ()))
