"""Agent benchmark: real `nodewall agent` processes, each in its own network namespace, talking
to a real `nodewall server` (SQLite) in another, over a bridge; nothing leaves the namespaces.

1. Change to kernel: a pg service of `--agents` nodes, one agent per node; `--changes` ip_filter
   changes through the API, one after another; for each, the time from the API's answer to the
   last node's verified kernel (the agent's `applied` log line, written right after the backend
   read the kernel back), p50/p99/max.
2. One entry on a big service: a service with `--entries` ip_filter entries minus one, one
   agent; the last entry added (and removed) through the API, `--changes` times: time from the
   API's answer to the node's verified kernel holding it.
3. Footprint: RSS and CPU of an agent idle with a small policy, and with an `--entries`-entry,
   `--peers`-peer policy applied (the node of a service of peers + 1 nodes), each over
   `--idle` seconds (CPU seconds, wake-ups as context switches of all its threads); beside a bare
   interpreter sleeping, and firewalld (in its own namespace, on a private D-Bus) if installed.

    .venv/bin/python bench/agent.py                  # nftables, the defaults below
    .venv/bin/python bench/agent.py --backend iptables --agents 20 --changes 20

Needs root (namespaces). Every namespace and process it makes is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for sub in ("tests/kernel", "tests/agent", "bench"):
    sys.path.insert(0, str(ROOT / sub))

from lab import Agent, ControlServer, ok  # noqa: E402
from netns import Topology, sh  # noqa: E402

from specgen import ip_filter_entries  # noqa: E402

MANAGEMENT = ["198.51.100.0/28", "2001:db8:ff::/64"]
CTL = ("10.20.0.2", "2001:db8:20::2")


def hosts(agents: int) -> dict[str, tuple[str, str]]:
    made = {"ctl": CTL}
    for i in range(1, agents + 1):
        made[f"n{i:02d}"] = (f"10.20.0.{100 + i}", f"2001:db8:20::{100 + i:x}")
    return made


def stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.topo = Topology(hosts=hosts(args.agents))
        self.server: ControlServer | None = None
        self.agents: list[Agent] = []

    @contextlib.contextmanager
    def running(self) -> Iterator[Bench]:
        try:
            self.topo.open()
            self.server = ControlServer(self.topo.ns("ctl"), CTL[0], self.workdir)
            self.server.start()
            yield self
        finally:
            for a in self.agents:
                with contextlib.suppress(Exception):
                    a.kill()
            if self.server is not None:
                self.server.stop()
            self.topo.close()

    def agent(self, role: str, node: str, *extra: str) -> Agent:
        assert self.server is not None
        token = self.workdir / f"token-{node}"
        token.write_text(self.server.token(node) + "\n")
        token.chmod(0o600)
        # iptables takes a machine-wide lock file; one per node, as on separate machines
        env = {"XTABLES_LOCKFILE": str(self.workdir / f"xtables-{role}.lock")} \
            if self.args.lock_per_node else None
        made = Agent(self.topo.ns(role), node, self.args.backend, self.workdir,
                     ["--server", self.server.url, "--token-file", str(token), *extra], env)
        self.agents.append(made)
        return made.start()

    def service(self, api: Any, name: str, ip_filter: list[Any]) -> None:
        ok(api.post("/v1/project/bench/service", json={
            "service_name": name, "service_type": "pg", "cloud_name": "aws-eu-west-1",
            "user_config": {"ip_filter": ip_filter}}))

    def node(self, api: Any, service: str, node: str, addresses: list[str]) -> None:
        ok(api.put(f"/v1/project/bench/service/{service}/node/{node}",
                   json={"addresses": addresses}))

    def version(self, api: Any, node: str) -> str:
        return str(ok(api.get(f"/v1/node/{node}/policy"))["version"])


def applied_at(agent: Agent, version: str, timeout: float = 30, after: int = 0) -> float:
    """When the agent logged `version` verified in its kernel (the first time from event
    index `after`: versions repeat when a change is undone)."""
    return stamp(agent.wait_event("applied", timeout=timeout, after=after,
                                  match=lambda e: e["version"] == version, every=0.002))


def fanout(bench: Bench, api: Any) -> dict[str, float]:
    """Part 1: the change-to-kernel latency over all agents."""
    bench.service(api, "pg", ["203.0.113.0/24"])
    roles = [r for r in bench.topo.hosts if r != "ctl"]
    agents = {}
    for role in roles:
        bench.node(api, "pg", f"pg-{role}", list(bench.topo.hosts[role]))
    for role in roles:
        agents[role] = bench.agent(role, f"pg-{role}")
    for role, agent in agents.items():
        want = bench.version(api, f"pg-{role}")
        applied_at(agent, want)
    latencies: list[float] = []
    per_node: list[float] = []
    received: list[float] = []  # API answer to the agent holding the answer
    applying: list[float] = []  # the backend's apply, as the agent timed it
    for i in range(bench.args.changes):
        ip_filter = ["203.0.113.0/24", f"192.0.2.{i * 8}/29"]
        seen = {role: len(agent.events()) for role, agent in agents.items()}
        ok(api.put("/v1/project/bench/service/pg", json={"user_config": {"ip_filter": ip_filter}}))
        answered = time.time()
        times = []
        for role, agent in agents.items():
            times.append(applied_at(agent, bench.version(api, f"pg-{role}"),
                                    after=seen[role]) - answered)
            got = next(e for e in agent.events()[seen[role]:] if e["event"] == "policy_received")
            received.append(stamp(got) - answered)
            done = next(e for e in agent.events()[seen[role]:] if e["event"] == "applied")
            applying.append(float(done["seconds"]))
        latencies.append(max(times))
        per_node += times
    print(f"fanout: last node p50 {statistics.median(latencies):.3f} s, p99 "
          f"{pct(latencies, 0.99):.3f} s, max {max(latencies):.3f} s; any node p50 "
          f"{statistics.median(per_node):.3f} s (policy received p50 "
          f"{statistics.median(received):.3f} s, max {max(received):.3f} s; backend apply p50 "
          f"{statistics.median(applying):.3f} s, max {max(applying):.3f} s)", flush=True)
    for agent in agents.values():
        agent.kill()
    ok(api.delete("/v1/project/bench/service/pg"))  # its addresses are the next parts' too
    return {"p50": statistics.median(latencies), "p99": pct(latencies, 0.99),
            "max": max(latencies), "node_p50": statistics.median(per_node)}


def one_entry(bench: Bench, api: Any) -> dict[str, float]:
    """Part 2: one entry added to (and removed from) a service of `--entries` entries."""
    entries = ip_filter_entries(bench.args.entries)
    base, extra = entries[:-1], entries[-1]
    bench.service(api, "wide", base)
    bench.node(api, "wide", "wide-1", list(bench.topo.hosts["n01"]))
    agent = bench.agent("n01", "wide-1")
    applied_at(agent, bench.version(api, "wide-1"), timeout=60)
    added: list[float] = []
    removed: list[float] = []
    answer: list[float] = []
    received: list[float] = []  # API answer to the decoded policy in the agent
    applying: list[float] = []  # the backend's apply
    decoding: list[float] = []  # the agent's check of the answer
    for i in range(bench.args.changes):
        ip_filter = [*base, extra] if i % 2 == 0 else base
        seen = len(agent.events())
        started = time.time()
        ok(api.put("/v1/project/bench/service/wide",
                   json={"user_config": {"ip_filter": ip_filter}}))
        answered = time.time()
        answer.append(answered - started)
        took = applied_at(agent, bench.version(api, "wide-1"), after=seen) - answered
        (added if i % 2 == 0 else removed).append(took)
        if i % 2 == 0:
            got = next(e for e in agent.events()[seen:] if e["event"] == "policy_received")
            received.append(stamp(got) - answered)
            decoding.append(float(got["decode_seconds"]))
            done = next(e for e in agent.events()[seen:] if e["event"] == "applied")
            applying.append(float(done["seconds"]))
    kinds = {e["kind"] for e in agent.events() if e["event"] == "applied"}
    print(f"one entry of {bench.args.entries}: added p50 {statistics.median(added) * 1000:.1f} ms "
          f"(max {max(added) * 1000:.1f}), removed p50 {statistics.median(removed) * 1000:.1f} ms;"
          f" API answer p50 {statistics.median(answer) * 1000:.0f} ms; kinds {sorted(kinds)}; "
          f"of an add: received and decoded p50 {statistics.median(received) * 1000:.1f} ms "
          f"(decoding {statistics.median(decoding) * 1000:.1f}), "
          f"backend apply p50 {statistics.median(applying) * 1000:.1f} ms", flush=True)
    agent.kill()
    ok(api.delete("/v1/project/bench/service/wide"))
    return {"added_p50": statistics.median(added), "added_max": max(added),
            "removed_p50": statistics.median(removed), "api_p50": statistics.median(answer)}


def proc_usage(pid: int) -> tuple[float, int, int, int]:
    """(CPU seconds, context switches of all threads, RSS kB, peak RSS kB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return cpu, switches, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def idle(pid: int, seconds: float) -> dict[str, float]:
    cpu0, sw0, _, _ = proc_usage(pid)
    time.sleep(seconds)
    cpu1, sw1, rss, peak = proc_usage(pid)
    return {"rss_mb": rss / 1024, "peak_mb": peak / 1024, "cpu_pct": 100 * (cpu1 - cpu0) / seconds,
            "wakeups_per_s": (sw1 - sw0) / seconds}


def footprint(bench: Bench, api: Any) -> dict[str, dict[str, float]]:
    """Part 3: RSS and CPU, idle with a small policy and with the big one."""
    results: dict[str, dict[str, float]] = {}
    bench.service(api, "small", ["203.0.113.0/24"])
    bench.node(api, "small", "small-1", list(bench.topo.hosts["n02"]))
    bench.node(api, "small", "small-2", ["10.30.0.2"])
    small = bench.agent("n02", "small-1", "--metrics-address", "127.0.0.1:9274")
    applied_at(small, bench.version(api, "small-1"))
    assert small.proc is not None
    results["small policy (2 nodes, 1 entry)"] = idle(small.proc.pid, bench.args.idle)
    small.kill()

    peers = bench.args.peers
    bench.service(api, "big", ["203.0.113.0/24"])
    bench.node(api, "big", "big-000", list(bench.topo.hosts["n03"]))
    base = int(ipaddress.IPv4Address("10.128.0.1"))
    started = time.monotonic()
    for i in range(1, peers + 1):
        v4 = str(ipaddress.IPv4Address(base + i))
        bench.node(api, "big", f"big-{i:03d}", [v4, f"2001:db8:128::{i:x}"])
    print(f"  (seeded {peers} peers in {time.monotonic() - started:.0f} s)", flush=True)
    ok(api.put("/v1/project/bench/service/big", json={"user_config": {
        "ip_filter": ip_filter_entries(bench.args.entries)}}), 200)
    big = bench.agent("n03", "big-000", "--metrics-address", "127.0.0.1:9274")
    applied_at(big, bench.version(api, "big-000"), timeout=120)
    assert big.proc is not None
    time.sleep(12)  # past the first verify ticks
    results[f"{bench.args.entries} entries, {peers} peers"] = idle(big.proc.pid, bench.args.idle)
    big.kill()
    return results


def baselines(seconds: float) -> dict[str, float]:
    found: dict[str, float] = {}
    for label, exe in (("python3 (system)", shutil.which("python3") or "python3"),
                       ("python3 (venv)", sys.executable)):
        proc = subprocess.Popen([exe, "-c", "import time; time.sleep(60)"])
        time.sleep(1.0)
        found[label] = proc_usage(proc.pid)[2] / 1024
        proc.kill()
        proc.wait()
    firewalld = firewalld_rss(seconds)
    if firewalld is not None:
        found["firewalld"] = firewalld
    return found


def firewalld_rss(seconds: float) -> float | None:
    """firewalld's RSS once started, in a namespace of its own on a private D-Bus."""
    if shutil.which("firewalld") is None or shutil.which("dbus-daemon") is None:
        return None
    ns = f"nwnfw{os.getpid() % 10000}"
    with tempfile.TemporaryDirectory() as tmp:
        bus = f"unix:path={tmp}/bus"
        sh("ip", "netns", "add", ns)
        dbus = subprocess.Popen(["dbus-daemon", "--session", f"--address={bus}", "--nofork"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fw = None
        try:
            time.sleep(0.5)
            fw = subprocess.Popen(["ip", "netns", "exec", ns, "firewalld", "--nofork", "--nopid"],
                                  env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(max(5.0, min(seconds, 15.0)))
            if fw.poll() is not None:
                return None
            return proc_usage(fw.pid)[2] / 1024
        finally:
            if fw is not None:
                fw.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    fw.wait(timeout=10)
                if fw.poll() is None:
                    fw.kill()
            dbus.kill()
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="nftables", choices=["nftables", "iptables"])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--entries", type=int, default=8000)
    parser.add_argument("--peers", type=int, default=300)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--lock-per-node", action="store_true",
                        help="iptables: a lock file per agent (as on separate machines) "
                             "instead of the one /run/xtables.lock all agents share here")
    parser.add_argument("--only", choices=["fanout", "entry", "footprint"], default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nodewall-agent-bench-") as tmp, \
            Bench(args, Path(tmp)).running() as bench:
        assert bench.server is not None
        api = bench.server.api()
        ok(api.put("/v1/platform", json={"management_networks": MANAGEMENT}))
        ok(api.post("/v1/project", json={"project": "bench", "base_port": 14000}))
        print(f"backend {args.backend}, load average {os.getloadavg()[0]:.1f}", flush=True)
        if args.only in (None, "fanout"):
            fanout(bench, api)
        if args.only in (None, "entry"):
            one_entry(bench, api)
        if args.only in (None, "footprint"):
            for label, r in footprint(bench, api).items():
                print(f"agent, {label}: RSS {r['rss_mb']:.1f} MB (peak {r['peak_mb']:.1f}), "
                      f"CPU {r['cpu_pct']:.3f} %, {r['wakeups_per_s']:.2f} wake-ups/s",
                      flush=True)
            for label, rss in baselines(args.idle).items():
                print(f"{label}: RSS {rss:.1f} MB", flush=True)
        api.close()
        print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
