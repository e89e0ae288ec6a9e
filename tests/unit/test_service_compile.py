"""The service compiler and the shared encoder give exactly what a node compiled on its own
gives: the same policy, the same JSON text, the same version digest (examples, golden specs,
big generated services, and a service where two nodes share an address)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nodewall.compiler.node import compile_node
from nodewall.compiler.service import compile_nodes
from nodewall.policy.encoding import PolicyEncoder
from nodewall.spec.load import load_spec, parse_spec
from nodewall.spec.model import DeploymentSpec

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from specgen import big_spec  # noqa: E402

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + sorted(
    (ROOT / "tests" / "unit" / "golden").glob("*.yaml"))


def _same_as_single(spec: DeploymentSpec) -> int:
    together = compile_nodes(spec, spec.node_names)
    encoder = PolicyEncoder()
    for name in spec.node_names:
        alone = compile_node(spec, name)
        assert together[name] == alone, name
        text, version = encoder.encode(together[name])
        assert text == alone.to_json(), name
        assert version == alone.version == together[name].version, name
    return len(together)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_compile_the_same_together(path: Path) -> None:
    assert _same_as_single(load_spec(path)) == len(load_spec(path).node_names)


def test_big_service_compiles_the_same_together() -> None:
    assert _same_as_single(parse_spec(big_spec(entries=50, nodes=40))) == 40


def test_shared_address_falls_back_and_stays_equal() -> None:
    # The spec refuses an address on two nodes; the compiler is still right if one slips by.
    spec = parse_spec(big_spec(entries=5, nodes=6))
    service = spec.services[0]
    nodes = list(service.nodes)
    nodes[1] = nodes[1].model_copy(update={"addresses": nodes[0].addresses})
    shared = spec.model_copy(update={"services": [service.model_copy(update={"nodes": nodes})]})
    assert _same_as_single(shared) == 6
    assert compile_nodes(shared, ["big-2"])["big-2"].set("peers_v4").elements[0].reasons == (
        "cluster peer big-0", "cluster peer big-1")


def test_nodes_with_several_addresses_of_a_family() -> None:
    document = big_spec(entries=3, nodes=5)
    nodes = document["services"][0]["nodes"]
    nodes[2]["addresses"] += ["10.200.0.9", "10.1.0.1", "fd00:be::99"]  # apart, first, last
    nodes[4]["addresses"] = ["10.200.0.10"]  # IPv4 only
    assert _same_as_single(parse_spec(document)) == 5
