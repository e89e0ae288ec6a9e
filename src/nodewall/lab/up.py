"""`nodewall lab up`: the namespaces, the control plane over TLS, the platform made through the
API, real PostgreSQL servers, the SOCKS5 proxy, stand-in listeners and one agent per node; then
a wait, with a progress display, until every node's agent reports the desired version and its
kernel holds it.

Every step is recorded in the lab's state before the next one, so a failure or Ctrl-C at any
point leaves a record `lab down` can clean up from.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from nodewall.lab import processes, scenario
from nodewall.lab.api import LabApi
from nodewall.lab.converge import desired, wait_kernels
from nodewall.lab.netns import LabError, Segment
from nodewall.lab.scenario import HOSTS, Host
from nodewall.lab.state import LabState
from nodewall.policy.model import NodePolicy

AGENT_VERIFY_INTERVAL = "5"


def connect(state: LabState) -> LabApi:
    token = state.admin_token_file.read_text().strip()
    return LabApi(f"{state.prefix}-ctl", state.server_url, token, str(state.ca_file))


def ns_of(state: LabState) -> Callable[[str], str]:
    """host name -> the name of its namespace in this lab"""
    return lambda host: f"{state.prefix}-{host}"


def preflight() -> None:
    """Refuse early, with the reason, when this machine cannot run the lab."""
    import os

    if os.geteuid() != 0:
        raise LabError("nodewall lab needs root: it creates network namespaces and applies "
                       "firewalls inside them (run it with sudo)")
    missing = [tool for tool in ("ip", "nft", "iptables", "ipset", "openssl", "pg_isready",
                                 "microsocks", "runuser", "setpriv") if shutil.which(tool) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)} (bash scripts/setup.sh installs "
                       "them)")
    processes.pg_bindir()


def new_state(workdir: Path, backend: str) -> LabState:
    existing = LabState.load(workdir)
    if existing is not None:
        raise LabError(f"a lab is recorded in {workdir} (prefix {existing.prefix}); run "
                       "`nodewall lab down` first")
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    state = LabState(str(workdir), f"nwlab{secrets.token_hex(2)}", backend)
    state.run_dir.mkdir(exist_ok=True)
    state.save()
    return state


def add_host(state: LabState, segment: Segment, host: Host) -> None:
    state.namespaces.append(segment.ns(host.name))
    state.save()
    segment.add_host(host.name, host.addresses)


def build_network(state: LabState) -> Segment:
    segment = Segment(state.prefix)
    state.namespaces.append(segment.switch)
    state.save()
    segment.open()
    for host in HOSTS.values():
        add_host(state, segment, host)
    return segment


def start_server(state: LabState) -> LabApi:
    from nodewall.server.auth import create_token
    from nodewall.store import open_store

    address = HOSTS["ctl"].v4
    processes.make_certificate(state, address)
    database = f"sqlite:///{state.run_dir / 'server.db'}"
    store = open_store(database)
    try:
        write_secret(state.admin_token_file, create_token(store, node=None))
        for service in scenario.SERVICES:
            for node in (*service.nodes, *([scenario.REPLACEMENT.name]
                                           if service.name == "kafka" else [])):
                write_secret(state.run_dir / f"{node}.token", create_token(store, node=node))
    finally:
        store.dispose()
    state.server_url = f"https://{address}:{scenario.SERVER_PORT}"
    processes.start(state, "server", f"{state.prefix}-ctl", processes.nodewall_cmd(
        "server", "--database", database, "--listen", f"{address}:{scenario.SERVER_PORT}",
        "--tls-cert", str(state.ca_file), "--tls-key", str(state.run_dir / "server.key")))
    api = connect(state)
    deadline = time.monotonic() + 30
    while not api.healthy():
        if not processes.alive(state.pids["server"]):
            raise LabError("the control plane exited at start; see "
                           f"{state.workdir}/logs/server.log")
        if time.monotonic() > deadline:
            raise LabError("the control plane did not answer within 30 s")
        time.sleep(0.05)
    return api


def write_secret(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text + "\n")


def create_platform(state: LabState, api: LabApi) -> None:
    """The platform, project, VPC, services, nodes and integrations, through the API."""
    api.call("PUT", "/v1/platform", {"management_networks": scenario.MANAGEMENT})
    api.call("POST", "/v1/project", {"project": scenario.PROJECT,
                                     "base_port": scenario.BASE_PORT})
    vpc = api.call("POST", f"/v1/project/{scenario.PROJECT}/vpcs", {
        "cloud_name": scenario.VPC_CLOUD, "network_cidr": scenario.VPC_NETWORK,
        "peer_cidrs": scenario.VPC_PEERS})["project_vpc_id"]
    for service in scenario.SERVICES:
        body = {k: v for k, v in service.body.items() if k != "vpc"}
        if service.body.get("vpc"):
            body["project_vpc_id"] = vpc
        api.call("POST", f"/v1/project/{scenario.PROJECT}/service",
                 {"service_name": service.name, "service_type": service.type, **body})
        for node in service.nodes:
            add_node(api, service.name, node)
        state.nodes[service.name] = list(service.nodes)
    for integration in scenario.INTEGRATIONS:
        api.call("POST", f"/v1/project/{scenario.PROJECT}/integration", integration)
    state.save()


def add_node(api: LabApi, service: str, node: str) -> None:
    api.call("PUT", f"/v1/project/{scenario.PROJECT}/service/{service}/node/{node}",
             {"addresses": list(scenario.host(node).addresses)})


def start_node(state: LabState, service: str, node: str, policy: NodePolicy) -> None:
    """The node's servers, then its agent."""
    start_servers(state, service, node, policy)
    start_agent(state, node)


