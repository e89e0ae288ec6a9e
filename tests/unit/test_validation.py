"""SPEC section 2 rejections: `nodewall validate` exits 2 naming the path of every error."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nodewall.cli.app import app
from nodewall.errors import SpecError
from nodewall.spec.load import parse_spec

from .helpers import EXAMPLES, run_nodewall, service_doc, spec_doc

Doc = dict[str, Any]


def good() -> Doc:
    return spec_doc(
        [
            service_doc("pg-prod", "pg", [["192.0.2.11", "2001:db8:10::11"], ["192.0.2.12"]],
                        user_config={"ip_filter": ["203.0.113.0/24"]}),
            service_doc("pg-replica", "pg", [["192.0.2.21"]]),
            service_doc("events", "kafka", [["10.20.0.11"]], cloud="google-europe-west1",
                        vpc="vpc-eu"),
        ],
        vpcs=[{"id": "vpc-eu", "cloud": "google-europe-west1", "network_cidr": "10.20.0.0/24"}],
        integrations=[{"type": "read_replica", "source": "pg-prod", "dest": "pg-replica"}],
    )


def ece(doc: Doc) -> Doc:
    s = doc["services"][2]
    s["environment"] = "ece"
    s["socks5_proxy"] = "10.20.0.5:1080"
    return doc


def setter(path: str, value: Any) -> Callable[[Doc], Doc]:
    """A mutation setting a dotted path (list indexes as numbers) of the good spec."""
    def mutate(doc: Doc) -> Doc:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        target: Any = doc
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
        return doc
    return mutate


def deleter(path: str) -> Callable[[Doc], Doc]:
    def mutate(doc: Doc) -> Doc:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        target: Any = doc
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
        return doc
    return mutate


def both(*mutations: Callable[[Doc], Doc]) -> Callable[[Doc], Doc]:
    def mutate(doc: Doc) -> Doc:
        for m in mutations:
            doc = m(doc)
        return doc
    return mutate


# (id, mutation of the good spec, the path the error must name, a fragment of its reason)
REJECTIONS: list[tuple[str, Callable[[Doc], Doc], str, str]] = [
    ("ip_filter-not-a-list", setter("services.0.user_config.ip_filter", "10.0.0.0/8"),
     "services[0].user_config.ip_filter", "list"),
    ("ip_filter-bad-cidr",
     setter("services.0.user_config.ip_filter", ["10.0.0.0/8", "10.0.0.300/24"]),
     "services[0].user_config.ip_filter[1]", "not a valid CIDR"),
    ("ip_filter-bad-prefix",
     setter("services.0.user_config.ip_filter", [{"network": "10.0.0.0/33"}]),
     "services[0].user_config.ip_filter[0]", "not a valid CIDR"),
    ("ip_filter-item-not-str-or-object", setter("services.0.user_config.ip_filter", [42]),
     "services[0].user_config.ip_filter[0]", ""),
    ("ip_filter-object-without-network",
     setter("services.0.user_config.ip_filter", [{"description": "x"}]),
     "services[0].user_config.ip_filter[0].network", "required"),
    ("ip_filter-object-unknown-key",
     setter("services.0.user_config.ip_filter", [{"network": "10.0.0.0/8", "note": "x"}]),
     "services[0].user_config.ip_filter[0].note", ""),
    ("ip_filter-too-many", setter("services.0.user_config.ip_filter", ["10.0.0.0/8"] * 8001),
     "services[0].user_config.ip_filter", "8000"),
    ("ip_filter-network-too-long",
     setter("services.0.user_config.ip_filter", [{"network": "10.0.0.0/8" + " " * 40}]),
     "services[0].user_config.ip_filter[0].network", "43"),
    ("ip_filter-description-too-long",
     setter("services.0.user_config.ip_filter", [{"network": "10.0.0.0/8",
                                                  "description": "x" * 1025}]),
     "services[0].user_config.ip_filter[0].description", "1024"),
    ("ip_filter-ipv6-scope-id", setter("services.0.user_config.ip_filter", ["fe80::1%eth0/64"]),
     "services[0].user_config.ip_filter[0]", "not a valid CIDR"),
    ("management-empty", setter("platform.management_networks", []),
     "platform.management_networks", ""),
    ("management-bad-cidr", setter("platform.management_networks", ["198.51.100.0/28", "nope"]),
     "platform.management_networks[1]", "not a valid CIDR"),
    ("platform-missing", deleter("platform"), "platform", "required"),
    ("node-address-bad", setter("services.0.nodes.1.addresses", ["192.0.2.300"]),
     "services[0].nodes[1].addresses[0]", "not a valid IP address"),
    ("node-address-is-a-cidr", setter("services.0.nodes.1.addresses", ["192.0.2.12/32"]),
     "services[0].nodes[1].addresses[0]", "not a valid IP address"),
    ("node-without-addresses", setter("services.0.nodes.1.addresses", []),
     "services[0].nodes[1].addresses", ""),
    ("vpc-bad-cidr", setter("vpcs.0.network_cidr", "10.20.0.0/99"), "vpcs[0].network_cidr",
     "not a valid CIDR"),
    ("vpc-bad-peer-cidr", setter("vpcs.0.peer_cidrs", ["10.50.0.0/16", "x"]),
     "vpcs[0].peer_cidrs[1]", "not a valid CIDR"),
    ("port-zero", setter("services.0.ports", {"pg": 0}), "services[0].ports.pg", ""),
    ("port-too-big", setter("services.0.ports", {"pg": 65536}), "services[0].ports.pg", ""),
    ("base-port-low", setter("project.base_port", 9999), "project.base_port", "10000"),
    ("base-port-high", setter("project.base_port", 30001), "project.base_port", "30000"),
    ("base-port-30000-leaves-no-room-for-pg", setter("project.base_port", 30000),
     "project.base_port", "no room"),
    ("project-name-uppercase", setter("project.name", "Acme"), "project.name", "pattern"),
    ("service-name-digit-first", setter("services.1.name", "1replica"), "services[1].name",
     "pattern"),
    ("node-name-too-long", setter("services.0.nodes.0.name", "n" * 64),
     "services[0].nodes[0].name", "pattern"),
    ("node-name-underscore", setter("services.0.nodes.0.name", "pg_1"),
     "services[0].nodes[0].name", "pattern"),
    ("vpc-id-bad", both(setter("vpcs.0.id", "VPC"), setter("services.2.vpc", "VPC")),
     "vpcs[0].id", "pattern"),
    ("unknown-service-type", setter("services.1.type", "postgres"), "services[1].type",
     "unknown service type"),
    ("unknown-public-access-component",
     setter("services.0.user_config.public_access", {"pgpool": True}),
     "services[0].user_config.public_access.pgpool", "unknown component"),
    ("unknown-port-component", setter("services.0.ports", {"pgpool": 15000}),
     "services[0].ports.pgpool", "unknown component"),
    ("pin-of-a-fixed-port-component", setter("services.0.ports", {"prometheus": 15000}),
     "services[0].ports.prometheus", "cannot be pinned"),
    ("pin-on-a-reserved-port", setter("services.0.ports", {"pg": 22}), "services[0].ports.pg",
     "reserved"),
    ("pin-on-port-443", setter("services.0.ports", {"pgbouncer": 443}),
     "services[0].ports.pgbouncer", "reserved"),
    ("colliding-pins", setter("services.0.ports", {"pg": 15000, "pgbouncer": 15000}),
     "services[0].ports.pgbouncer", "also pinned"),
    ("unknown-vpc", setter("services.2.vpc", "vpc-us"), "services[2].vpc", "unknown VPC"),
    ("vpc-in-another-cloud", setter("services.2.cloud", "google-us-east1"), "services[2].vpc",
     "is in google-europe-west1"),
    ("unknown-cloud-provider", setter("services.1.cloud", "ibm-eu"), "services[1].cloud",
     "not a known cloud"),
    ("unknown-integration-source", setter("integrations.0.source", "pg-nope"),
     "integrations[0].source", "unknown service"),
    ("unknown-integration-dest", setter("integrations.0.dest", "pg-nope"),
     "integrations[0].dest", "unknown service"),
    ("unknown-integration-type", setter("integrations.0.type", "replication"),
     "integrations[0].type", "unknown integration type"),
    ("integration-wrong-target-type", setter("integrations.0.source", "events"),
     "integrations[0].source", "not kafka"),
    ("integration-with-itself", setter("integrations.0.dest", "pg-prod"),
     "integrations[0].dest", "itself"),
    ("integration-missing-dest", deleter("integrations.0.dest"), "integrations[0].dest",
     "needs a dest"),
    ("prometheus-with-dest", setter("integrations.0.type", "prometheus"),
     "integrations[0].dest", "no dest"),
    ("duplicate-integration", setter("integrations", [
        {"type": "read_replica", "source": "pg-prod", "dest": "pg-replica"}] * 2),
     "integrations[1]", "the same integration as integrations[0]"),
    ("duplicate-service-name", setter("services.1.name", "pg-prod"), "services[1].name",
     "duplicate service name"),
    ("duplicate-node-name", setter("services.1.nodes.0.name", "pg-prod-1"),
     "services[1].nodes[0].name", "duplicate node name"),
    ("duplicate-vpc-id", setter("vpcs", [{"id": "vpc-eu", "cloud": "google-europe-west1",
                                          "network_cidr": "10.20.0.0/24"}] * 2),
     "vpcs[1].id", "duplicate vpc name"),
    ("address-used-twice-across-services", setter("services.1.nodes.0.addresses", ["192.0.2.11"]),
     "services[1].nodes[0].addresses[0]", "already used"),
    ("address-spelled-otherwise",  # one written form, so no duplicate hides behind another
     setter("services.1.nodes.0.addresses", ["2001:DB8:10:0::11"]),
     "services[1].nodes[0].addresses[0]", "not in canonical form; write '2001:db8:10::11'"),
    ("address-ipv4-mapped", setter("services.1.nodes.0.addresses", ["::ffff:192.0.2.11"]),
     "services[1].nodes[0].addresses[0]", "write '192.0.2.11'"),
    ("ece-outside-a-vpc", both(setter("services.1.environment", "ece"),
                               setter("services.1.socks5_proxy", "10.20.0.5:1080")),
     "services[1].vpc", "must be in a VPC"),
    ("ece-public-access", both(ece, setter("services.2.user_config",
                                           {"public_access": {"kafka": False}})),
     "services[2].user_config.public_access", "cannot be enabled"),
    ("ece-without-socks5-proxy", both(ece, deleter("services.2.socks5_proxy")),
     "services[2].socks5_proxy", "needs its SOCKS5 proxy"),
    ("socks5-proxy-bad", both(ece, setter("services.2.socks5_proxy", "10.20.0.5")),
     "services[2].socks5_proxy", "ADDRESS:PORT"),
    ("socks5-proxy-outside-ece", setter("services.0.socks5_proxy", "10.20.0.5:1080"),
     "services[0].socks5_proxy", "only ece"),
    ("unknown-environment", setter("services.0.environment", "prod"),
     "services[0].environment", ""),
    ("enable-ipv6-on-mysql", both(setter("services.1.type", "mysql"),
                                  setter("services.1.user_config", {"enable_ipv6": True})),
     "services[1].user_config.enable_ipv6", "does not support IPv6"),
    ("kafka-setting-on-pg", setter("services.0.user_config", {"kafka_rest": True}),
     "services[0].user_config.kafka_rest", "not a setting of pg"),
    ("unknown-top-level-key", setter("bogus", 1), "bogus", ""),
    ("unknown-service-key", setter("services.0.ip_filter", []), "services[0].ip_filter", ""),
]


def write(tmp_path: Path, doc: Any, name: str = "spec.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_the_good_spec_is_valid(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, good()))])
    assert result.exit_code == 0, f"good spec rejected: {result.output}"


@pytest.mark.parametrize("mutate, path, fragment",
                         [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_each_rejection_exits_2_naming_its_path(
    tmp_path: Path, mutate: Callable[[Doc], Doc], path: str, fragment: str
) -> None:
    doc = mutate(good())
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, doc))])
    assert result.exit_code == 2, f"expected exit 2 naming {path}, got {result.exit_code}: " \
                                  f"{result.output[-1500:]}"
    lines = [ln for ln in result.output.splitlines() if ln.startswith(f"error: {path}: ")]
    assert lines, f"no error line for path {path!r}; output:\n{result.output[-1500:]}"
    assert any(fragment in ln for ln in lines), (
        f"error for {path} does not say {fragment!r}: {lines}")


@pytest.mark.parametrize("mutate, path, fragment",
                         [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_parse_spec_raises_the_same_path(
    mutate: Callable[[Doc], Doc], path: str, fragment: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(mutate(good()))
    paths = [p for p, _ in info.value.errors]
    assert path in paths, f"expected an error at {path}, got {info.value.errors}"


def test_all_structural_errors_are_reported_at_once(tmp_path: Path) -> None:
    doc = good()
    doc["platform"]["management_networks"] = ["198.51.100.0/33"]
    doc["project"]["base_port"] = 5
    doc["services"][0]["user_config"]["ip_filter"] = ["10.0.0.0/8", "bad", {"network": "x"}]
    doc["services"][0]["nodes"][1]["addresses"] = ["nope"]
    doc["services"][1]["ports"] = {"pg": 70000}
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, doc))])
    expected = ["platform.management_networks[0]", "project.base_port",
                "services[0].user_config.ip_filter[1]", "services[0].user_config.ip_filter[2]",
                "services[0].nodes[1].addresses[0]", "services[1].ports.pg"]
    assert result.exit_code == 2
    missing = [p for p in expected if f"error: {p}: " not in result.output]
    assert not missing, f"errors not reported: {missing}; output:\n{result.output}"
    assert result.output.count("error: ") == len(expected), result.output


def test_all_cross_reference_errors_are_reported_at_once(tmp_path: Path) -> None:
    doc = good()
    doc["services"][1]["name"] = "pg-prod"
    doc["services"][2]["vpc"] = "vpc-nope"
    doc["services"][0]["ports"] = {"pg": 22}
    doc["services"][0]["user_config"]["public_access"] = {"nope": True}
    doc["integrations"][0]["type"] = "nope"
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, doc))])
    expected = ["services[1].name", "services[2].vpc", "services[0].ports.pg",
                "services[0].user_config.public_access.nope", "integrations[0].type"]
    assert result.exit_code == 2
    missing = [p for p in expected if f"error: {p}: " not in result.output]
    assert not missing, f"errors not reported: {missing}; output:\n{result.output}"


def test_structural_and_cross_reference_errors_are_reported_together() -> None:
    doc = good()
    doc["services"][0]["user_config"]["ip_filter"] = ["bad"]
    doc["services"][2]["vpc"] = "vpc-nope"
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    paths = [p for p, _ in info.value.errors]
    assert "services[0].user_config.ip_filter[0]" in paths and "services[2].vpc" in paths, paths


def test_a_structurally_broken_service_is_not_reported_again_as_an_unknown_reference() -> None:
    doc = good()
    broken = doc["services"][0]["name"]
    doc["services"][0]["user_config"]["ip_filter"] = ["bad"]
    doc["integrations"] = [{"type": "prometheus", "source": broken}]
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    lines = info.value.lines()
    assert len(lines) == 1 and lines[0].startswith("services[0].user_config.ip_filter[0]:"), lines


def test_cross_field_errors_keep_their_document_index_when_an_earlier_item_is_broken() -> None:
    doc = good()
    doc["services"][0]["type"] = 7  # structurally wrong: not a string
    doc["services"][1]["socks5_proxy"] = "10.0.0.1:1080"  # only ece services have one
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    paths = [p for p, _ in info.value.errors]
    assert paths == ["services[0].type", "services[1].socks5_proxy"], paths


def test_description_of_1024_characters_is_accepted() -> None:
    doc = good()
    doc["services"][0]["user_config"]["ip_filter"] = [
        {"network": "10.0.0.0/8", "description": "é" * 1024}]
    parse_spec(doc)


def test_ip_filter_of_8000_entries_is_accepted() -> None:
    doc = good()
    doc["services"][0]["user_config"]["ip_filter"] = [
        f"10.{i // 256}.{i % 256}.0/24" for i in range(8000)]
    parse_spec(doc)


# through the real console script, in a subprocess


def test_every_example_is_valid() -> None:
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert len(examples) >= 5, examples
    for example in examples:
        result = CliRunner().invoke(app, ["validate", str(example)])
        assert result.exit_code == 0, f"{example.name}: exit {result.exit_code}: " \
                                      f"{result.output[-1500:]}"


def test_real_cli_validate_accepts_an_example() -> None:
    result = run_nodewall("validate", str(EXAMPLES / "pg-public.yaml"), real=True)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-1500:]}"
    assert "valid (2 services, 4 nodes)" in result.stdout, result.stdout


def test_real_cli_validate_exits_2_with_every_error_and_its_path(tmp_path: Path) -> None:
    doc = good()
    doc["services"][0]["user_config"]["ip_filter"] = ["10.0.0.0/8", "10.0.0.300/24"]
    doc["project"]["base_port"] = 31000
    path = tmp_path / "spec.yaml"
    import yaml

    path.write_text(yaml.safe_dump(doc))
    result = run_nodewall("validate", str(path), real=True)
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr}"
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert sorted(errors) == sorted([
        "error: services[0].user_config.ip_filter[1]: '10.0.0.300/24' is not a valid CIDR",
        "error: project.base_port: Input should be less than or equal to 30000",
    ]), result.stderr
    assert result.stdout == "", f"nothing but errors expected, stdout: {result.stdout!r}"


@pytest.mark.parametrize("case", [r for r in REJECTIONS if r[0] in (
    "ip_filter-bad-cidr", "address-used-twice-across-services", "ece-outside-a-vpc")],
                         ids=lambda r: r[0])
def test_real_cli_rejections_exit_2(
    tmp_path: Path, case: tuple[str, Callable[[Doc], Doc], str, str]
) -> None:
    _, mutate, path, _ = case
    result = run_nodewall("validate", str(write(tmp_path, mutate(good()))), real=True)
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr}"
    assert f"error: {path}: " in result.stderr, result.stderr


def test_real_cli_plan_and_explain_refuse_an_invalid_spec_with_exit_2(tmp_path: Path) -> None:
    doc = setter("services.0.ports", {"pg": 15000, "pgbouncer": 15000})(good())
    path = write(tmp_path, doc)
    plan = run_nodewall("plan", str(path), "--node", "pg-prod-1", real=True)
    explain = run_nodewall("explain", str(path), "--node", "pg-prod-1", "--src", "192.0.2.1",
                           "--proto", "tcp", "--dport", "15000", real=True)
    for name, result in (("plan", plan), ("explain", explain)):
        assert result.returncode == 2, f"{name}: exit {result.returncode}: {result.stderr}"
        assert "error: services[0].ports.pg: " in result.stderr, f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr, f"{name}: {result.stderr}"


def test_real_cli_plan_with_base_port_30000_and_two_ports_exits_2(tmp_path: Path) -> None:
    doc = setter("project.base_port", 30000)(good())
    result = run_nodewall("plan", str(write(tmp_path, doc)), "--format", "json", real=True)
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr[-1500:]}"
    assert "error: project.base_port: " in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("content, suffix", [("platform: [unclosed", ".yaml"),
                                             ("{not json", ".json"), ("- a list", ".yaml"),
                                             ("", ".yaml")])
def test_unparseable_spec_exits_2(tmp_path: Path, content: str, suffix: str) -> None:
    path = tmp_path / f"spec{suffix}"
    path.write_text(content)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, f"{content!r}: exit {result.exit_code}: {result.output}"
    assert result.output.startswith("error: "), result.output


def test_missing_spec_file_exits_2(tmp_path: Path) -> None:
    result = run_nodewall("validate", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2, result.stderr
    assert "cannot read" in result.stderr, result.stderr


def test_nothing_is_mutated_in_the_good_document() -> None:
    doc = good()
    before = copy.deepcopy(doc)
    parse_spec(doc)
    assert doc == before, "parse_spec changed its input"
