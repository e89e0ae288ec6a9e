"""The iptables backend against the real kernel, for iptables-nft and iptables-legacy.

Topology (created per test, names `nwi<suffix>...`, removed even when a test fails): a node
namespace holding the firewall, 10.77.0.1 / fd77::1, and a client namespace on the other end of
a veth pair holding every other actor's address: cluster peer .2, ip_filter client .3, outsider
.4, management .5, integration node .6, and the metadata address 169.254.169.254. TCP and UDP
listeners in the node answer on every probed port, so a refused probe is the firewall's doing.

Covered here: rule-by-rule probes compared with the reference evaluator (differential), uid
egress, re-apply is a no-op, set-only changes swap sets without touching the chains, failure of
the second family transaction rolls the first back, drift in `status`, the conntrack cut, no
blink while re-applying. Coexistence with other tools is in test_iptables_coexistence.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from nodewall.backends.base import BackendError
from nodewall.backends.iptables import xtables
from nodewall.backends.iptables.backend import IptablesBackend
from nodewall.compiler.node import compile_node
from nodewall.policy.evaluator import Packet, evaluate
from nodewall.policy.model import NodePolicy, SetElement
from nodewall.spec.load import parse_spec

pytestmark = pytest.mark.kernel

NODE4, NODE6 = "10.77.0.1", "fd77::1"
ACTORS = {"peer": 2, "client": 3, "outsider": 4, "mgmt": 5, "integration": 6}
EXTRA_TCP = (22, 30287, 443, 9273, 9999)
EXTRA_UDP = (500, 4500, 9999)
_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def need_kernel() -> None:
    """Skip without root or tools; under CI, fail instead (kernel tests must run there)."""
    missing = [t for t in ("ip", "ipset", "iptables-nft-restore", "iptables-legacy-restore",
                           "conntrack") if shutil.which(t) is None]
    reason = ("not root" if os.geteuid() != 0 else "") or (
        f"missing tools: {missing}" if missing else "")
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"kernel test cannot run under CI: {reason}")
        pytest.skip(reason)


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check).stdout


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the calling thread (and the processes it starts) in a named network namespace."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(target, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        yield
    finally:
        if _libc.setns(home, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(home)
        os.close(target)


SERVER = r"""
import socket, selectors, sys
sel = selectors.DefaultSelector()
for spec in sys.argv[1:]:
    proto, _, rest = spec.partition("/")
    port, _, only = rest.partition("@")
    pairs = [(socket.AF_INET, only)] if only else [(socket.AF_INET, "0.0.0.0"),
                                                   (socket.AF_INET6, "::")]
    for fam, host in pairs:
        s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, int(port)))
        if proto == "tcp":
            s.listen(128)
        sel.register(s, selectors.EVENT_READ, proto)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.data == "tcp":
            conn, _ = key.fileobj.accept()
            sel.register(conn, selectors.EVENT_READ, "conn")
        elif key.data == "conn":
            try:
                data = key.fileobj.recv(100)
            except OSError:
                data = b""
            if data:
                key.fileobj.send(data)
            else:
                sel.unregister(key.fileobj); key.fileobj.close()
        else:
            data, peer = key.fileobj.recvfrom(100)
            key.fileobj.sendto(data, peer)