def start_servers(state: LabState, service: str, node: str, policy: NodePolicy) -> None:
    """Real postgres on a pg node's pg port, stand-in listeners on the rest of its TCP ports."""
    ns = f"{state.prefix}-{node}"
    tcp = [c for c in policy.components if c.protocol == "tcp"]
    state.ports[service] = {c.name if c.route != "web" else f"{c.name} web": c.port for c in tcp}
    real = {c.port for c in tcp if c.name == "pg"} if service == "pg" else set()
    for port in real:
        processes.start_postgres(state, node, ns, port)
    stand_in = sorted({c.port for c in tcp} - real)
    processes.start(state, f"listener-{node}", ns, processes.python_module(
        "nodewall.lab.listener", node, *map(str, stand_in)))
    for port in real:
        processes.wait_postgres(ns, scenario.host(node).v4, port)


def start_agent(state: LabState, node: str) -> None:
    processes.start(state, f"agent-{node}", f"{state.prefix}-{node}", processes.nodewall_cmd(
        "agent", "--server", state.server_url, "--node", node, "--backend", state.backend,
        "--token-file", str(state.run_dir / f"{node}.token"), "--ca-file", str(state.ca_file),
        "--state-dir", str(state.run_dir / f"agent-{node}"),
        "--verify-interval", AGENT_VERIFY_INTERVAL, "--metrics-address", "127.0.0.1:9274"))


def start_outside(state: LabState) -> None:
    """The SOCKS5 proxy (microsocks) and the internet host's web server."""
    proxy = HOSTS["proxy"].v4
    processes.start(state, "proxy", f"{state.prefix}-proxy",
                    ["microsocks", "-i", proxy, "-p", str(scenario.PROXY_PORT)])
    processes.start(state, "listener-internet", f"{state.prefix}-internet",
                    processes.python_module("nodewall.lab.listener", "internet",
                                            str(scenario.OUTSIDE_PORT)))


def all_nodes(state: LabState) -> list[str]:
    return [n for nodes in state.nodes.values() for n in nodes]


def wait_fleet(state: LabState, api: LabApi, since: float,
               progress: Callable[[str], None] | None = None,
               timeout: float = 90) -> dict[str, str]:
    """Until every agent reports its desired version and every kernel holds it; the versions."""
    nodes = all_nodes(state)
    want = {n: p.version for n, p in desired(api, nodes).items()}
    deadline = time.monotonic() + timeout
    while True:
        statuses = api.call("GET", f"/v1/project/{scenario.PROJECT}/nodes/status")["nodes"]
        reported = sum(1 for s in statuses
                       if s["node"] in want and s["applied_version"] == want[s["node"]])
        if progress is not None:
            progress(f"agents reporting the desired version: {reported}/{len(want)}")
        if reported == len(want):
            break
        if time.monotonic() > deadline:
            late = [s["node"] for s in statuses if s["applied_version"] != want.get(s["node"])]
            raise LabError(f"agents not reporting their version within {timeout} s: "
                           f"{', '.join(late)} (logs in {state.workdir}/logs)")
        time.sleep(0.1)
    wait_kernels(want, ns_of(state), state.backend, since, timeout=30)
    for node, version in want.items():
        state.saw_version(node, version)
    state.save()
    return want


def up(workdir: Path, backend: str, progress: Callable[[str], None] | None = None) -> LabState:
    """Bring the whole lab up; the state (saved). Raises LabError, leaving the record."""
    preflight()
    started = time.monotonic()
    state = new_state(workdir, backend)
    def say(text: str) -> None:
        if progress is not None:
            progress(text)

    say(f"namespaces (prefix {state.prefix})")
    build_network(state)
    say("control plane (nodewall server, TLS, SQLite)")
    api = start_server(state)
    try:
        say("platform, project, VPC, services, nodes, integrations (API)")
        create_platform(state, api)
        start_outside(state)
        policies = desired(api, all_nodes(state))
        for service, nodes in state.nodes.items():
            for node in nodes:
                say(f"{node}: servers and agent")
                start_node(state, service, node, policies[node])
        wait_fleet(state, api, started, say)
    finally:
        api.close()
    state.up_seconds = round(time.monotonic() - started, 2)
    state.save()
    return state
