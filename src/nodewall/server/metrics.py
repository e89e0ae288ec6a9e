"""Prometheus metrics of the control plane, served at /metrics. Counters and timings only:
never a label holding customer text, a token, or an unbounded value (no node names)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("nodewall_api_requests_total", "API requests answered",
                   ["method", "route", "status"])
COMPILE_SECONDS = Histogram("nodewall_compile_seconds",
                            "Time to recompile the nodes one change affects")
NODES_COMPILED = Counter("nodewall_nodes_compiled_total", "Node policies compiled")
POLICY_CHANGES = Counter("nodewall_policy_changes_total", "Stored node policies rewritten")
WAITERS = Gauge("nodewall_policy_waiters", "Long-polls currently held")
WAKEUPS = Counter("nodewall_policy_wakeups_total", "Long-polls answered by a change")
NOTIFY_RECONNECTS = Counter("nodewall_listen_reconnects_total",
                            "Times the PostgreSQL LISTEN connection was (re)opened")
CHANGES = Counter("nodewall_changes_total", "State changes accepted (applied) or previewed",
                  ["outcome"])
CHANGES_REFUSED = Counter("nodewall_changes_refused_total",
                          "State-changing requests refused (never stored in the audit trail)",
                          ["method", "route", "status"])
