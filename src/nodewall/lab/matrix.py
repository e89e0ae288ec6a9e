"""The reachability matrix: each client row x each (service, component, port) column, measured
by real connections to every node of the service and compared, node by node, with what the
node's policy says (`explain`'s evaluator over the policy the control plane serves), with the
deciding rule's reason. Plus the egress of the `ece` service: straight out (refused) and through
its SOCKS5 proxy (open), beside a standard node's.

A cell *agrees* when every node's measured outcome is the one its policy predicts; an accepted
PostgreSQL port must also be answered by the real server (`pg_isready`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from nodewall.lab import probe
from nodewall.lab.scenario import (
    CLIENT_ROWS,
    HOSTS,
    OUTSIDE_PORT,
    PROXY_PORT,
    host,
)
from nodewall.policy.evaluator import Packet, evaluate
from nodewall.policy.model import NodePolicy

EXPECTED = {"accept": probe.OPEN, "reject": probe.REFUSED, "drop": probe.TIMEOUT}


@dataclass(frozen=True)
class Column:
    service: str
    component: str
    port: int

    @property
    def title(self) -> str:
        return f"{self.service} {self.component} :{self.port}"


@dataclass
class Cell:
    row: str
    column: str
    outcome: str  # the measured outcome when all nodes agree, else "mixed"
    expected: str
    reason: str
    agrees: bool
    details: list[str] = field(default_factory=list)  # per node, when something disagrees

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_name(client: str, family: int) -> str:
    return f"{client} v6" if family == 6 else client


def columns(policies: dict[str, dict[str, NodePolicy]]) -> list[Column]:
    """The TCP ports of each service's nodes (from its first node's policy), in policy order."""
    out: list[Column] = []
    for service, by_node in policies.items():
        first = by_node[sorted(by_node)[0]]
        seen: set[int] = set()
        for c in first.components:
            if c.protocol == "tcp" and c.port not in seen:
                seen.add(c.port)
                label = c.name if c.route != "web" else f"{c.name} web"
                out.append(Column(service, label, c.port))
    return out


def _measure(row: tuple[str, int], column: Column, policies: dict[str, NodePolicy],
             pg_ports: set[tuple[str, int]], ns: str) -> Cell:
    client, family = row
    source = host(client).v4 if family == 4 else host(client).v6
    assert source is not None
    outcomes, expectations, reasons, details = [], [], [], []
    for node, policy in sorted(policies.items()):
        if node == client:
            continue
        target = host(node)
        dst = target.v4 if family == 4 else target.v6
        if dst is None:
            continue
        verdict = evaluate(policy, Packet(source, dst, "tcp", column.port))
        expected = EXPECTED[verdict.action]
        measured = probe.tcp(ns, source, dst, column.port)
        if measured == probe.OPEN and (column.service, column.port) in pg_ports \
                and not probe.pg_isready(ns, dst, column.port):
            measured = "open, but postgres did not answer"
        outcomes.append(measured)
        expectations.append(expected)
        reasons.append(verdict.reason)
        if measured != expected:
            details.append(f"{node}: measured {measured}, policy says {expected} "
                           f"({verdict.reason})")
    name = row_name(client, family)
    if not outcomes:
        return Cell(name, column.title, "-", "-", "", True)
    agrees = not details
    outcome = outcomes[0] if len(set(outcomes)) == 1 else "mixed"
    expected = expectations[0] if len(set(expectations)) == 1 else "mixed"
    return Cell(name, column.title, outcome, expected, reasons[0], agrees, details)


def measure(policies: dict[str, dict[str, NodePolicy]], ns_of: Callable[[str], str],
            pg_ports: set[tuple[str, int]]) -> list[Cell]:
    """Every cell of the matrix, measured in parallel."""
    cols = columns(policies)
    rows = [r for r in CLIENT_ROWS if not (r[1] == 6 and host(r[0]).v6 is None)]

    def one(job: tuple[tuple[str, int], Column]) -> Cell:
        row, column = job
        return _measure(row, column, policies[column.service], pg_ports, ns_of(row[0]))

    jobs = [(r, c) for r in rows for c in cols]
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, jobs))


def egress(policies: dict[str, dict[str, NodePolicy]], ns_of: Callable[[str], str]
           ) -> list[Cell]:
    """From one node of each service: a new connection to the internet host's web server, to
    the SOCKS5 proxy, and through the proxy to the same server."""
    outside, proxy = HOSTS["internet"].v4, HOSTS["proxy"].v4
    cells = []
    for service, by_node in policies.items():
        node = sorted(by_node)[0]
        policy, src, ns = by_node[node], host(node).v4, ns_of(node)
        direct = evaluate(policy, Packet(src, outside, "tcp", OUTSIDE_PORT, direction="out"))
        to_proxy = evaluate(policy, Packet(src, proxy, "tcp", PROXY_PORT, direction="out"))
        for column, measured, verdict in (
            (f"internet :{OUTSIDE_PORT}", probe.tcp(ns, src, outside, OUTSIDE_PORT), direct),
            (f"SOCKS5 proxy :{PROXY_PORT}", probe.tcp(ns, src, proxy, PROXY_PORT), to_proxy),
            ("internet via the proxy", probe.through_socks5(ns, src, (proxy, PROXY_PORT),
                                                            (outside, OUTSIDE_PORT)), to_proxy),
        ):
            expected = EXPECTED[verdict.action]
            agrees = measured == expected
            cells.append(Cell(f"{node} ({service})", column, measured, expected, verdict.reason,
                              agrees, [] if agrees else [
                                  f"{node}: measured {measured}, policy says {expected}"]))
    return cells
