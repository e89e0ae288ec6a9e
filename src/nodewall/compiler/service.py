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

from nodewall.compiler import node as single
from nodewall.gcpause import collector_paused
from nodewall.net import cidr
from nodewall.policy import reasons
from nodewall.policy.model import AddressSet, Family, NodePolicy, SetElement
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
    shared = _service_peers(service)
    if shared is None:
        return {n: single._compile(spec, n) for n in names}
    template = single._compile(spec, names[0])
    peer_purpose = reasons.peers_set(service.name)
    result = {}
    for name in names:
        peer_sets = {_PEER_SETS[f]: _peer_set(f, peer_purpose, shared[f], name)
                     for f in single.FAMILIES}
        result[name] = NodePolicy(
            node=name, service=template.service, service_type=template.service_type,
            environment=template.environment,
            sets=tuple(peer_sets.get(s.name, s) for s in template.sets),
            rules=template.rules, components=template.components, warnings=template.warnings,
        )
    return result


#: Per family, the service's host elements in set order, each with the node it belongs to.
_Shared = dict[int, tuple[list[SetElement], list[str]]]


def _service_peers(service: ServiceSpec) -> _Shared | None:
    """Every node's addresses as peer elements, parsed once; None when an address is on two
    nodes (their reasons merge, so no node's peer set is the whole minus its own)."""
    owners = [n.name for n in service.nodes for _ in n.addresses]
    parsed = cidr.parse_many(a.partition("/")[0] for n in service.nodes for a in n.addresses)
    items = [(net, owner, text) for (net, _), owner, text
             in zip(parsed.parsed, owners, parsed.texts, strict=True)]
    result: _Shared = {}
    for family in single.FAMILIES:
        texts, owned = cidr.reduce_named(x for x in items if x[0].family == family)
        if any(len(o) != 1 for o in owned):
            return None
        who = [o[0] for o in owned]
        result[family] = ([SetElement(t, (reasons.cluster_peer(o),)) for t, o in zip(texts, who,
                                                                                  strict=True)],
                          who)
    return result


def _peer_set(family: Family, purpose: str, shared: tuple[list[SetElement], list[str]],
              node: str) -> AddressSet:
    elements, owners = shared
    kept = tuple(e for e, o in zip(elements, owners, strict=True) if o != node)
    made = AddressSet(_PEER_SETS[family], family, True, purpose, kept)
    made.__dict__["networks"] = tuple(e.network for e in kept)  # the cached property's slot
    return made
