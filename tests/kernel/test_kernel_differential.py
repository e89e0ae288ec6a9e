"""Differential test: for generated specs and packets, the kernel's outcome of each packet
equals the reference evaluator's verdict (accept: open, reject: refused, drop: timeout).

Each example applies one generated policy (standard, byoc and ece environments, AWS or Azure,
in a VPC or not) and checks:
- ingress TCP and UDP from many sources to the node's ports;
- one ingress ICMP(v6) echo request. The policy rate-limits them (10/s, burst 5, one bucket
  per family) and the evaluator assumes the limit is never reached, so pings wait for a model
  of that bucket that is never fuller than the kernel's (`_pace`): the limit cannot be hit,
  and the pings (not the rest) bound the run time of the nftables half;
- ingress ESP (IP protocol 50) from every possible cluster peer, Azure's address and drawn
  sources; the node's stack, holding no IPsec state, answers what the firewall lets in with a
  protocol-unreachable;
- egress: new TCP and UDP connections from the node to hosts outside it (the metadata address,
  Azure's platform address, the VPC, its peers, cluster peers, the SOCKS5 proxy, the internet),
  each from a socket owned by uid 0 or by uid 65534 (`netns.socket_owner`: the test thread's
  fsuid while it creates the socket), so the metadata service's uid-0 rule and ece's egress
  restrictions are both exercised; the edges of the narrow rules are probed in every example.
Not covered: egress ICMP and ESP, conntrack states other than new, the loopback interface.

The number of (spec, packet) pairs checked is printed at the end of the run; a run that never
exercised the egress restrictions of ece, the metadata uid rule or ESP both ways fails.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import PAIRS, Node
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from netns import HOSTS, OUTCOME, Listeners, Topology, ping, probe, probe_raw

from nodewall.errors import SpecError
from nodewall.policy.evaluator import Packet, Verdict, evaluate
from nodewall.policy.model import NodePolicy

V4_NETS = ["0.0.0.0/0", "10.62.0.0/16", "10.62.3.0/24", "10.63.0.5/32", "172.16.5.0/24",
           "10.64.0.0/30", "10.20.0.0/24", "192.168.77.0/25"]
V6_NETS = ["::/0", "2001:db8:62::/48", "2001:db8:62:3::/64", "2001:db8:63::5/128",
           "2001:db8:64::/120"]
MGMT = ["10.61.0.0/28", "10.61.1.0/24", "2001:db8:61::/64"]
AZURE = "168.63.129.16"
SOURCES = ["10.61.0.3", "10.61.1.200", "10.62.3.9", "10.62.200.1", "172.16.5.5", "10.63.0.5",
           "10.63.0.6", "10.64.0.2", "10.64.0.3", "192.168.77.7", "192.168.77.200", "10.66.0.1",
           "10.20.0.50", AZURE, "2001:db8:61::3", "2001:db8:62:3::9", "2001:db8:62:ff::1",
           "2001:db8:63::5", "2001:db8:64::2", "2001:db8:66::1"]
OTHER_NODES = [("svc-2", ["10.64.0.2"]), ("svc-3", ["10.64.0.3", "2001:db8:64::2"])]
TYPES = ["pg", "mysql", "kafka", "valkey", "clickhouse", "opensearch", "grafana"]
PEER_CIDRS = ["10.62.0.0/16", "172.16.5.0/24", "2001:db8:62::/48"]
PROXIES = ["192.0.2.99:1080", "10.66.0.1:3128", "[2001:db8:66::1]:1080"]
#: Egress destinations: the metadata address lives in the "metadata" namespace, every other
#: one in "internet" (the on-link default route reaches either).
METADATA = HOSTS["metadata"][0]
EGRESS_DESTS = [METADATA, AZURE, "10.20.0.50", "10.62.3.9", "172.16.5.5", "10.64.0.2",
                "10.64.0.3", HOSTS["internet"][0], "10.66.0.1", "2001:db8:62:3::9",
                "2001:db8:64::2", "2001:db8:66::1", HOSTS["internet"][1]]
#: DNS, DHCP, credentials, NTP, HTTPS, the proxy ports, a service port.
EGRESS_PORTS = [53, 67, 80, 123, 443, 1080, 3128, 5432]
EGRESS_UIDS = [0, 65534]
#: Egress probes at the edges of the narrow rules (metadata and Azure services), sent in every
#: example for each uid besides the random ones, with the spec's SOCKS5 proxy added
#: (`_egress_targets`): generation alone hits such narrow rules too rarely to be relied on.
EGRESS_TARGETS = [(METADATA, "udp", 53), (METADATA, "tcp", 53), (METADATA, "udp", 123),
                  (METADATA, "tcp", 123), (METADATA, "tcp", 80), (AZURE, "udp", 67),
                  (AZURE, "tcp", 67), (AZURE, "udp", 53), (AZURE, "tcp", 53),
                  (AZURE, "tcp", 80)]
EXAMPLES, PACKETS, PINGS, ESPS, EGRESS = 150, 16, 1, 3, 8
#: The ping limit's bucket as `_pace` models it, below the kernel's (10/s, burst 5): the
#: margin covers clock granularity (xt_limit counts jiffies) and the time a ping travels.
PING_RATE, PING_BURST = 9.0, 4.0
#: (kind, "ece" or "other", action) that a run must have checked at least once.
REQUIRED = {("egress", "ece", "accept"), ("egress", "ece", "reject"),
            ("egress", "other", "accept"), ("egress", "other", "reject"),
            ("esp", "any", "accept"), ("esp", "any", "reject"), ("ping", "any", "accept")}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    stype = draw(st.sampled_from(TYPES))
    cloud = draw(st.sampled_from(["aws-eu-west-1", "azure-westeurope"]))
    environment = draw(st.sampled_from(["standard", "byoc", "ece"]))
    user_config: dict[str, Any] = {}
    ip_filter = draw(st.none() | st.lists(st.sampled_from(V4_NETS + V6_NETS), max_size=5,
                                          unique=True))
    if ip_filter is not None:
        user_config["ip_filter"] = ip_filter
    if stype in ("pg", "kafka", "valkey", "clickhouse"):
        user_config["enable_ipv6"] = draw(st.booleans())
    service: dict[str, Any] = {
        "name": "svc", "type": stype, "cloud": cloud, "user_config": user_config,
        "environment": environment,
        "nodes": [{"name": "svc-1", "addresses": list(HOSTS["node"])},
                  *({"name": n, "addresses": a} for n, a in OTHER_NODES if draw(st.booleans()))],
    }
    spec: dict[str, Any] = {
        "platform": {"management_networks": draw(st.lists(st.sampled_from(MGMT), min_size=1,
                                                          max_size=3, unique=True))},
        "project": {"name": "diff", "base_port": 14000},
        "services": [service],
    }
    ece = environment == "ece"
    if ece or draw(st.booleans()):  # an ece service is always in a VPC
        spec["vpcs"] = [{"id": "vpc-a", "cloud": cloud, "network_cidr": "10.20.0.0/24",
                         "peer_cidrs": draw(st.lists(st.sampled_from(PEER_CIDRS), unique=True))}]
        service["vpc"] = "vpc-a"
        if ece:
            service["socks5_proxy"] = draw(st.sampled_from(PROXIES))
        elif draw(st.booleans()):
            user_config["public_access"] = {stype: True}
    return spec


@pytest.fixture(scope="module")
def destinations(topology: Topology) -> Iterator[None]:
    """Echo servers behind every egress destination (TCP on the wildcard, UDP per address)."""
    hosted: dict[str, list[str]] = {"metadata": [], "internet": []}
    for dst in EGRESS_DESTS:
        hosted["metadata" if dst == METADATA else "internet"].append(dst)
    servers = []
    try:
        for role, addresses in hosted.items():
            for address in addresses:
                if address not in HOSTS[role]:  # the metadata host has its one address
                    _address(topology, address)
            servers.append(Listeners(topology.ns(role)))
            servers[-1].ensure(tcp=set(EGRESS_PORTS))
            servers[-1].ensure_udp_at(set(addresses), set(EGRESS_PORTS))
        yield
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def seen() -> Iterator[Counter[tuple[str, str, str]]]:
    """What one run checked, by (kind, environment, evaluator action); checked at the end."""
    counts: Counter[tuple[str, str, str]] = Counter()
    yield counts
    if not counts["mismatch", "", ""]:
        missing = sorted(REQUIRED - set(counts))
        assert not missing, f"the generated examples never checked {missing}: widen specs()"


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=specs(), data=st.data())
def test_kernel_agrees_with_evaluator(node: Node, destinations: None,
                                      seen: Counter[tuple[str, str, str]], spec: dict[str, Any],
                                      data: st.DataObject) -> None:
    from kspecs import policy

    try:
        pol = policy(spec, "svc-1")
    except SpecError:
        reject()
    ports = sorted({c.port for c in pol.components} | {22, 30287, 500, 4500, 5432})
    node.listeners.ensure(tcp=set(ports), udp=set(ports))
    node.apply(pol)
    packets = data.draw(st.lists(st.tuples(st.sampled_from(SOURCES), st.sampled_from(["tcp",
                                           "udp"]), st.sampled_from(ports)),
                                 min_size=PACKETS, max_size=PACKETS), label="packets")
    pings = data.draw(st.lists(st.sampled_from([a for a in SOURCES if ":" not in a])
                               | st.sampled_from([a for a in SOURCES if ":" in a]),
                               min_size=1, max_size=PINGS), label="pings")
    # ESP from every possible cluster peer (accepted only from those in the spec) and Azure's
    # address (accepted on Azure), then from drawn sources
    esps = [*(a for _, addresses in OTHER_NODES for a in addresses), AZURE,
            *data.draw(st.lists(st.sampled_from(SOURCES), min_size=ESPS, max_size=ESPS),
                       label="esp")]
    egress = [*((target, uid) for target in _egress_targets(spec) for uid in EGRESS_UIDS),
              *data.draw(st.lists(st.tuples(st.tuples(st.sampled_from(EGRESS_DESTS),
                                                      st.sampled_from(["tcp", "udp"]),
                                                      st.sampled_from(EGRESS_PORTS)),
                                            st.sampled_from(EGRESS_UIDS)),
                                  min_size=EGRESS, max_size=EGRESS), label="egress")]
    check = _Checker(pol, seen)
    internet = node.topo.ns("internet")
    for src, proto, port in packets:
        dst = _dst(src)
        _address(node.topo, src)
        check("tcp/udp", f"{src} -> {proto}/{port}", Packet(src, dst, proto, port),  # type: ignore[arg-type]
              probe(internet, src, dst, proto, port))
    for src in pings:
        dst = _dst(src)
        _address(node.topo, src)
        _pace(4 if ":" not in src else 6)
        check("ping", f"{src} -> echo-request",
              Packet(src, dst, "icmp", icmp_type="echo-request"),
              ping(internet, src, dst, refused=True))
    for src in esps:
        dst = _dst(src)
        _address(node.topo, src)
        check("esp", f"{src} -> esp", Packet(src, dst, "esp"), probe_raw(internet, src, dst))
    for (dst, proto, port), uid in egress:
        src = _dst(dst)
        check("egress", f"uid {uid}: {src} -> {dst} {proto}/{port}",
              Packet(src, dst, proto, port, direction="out", uid=uid),  # type: ignore[arg-type]
              probe(node.ns, src, dst, proto, port, uid=uid))
    PAIRS["checked"] += check.count
    PAIRS["mismatches"] += len(check.wrong)
    if check.wrong:
        seen["mismatch", "", ""] += 1
    assert not check.wrong, (f"kernel ({node.backend_name}) and evaluator disagree "
                             f"({pol.environment}, {pol.service_type}):\n"
                             + "\n".join(check.wrong))


class _Checker:
    """Compares one packet's kernel outcome with the evaluator's verdict; keeps the misses."""

    def __init__(self, pol: NodePolicy, seen: Counter[tuple[str, str, str]]) -> None:
        self.pol, self.seen = pol, seen
        self.count = 0
        self.wrong: list[str] = []

    def __call__(self, kind: str, what: str, packet: Packet, got: str) -> None:
        verdict: Verdict = evaluate(self.pol, packet)
        env = "any" if kind != "egress" else "ece" if self.pol.environment == "ece" else "other"
        self.seen[kind, env, verdict.action] += 1
        self.count += 1
        if got != OUTCOME[verdict.action]:
            self.wrong.append(f"{what}: evaluator {verdict.action} ({verdict.reason}), "
                              f"kernel {got}")


def _egress_targets(spec: dict[str, Any]) -> list[tuple[str, str, int]]:
    """`EGRESS_TARGETS`, and the spec's SOCKS5 proxy on its port and on the other proxy port."""
    proxy = spec["services"][0].get("socks5_proxy")
    if proxy is None:
        return EGRESS_TARGETS
    host, _, port = proxy.rpartition(":")
    other = {1080: 3128, 3128: 1080}[int(port)]
    return [*EGRESS_TARGETS, *((host.strip("[]"), proto, p) for proto in ("tcp", "udp")
                               for p in (int(port), other))]


def _dst(address: str) -> str:
    """The node's address of `address`'s family."""
    return HOSTS["node"][1 if ":" in address else 0]


_state: dict[str, Any] = {}


def _address(topology: Topology, address: str) -> None:
    """Give the internet host `address`, once per run (`add_address` twice is an error)."""
    added: set[str] = _state.setdefault(f"addresses-{topology.prefix}", set())
    if address not in added:
        topology.add_address("internet", address)
        added.add(address)


def _pace(family: int) -> None:
    """Wait until the model of `family`'s ping bucket holds a token, and take it. The model
    starts full and refills slower and up to less than the kernel's, which starts full (each
    test applies new rules) and loses tokens only to these pings: it is never the emptier."""
    buckets: dict[int, tuple[float, float]] = _state.setdefault("ping-buckets", {})
    tokens, stamp = buckets.get(family, (PING_BURST, time.monotonic()))
    now = time.monotonic()
    tokens = min(PING_BURST, tokens + (now - stamp) * PING_RATE)
    if tokens < 1:
        time.sleep((1 - tokens) / PING_RATE)
        now, tokens = time.monotonic(), 1.0
    buckets[family] = (tokens - 1, now)
