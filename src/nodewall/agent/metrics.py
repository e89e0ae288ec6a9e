"""The agent's Prometheus metrics, served on `--metrics-address` (prometheus-client).

- `nodewall_agent_policy_info{version, backend, source}`: what the kernel holds (source:
  server, cache, fail-safe, spec).
- `nodewall_agent_change_to_kernel_seconds`: from the server's change (`changed_at`) to the
  verified kernel, per applied version.
- `nodewall_agent_apply_seconds{kind}`: duration of applies that changed the kernel, kind
  `full` or `in-place` (set elements only).
- `nodewall_agent_apply_failures_total`, `nodewall_agent_drift_repairs_total`.
- `nodewall_agent_last_contact_timestamp_seconds`: the last successful exchange with the server.
- `nodewall_agent_rejected_packets_total{protocol, port}`: packets the final reject rule
  refused, from the counters the backend keeps in the ruleset, by destination port for the
  node's own ports and `("any", "other")` for the rest (bounded cardinality). Refreshed by the
  kernel thread on its verify timer; a scrape never touches the kernel.
The process collectors of prometheus-client (RSS, CPU seconds, open fds) come along.

Metrics are updated from the agent's threads; prometheus-client's objects are thread-safe. It
must never label a metric with customer text or a token.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, make_wsgi_app
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

POLICY = Info("nodewall_agent_policy", "The policy the kernel holds, as last verified")
CHANGE_TO_KERNEL = Histogram(
    "nodewall_agent_change_to_kernel_seconds",
    "Seconds from the control-plane change to this node's verified kernel",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
APPLY_SECONDS = Histogram(
    "nodewall_agent_apply_seconds", "Duration of applies that changed the kernel", ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
APPLY_FAILURES = Counter("nodewall_agent_apply_failures",
                         "Applies the kernel refused or that did not verify")
DRIFT_REPAIRS = Counter("nodewall_agent_drift_repairs",
                        "Times the kernel was found to differ from the policy and re-applied")
LAST_CONTACT = Gauge("nodewall_agent_last_contact_timestamp_seconds",
                     "Unix time of the last successful exchange with the control plane")
for kind in ("full", "in-place"):
    APPLY_SECONDS.labels(kind)


class RejectedPackets(Collector):
    """`nodewall_agent_rejected_packets_total` from the last snapshot the kernel thread read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def update(self, counts: dict[tuple[str, str], int]) -> None:
        with self._lock:
            self._counts = dict(counts)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "nodewall_agent_rejected_packets",
            "Packets refused by the final reject rule, by destination protocol and port "
            "(port 'other': every port the node does not serve)", labels=["protocol", "port"])
        with self._lock:
            counts = sorted(self._counts.items())
        for (protocol, port), value in counts:
            family.add_metric([protocol, port], value)
        yield family


REJECTED = RejectedPackets()
REGISTRY.register(REJECTED)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # scrapes are not events


def serve(address: tuple[str, int]) -> None:
    """Serve /metrics on address from a daemon thread; OSError if it cannot listen. (Not
    `start_http_server`: its loop wakes twice a second to look for a shutdown; this one sleeps
    until a scrape comes.)"""
    host, port = address
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    httpd = make_server(host, port, make_wsgi_app(REGISTRY), Server, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 3600},
                     name="nodewall-metrics", daemon=True).start()