"""


@dataclasses.dataclass
class Topology:
    node: str
    client: str
    procs: list[subprocess.Popen[str]] = dataclasses.field(default_factory=list)

    def serve(self, netns: str, specs: Sequence[str]) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER,
                                 *specs], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        self.procs.append(proc)


@pytest.fixture
def topo() -> Iterator[Topology]:
    need_kernel()
    sfx = secrets.token_hex(3)
    t = Topology(f"nwi{sfx}n", f"nwi{sfx}c")
    try:
        for ns in (t.node, t.client):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"nwi{sfx}a", "netns", t.node, "type", "veth", "peer",
           "name", f"nwi{sfx}b", "netns", t.client)
        sh("ip", "-n", t.node, "link", "set", f"nwi{sfx}a", "up")
        sh("ip", "-n", t.client, "link", "set", f"nwi{sfx}b", "up")
        sh("ip", "-n", t.node, "addr", "add", f"{NODE4}/24", "dev", f"nwi{sfx}a")
        sh("ip", "-n", t.node, "addr", "add", f"{NODE6}/64", "dev", f"nwi{sfx}a", "nodad")
        sh("ip", "-n", t.node, "route", "add", "169.254.169.254/32", "dev", f"nwi{sfx}a")
        for n in ACTORS.values():
            sh("ip", "-n", t.client, "addr", "add", f"10.77.0.{n}/24", "dev", f"nwi{sfx}b")
            sh("ip", "-n", t.client, "addr", "add", f"fd77::{n}/64", "dev", f"nwi{sfx}b",
               "nodad")
        sh("ip", "-n", t.client, "addr", "add", "169.254.169.254/32", "dev", f"nwi{sfx}b")
        yield t
    finally:
        for proc in t.procs:
            proc.kill()
            proc.wait()
        for ns in (t.node, t.client):
            sh("ip", "netns", "del", ns, check=False)


def spec_dict(ip_filter: Sequence[str] = ("10.77.0.3/32", "fd77::3/128")) -> dict[str, Any]:
    return {
        "platform": {"management_networks": ["10.77.0.5/32", "fd77::5/128"]},
        "project": {"name": "kt"},
        "services": [
            {"name": "pg-a", "type": "pg", "cloud": "aws-eu-west-1", "ports": {"pg": 15000},
             "user_config": {"ip_filter": list(ip_filter), "enable_ipv6": True},
             "nodes": [{"name": "pg-a-1", "addresses": [NODE4, NODE6]},
                       {"name": "pg-a-2", "addresses": ["10.77.0.2", "fd77::2"]}]},
            {"name": "pg-r", "type": "pg", "cloud": "aws-eu-west-1",
             "user_config": {"ip_filter": []},
             "nodes": [{"name": "pg-r-1", "addresses": ["10.77.0.6", "fd77::6"]}]},
        ],
        "integrations": [{"type": "read_replica", "source": "pg-a", "dest": "pg-r"}],
    }


def policy_for(ip_filter: Sequence[str] = ("10.77.0.3/32", "fd77::3/128")) -> NodePolicy:
    return compile_node(parse_spec(spec_dict(ip_filter)), "pg-a-1")


def ports(policy: NodePolicy) -> tuple[list[int], list[int]]:
    tcp = sorted({c.port for c in policy.components if c.protocol == "tcp"} | set(EXTRA_TCP))
    udp = sorted({c.port for c in policy.components if c.protocol == "udp"} | set(EXTRA_UDP))
    return tcp, udp


def probe(src: str, dst: str, proto: str, port: int, timeout: float = 1.0) -> str:
    """'accept' (the listener answered), 'reject' (refused at once) or 'drop' (silence)."""
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(fam, kind) as s:
        s.settimeout(timeout)
        s.bind((src, 0))
        try:
            s.connect((dst, port))
            s.send(b"x")
            return "accept" if s.recv(10) == b"x" else "reject"
        except (ConnectionRefusedError, ConnectionResetError):
            return "reject"
        except OSError as exc:  # timeouts, and EHOSTUNREACH/EACCES from ICMP prohibited
            return "drop" if isinstance(exc, TimeoutError) else "reject"


def actor(name: str, family: int) -> str:
    return f"10.77.0.{ACTORS[name]}" if family == 4 else f"fd77::{ACTORS[name]}"


@pytest.fixture(params=["nft", "legacy"])
def variant(request: pytest.FixtureRequest) -> xtables.Variant:
    v: xtables.Variant = request.param
    return v


def test_probes_match_the_evaluator(topo: Topology, variant: xtables.Variant) -> None:
    """Differential: every (actor, family, protocol, port) probe gets the reference verdict."""
    policy = policy_for()
    tcp, udp = ports(policy)
    topo.serve(topo.node, [f"tcp/{p}" for p in tcp] + [f"udp/{p}" for p in udp])
    with inside(topo.node):
        result = IptablesBackend(variant).apply(policy)
    assert result.changed and not result.incremental and result.backend == "iptables"
    mismatches = []
    seen = set()
    with inside(topo.client):
        for name in ACTORS:
            for family in (4, 6):
                dst = NODE4 if family == 4 else NODE6
                for proto, plist in (("tcp", tcp), ("udp", udp)):
                    for port in plist:
                        want = evaluate(policy, Packet(actor(name, family), dst, proto,  # type: ignore[arg-type]
                                                       port)).action
                        got = probe(actor(name, family), dst, proto, port)
                        seen.add(want)
                        if got != want:
                            mismatches.append(f"{name} IPv{family} {proto}/{port}: "
                                              f"expected {want}, got {got}")
    assert not mismatches, "\n".join(mismatches)
    assert seen == {"accept", "reject"}


def test_egress_uid_and_metadata(topo: Topology, variant: xtables.Variant) -> None:
    policy = policy_for()
    topo.serve(topo.client, ["tcp/80", "udp/53@169.254.169.254", "tcp/5000"])
    with inside(topo.node):
        IptablesBackend(variant).apply(policy)
        meta = "169.254.169.254"
        assert probe(NODE4, meta, "tcp", 80) == "accept"  # uid 0
        assert probe(NODE4, "10.77.0.4", "tcp", 5000) == "accept"
        as_nobody = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM)
s.settimeout(1)
try:
    s.connect(("169.254.169.254", int(sys.argv[2]))); s.send(b"x"); print(s.recv(9).decode())
except OSError as e:
    print(type(e).__name__)
"""
        for proto, port, want in (("tcp", 80, "ConnectionRefusedError"), ("udp", 53, "x")):
            out = sh("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                     sys.executable, "-c", as_nobody, proto, str(port)).strip()
            assert out == want, f"uid 65534 {proto}/{port} to metadata: {out}"


_CHAIN_COUNTERS = re.compile(r"^(:\S+ \S+) \[\d+:\d+\]$")


def save_lines(variant: xtables.Variant, family: xtables.FamilyNum) -> list[str]:
    """A family's tables as `*-save` prints them, without its comment lines (timestamps) and
    with built-in chains' policy counters zeroed: iptables-legacy-save prints them even without
    -c, and any packet of the namespace moves them; they are traffic, not ruleset."""
    lines = sh(xtables.tool(variant, family, "save")).splitlines()
    return [_CHAIN_COUNTERS.sub(r"\1 [0:0]", x) for x in lines if not x.startswith("#")]


def _kernel_text(variant: xtables.Variant, counters: bool = False) -> str:
    """Both families' filter tables and all ipsets; with `counters`, exactly as saved by -c."""
    out = []
    for family in (4, 6):
        if counters:
            saved = sh(xtables.tool(variant, family, "save"), "-c").splitlines()
            out += [x for x in saved if not x.startswith("#")]
        else:
            out += save_lines(variant, family)
    out += sorted(sh("ipset", "save").splitlines())
    return "\n".join(out)


def _packets(save_line: str) -> int:
    return int(save_line[1:].split(":", 1)[0])


def test_reapply_noop_and_set_only_swap(topo: Topology, variant: xtables.Variant) -> None:
    policy = policy_for()
    topo.serve(topo.node, ["tcp/15000"])
    backend = IptablesBackend(variant)
    with inside(topo.node):
        backend.apply(policy)
        before = _kernel_text(variant)
        again = backend.apply(policy)
        assert (again.changed, again.incremental) == (False, False)
        assert _kernel_text(variant) == before
    with inside(topo.client):
        assert probe("10.77.0.4", NODE4, "tcp", 15000) == "reject"
        assert probe("10.77.0.3", NODE4, "tcp", 15000) == "accept"
    with inside(topo.node):
        chains_before = [x for x in _kernel_text(variant, counters=True).splitlines()
                         if x.split(" ")[1:3] in (["-A", "NODEWALL-INPUT"],
                                                  ["-A", "NODEWALL-OUTPUT"])]
        wider = policy_for(("10.77.0.3/32", "10.77.0.4/32", "fd77::3/128"))
        result = backend.apply(wider)
        assert (result.changed, result.incremental) == (True, True)
        chains_after = [x for x in _kernel_text(variant, counters=True).splitlines()
                        if x.split(" ")[1:3] in (["-A", "NODEWALL-INPUT"],
                                                 ["-A", "NODEWALL-OUTPUT"])]
        assert len(chains_before) > 10
        assert [x.split(" ", 1)[1] for x in chains_after] == [
            x.split(" ", 1)[1] for x in chains_before], "a set-only change rewrote chains"
        counts = [(_packets(b), _packets(a)) for b, a in zip(chains_before, chains_after,
                                                              strict=True)]
        assert any(b > 0 for b, _ in counts)
        assert all(a >= b for b, a in counts), f"counters were reset: {counts}"
        assert backend.status().version == wider.version
        assert backend.status().drift == ()
        assert "-b" not in sh("ipset", "list", "-n")  # temporary sets are gone
    with inside(topo.client):
        assert probe("10.77.0.4", NODE4, "tcp", 15000) == "accept"


def test_failed_second_family_leaves_both_on_previous_rules(
    topo: Topology, variant: xtables.Variant, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = policy_for(), policy_for(("10.77.0.4/32",))
    new = dataclasses.replace(new, rules=tuple(r for r in new.rules if r.reason != "management"))
    backend = IptablesBackend(variant)
    real_run = xtables.run
    with inside(topo.node):
        backend.apply(old)
        before = _kernel_text(variant)
        seen: list[str] = []

        def failing(argv: Sequence[str], stdin: str | None = None) -> str:
            seen.append(argv[0])
            if argv[0] == xtables.tool(variant, 4, "restore"):
                if not any(a == xtables.tool(variant, 6, "restore") for a in seen[:-1]):
                    raise AssertionError("IPv6 must be loaded before IPv4")
                raise BackendError("injected: iptables-restore failed")
            return real_run(argv, stdin)

        monkeypatch.setattr(xtables, "run", failing)
        with pytest.raises(BackendError, match="injected"):
            backend.apply(new)
        monkeypatch.setattr(xtables, "run", real_run)
        assert _kernel_text(variant) == before
        status = backend.status()
        assert (status.version, status.drift) == (old.version, ())


def test_failed_first_family_changes_nothing(
    topo: Topology, variant: xtables.Variant, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = policy_for(), policy_for(("10.77.0.4/32",))
    new = dataclasses.replace(new, rules=new.rules[1:])
    backend = IptablesBackend(variant)
    real_run = xtables.run
    with inside(topo.node):
        backend.apply(old)
        before = _kernel_text(variant)
        calls: list[str] = []

        def failing(argv: Sequence[str], stdin: str | None = None) -> str:
            calls.append(argv[0])
            if argv[0] == xtables.tool(variant, 6, "restore"):
                raise BackendError("injected: ip6tables-restore failed")
            return real_run(argv, stdin)

        monkeypatch.setattr(xtables, "run", failing)
        with pytest.raises(BackendError, match="injected"):
            backend.apply(new)
        monkeypatch.undo()
        assert xtables.tool(variant, 4, "restore") not in calls, "IPv4 touched after IPv6 failed"
        assert _kernel_text(variant) == before


def test_set_type_change_goes_through_the_other_slot(topo: Topology,
                                                    variant: xtables.Variant) -> None:
    """A set that turns hosts-only cannot be swapped (types differ): the full path fills the
    other slot, the new rules name it, the old set goes; and back again."""
    old = policy_for()
    hosts = dataclasses.replace(old, sets=tuple(
        dataclasses.replace(s, hosts_only=True) if s.name == "clients_v4" else s
        for s in old.sets))
    topo.serve(topo.node, ["tcp/15000"])
    backend = IptablesBackend(variant)
    with inside(topo.node):
        for policy, name in ((old, "nodewall-clients_v4"), (hosts, "nodewall-clients_v4-b"),
                             (old, "nodewall-clients_v4")):
            result = backend.apply(policy)
            assert result.changed and not result.incremental
            listed = sh("ipset", "list", "-n").split()
            assert [n for n in listed if n.startswith("nodewall-clients_v4")] == [name]
            assert backend.status().drift == ()
            with inside(topo.client):
                assert probe("10.77.0.3", NODE4, "tcp", 15000) == "accept"
                assert probe("10.77.0.4", NODE4, "tcp", 15000) == "reject"


def test_failed_verify_and_failed_set_swap_roll_back(
    topo: Topology, variant: xtables.Variant, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = policy_for()
    backend = IptablesBackend(variant)
    real_run = xtables.run
    with inside(topo.node):
        backend.apply(old)
        before = _kernel_text(variant)
        # a set-only change whose NODEWALL-META update fails: the swapped sets go back
        wider = policy_for(("10.77.0.3/32", "10.77.0.9/32", "fd77::3/128"))

        def meta_fails(argv: Sequence[str], stdin: str | None = None) -> str:
            if argv[0].endswith("-restore") and stdin and "NODEWALL-META" in stdin:
                raise BackendError("injected: META update failed")
            return real_run(argv, stdin)

        monkeypatch.setattr(xtables, "run", meta_fails)
        with pytest.raises(BackendError, match="injected"):
            backend.apply(wider)
        monkeypatch.setattr(xtables, "run", real_run)
        assert _kernel_text(variant) == before
        # a read-back that differs (as if another tool edited the chain mid-apply)
        from nodewall.backends.iptables import backend as ipt

        monkeypatch.setattr(ipt, "_verify", lambda *a: ["injected: read-back differs"])
        changed = policy_for(("10.77.0.4/32",))
        changed = dataclasses.replace(changed, rules=changed.rules[1:])
        with pytest.raises(BackendError, match="injected"):
            backend.apply(changed)
        monkeypatch.undo()
        assert _kernel_text(variant) == before
        assert backend.status().drift == ()


def test_status_reports_drift_and_apply_repairs(topo: Topology, variant: xtables.Variant) -> None:
    policy = policy_for()
    backend = IptablesBackend(variant)
    ipt4 = xtables.tool(variant, 4, "")
    with inside(topo.node):
        backend.apply(policy)
        sh(ipt4, "-w", "-I", "INPUT", "1", "-p", "tcp", "--dport", "7", "-j", "ACCEPT")
        sh(ipt4, "-w", "-A", "NODEWALL-INPUT", "-j", "ACCEPT")
        sh("ipset", "add", "nodewall-clients_v4", "10.77.0.4")
        drift = "\n".join(backend.status().drift)
        assert "jump to NODEWALL-INPUT" in drift
        assert "IPv4: NODEWALL- chains differ" in drift
        assert "set nodewall-clients_v4: contents differ" in drift
        repaired = backend.apply(policy)
        assert repaired.changed
        assert backend.status().drift == ()
        assert "-A INPUT -p tcp -m tcp --dport 7 -j ACCEPT" in sh(xtables.tool(variant, 4,
                                                                               "save"))
        assert backend.remove()
        assert backend.status().present is False


def test_conntrack_cut_after_narrowing(topo: Topology, variant: xtables.Variant) -> None:
    policy = policy_for(("10.77.0.3/32", "10.77.0.4/32", "fd77::3/128"))
    topo.serve(topo.node, ["tcp/15000"])
    with inside(topo.node):
        IptablesBackend(variant).apply(policy)
    with inside(topo.client):
        kept = socket.create_connection((NODE4, 15000), timeout=2,
                                        source_address=("10.77.0.3", 0))
        cut = socket.create_connection((NODE4, 15000), timeout=2,
                                       source_address=("10.77.0.4", 0))
    try:
        for s in (kept, cut):
            s.send(b"a")
            assert s.recv(1) == b"a"
        with inside(topo.node):
            result = IptablesBackend(variant).apply(policy_for())
        assert result.flows_cut >= 1
        kept.send(b"b")
        assert kept.recv(1) == b"b"
        with pytest.raises(OSError):
            cut.send(b"c")
            if cut.recv(1) == b"":
                raise ConnectionResetError("closed")
    finally:
        kept.close()
        cut.close()


def test_no_blink_while_reapplying(topo: Topology, variant: xtables.Variant) -> None:
    """A client allowed by both policies is never refused while policies alternate."""
    a = policy_for()
    b = policy_for(("10.77.0.3/32", "10.77.0.4/32", "fd77::3/128"))
    wider_mgmt = tuple(
        dataclasses.replace(s, elements=(*s.elements, SetElement("10.99.0.0/16")))
        if s.name == "mgmt_v4" else s for s in b.sets)
    last = dataclasses.replace(b.rules[-1], reason="other reason")
    b_full = dataclasses.replace(b, sets=wider_mgmt, rules=(*b.rules[:-1], last))
    topo.serve(topo.node, ["tcp/15000"])
    backend = IptablesBackend(variant)
    with inside(topo.node):
        backend.apply(a)
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with inside(topo.client):
            while not stop.is_set():
                for src, dst in (("10.77.0.3", NODE4), ("fd77::3", NODE6)):
                    got = probe(src, dst, "tcp", 15000, timeout=2)
                    if got != "accept":
                        failures.append(f"{src}: {got}")
                time.sleep(0.005)  # every flow stays in conntrack, and each apply judges them

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        with inside(topo.node):
            for policy in (b, a, b_full, a, b, b_full):
                backend.apply(policy)
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert not failures, f"allowed client refused during re-apply: {failures[:5]}"
