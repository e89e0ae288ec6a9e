"""The agent's command line (argparse, so the agent never loads typer or rich) and its checks.

    nodewall agent --server URL --node N --token-file F [--backend auto|nftables|iptables]
                   [--state-dir D] [--ca-file F] [--metrics-address HOST:PORT]
                   [--verify-interval S] [--management-network CIDR...] [--allow-lockout]
    nodewall agent --spec FILE --node N [the same options but --server, --token-file, --ca-file]

Every problem is reported as `error: --option: why`, all of them at once, with exit status 2
and nothing changed. The token file is refused, as ssh refuses a private key, when group or
others may read or write it; its content is never printed.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from nodewall.agent.client import check_url
from nodewall.agent.failsafe import parse_networks

NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
DEFAULT_STATE_ROOT = Path("/var/lib/nodewall/agent")
BACKENDS = ("auto", "nftables", "iptables")


@dataclass(frozen=True)
class Options:
    node: str
    server: str | None
    token_file: Path | None
    spec: Path | None
    backend: str
    state_dir: Path
    ca_file: Path | None
    metrics_address: tuple[str, int] | None
    verify_interval: float
    management_networks: tuple[str, ...]
    allow_lockout: bool = False


class UsageError(Exception):
    """Bad command-line input; `problems` are the lines to print."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nodewall agent",
        description="Keep this node's kernel firewall holding its policy: from the control "
                    "plane (--server) or from a spec file (--spec).")
    p.add_argument("--server", metavar="URL", help="control plane URL (http:// or https://)")
    p.add_argument("--spec", metavar="FILE", type=Path,
                   help="serverless: apply this spec file's policy, re-apply when it changes")
    p.add_argument("--node", "-n", metavar="N", required=True, help="this node's name")
    p.add_argument("--token-file", metavar="F", type=Path,
                   help="file holding this node's token (mode 0600 or stricter)")
    p.add_argument("--backend", "-b", default="auto", metavar="|".join(BACKENDS),
                   help="kernel backend (default: auto, the host's choice)")
    p.add_argument("--state-dir", metavar="D", type=Path,
                   help=f"cache directory (default: {DEFAULT_STATE_ROOT}/<node>)")
    p.add_argument("--ca-file", metavar="F", type=Path,
                   help="CA certificates to trust for an https:// server")
    p.add_argument("--metrics-address", metavar="HOST:PORT",
                   help="serve Prometheus metrics here (default: not served)")
    p.add_argument("--verify-interval", metavar="S", type=float, default=10.0,
                   help="seconds between checks of the kernel against the policy (default 10)")
    p.add_argument("--management-network", metavar="CIDR", nargs="+", action="extend",
                   default=[], help="sources of the management ports in the fail-safe policy, "
                                    "and the networks no received policy may shut out "
                                    "(default: any source; the policy's own management sets)")
    p.add_argument("--allow-lockout", action="store_true",
                   help="apply even a policy that shuts every management network out")
    return p


def parse(argv: list[str]) -> Options:
    """Options from `argv`; UsageError with every problem (argparse itself exits 2 on a
    malformed command line)."""
    ns = parser().parse_args(argv)
    problems: list[str] = []
    node: str = ns.node
    if not NODE_NAME.match(node):
        problems.append(f"--node: {node[:80]!r} is not a node name ([a-z][a-z0-9-]{{0,62}})")
    if (ns.server is None) == (ns.spec is None):
        problems.append("--server / --spec: give exactly one (the control plane, or a spec file)")
    if ns.server is not None:
        try:
            check_url(ns.server)
        except ValueError as exc:
            problems.append(f"--server: {exc}")
        if ns.token_file is None:
            problems.append("--token-file: required with --server")
    elif ns.spec is not None:
        for flag, value in (("--token-file", ns.token_file), ("--ca-file", ns.ca_file)):
            if value is not None:
                problems.append(f"{flag}: only with --server")
        if not ns.spec.is_file():
            problems.append(f"--spec: {ns.spec} is not a file")
    if ns.backend not in BACKENDS:
        problems.append(f"--backend: {ns.backend!r} is not one of {', '.join(BACKENDS)}")
    if ns.ca_file is not None and not ns.ca_file.is_file():
        problems.append(f"--ca-file: {ns.ca_file} is not a file")
    if not 0.05 <= ns.verify_interval <= 86400:
        problems.append(f"--verify-interval: {ns.verify_interval:g} is not in 0.05..86400 seconds")
    metrics_address = None
    if ns.metrics_address is not None:
        try:
            metrics_address = parse_address(ns.metrics_address)
        except ValueError as exc:
            problems.append(f"--metrics-address: {exc}")
    networks: list[str] = []
    for text in ns.management_network:
        try:
            networks += parse_networks([text])
        except ValueError as exc:
            problems.append(f"--management-network: {exc}")
    if problems:
        raise UsageError(problems)
    return Options(
        node=node, server=ns.server, token_file=ns.token_file, spec=ns.spec,
        backend=ns.backend, state_dir=ns.state_dir or DEFAULT_STATE_ROOT / node,
        ca_file=ns.ca_file, metrics_address=metrics_address,
        verify_interval=ns.verify_interval, management_networks=tuple(networks),
        allow_lockout=ns.allow_lockout)


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def read_token(path: Path) -> str:
    """The token in `path`, stripped; UsageError when the file is missing, empty, not a regular
    file, or readable or writable by group or others (the message never shows the content)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise UsageError([f"--token-file: cannot open {path}: {exc.strerror}"]) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError([f"--token-file: {path} is not a regular file"])
        if info.st_mode & 0o077:
            raise UsageError([
                f"--token-file: {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); it holds a secret: "
                f"chmod 600 {path}"])
        data = os.read(fd, 4097)
    finally:
        os.close(fd)
    token = data.decode("utf-8", errors="replace").strip()
    if not token or len(data) > 4096 or any(c.isspace() or not c.isprintable() for c in token):
        raise UsageError([f"--token-file: {path} does not hold one token (one printable word)"])
    return token
