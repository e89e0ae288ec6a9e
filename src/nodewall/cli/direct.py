"""The bodies of `plan`, `explain`, `render` and `apply`, without the CLI framework.

The typer commands (`nodewall.cli.spec`, `nodewall.cli.kernel`) call these, and so does the fast
path of `nodewall.cli.main` when the command line is a plain one (`nodewall.cli.fastpath`), so
both print the same bytes and exit alike. Nothing here imports typer, click or rich (the text
`plan` loads rich for its tables, only then); the spec model, the compiler and the backends are
imported inside the functions. Each returns the exit status: 0 done; 1 the kernel refused; 2 bad
input, with every error on its own line on stderr. It prints only nodewall's own messages and
rulesets, never customer text unescaped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodewall.backends.base import ApplyResult, Backend
    from nodewall.policy.model import NodePolicy
    from nodewall.spec.model import DeploymentSpec

USAGE, REFUSED = 2, 1


class Failed(Exception):
    """A command ends with `code`, each of `lines` printed to stderr as an error."""

    def __init__(self, code: int, *lines: str) -> None:
        super().__init__(code)
        self.code = code
        self.lines = lines


def failed(exc: Failed) -> int:
    """Print a failure's lines as errors; its exit status."""
    for line in exc.lines:
        print(f"error: {line}", file=sys.stderr, flush=True)
    return exc.code


def _out(text: str, nl: bool = True) -> None:
    sys.stdout.write(text + "\n" if nl else text)
    sys.stdout.flush()


def load(path: Path) -> DeploymentSpec:
    """The spec at `path`; Failed (exit 2, every error) when it does not validate."""
    from nodewall.errors import SpecError
    from nodewall.spec.quick import load_spec  # without pydantic when it is well-formed

    try:
        return load_spec(path)
    except SpecError as exc:
        raise Failed(USAGE, *exc.lines()) from None


def check_node(spec: DeploymentSpec, node: str) -> None:
    if node not in spec.node_names:
        known = ", ".join(spec.node_names) or "none"
        raise Failed(USAGE, f"--node: unknown node {node!r} (nodes: {known})")


def check_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        raise Failed(USAGE, f"--format: {fmt!r} is not one of text, json")


def plan(spec_path: Path, node: str | None, fmt: str) -> None:
    """Show a node's policy (or every node's): open ports, sources, rules with reasons."""
    check_format(fmt)
    spec = load(spec_path)
    from nodewall.cli.planview import plan_json, print_plan
    from nodewall.compiler.node import compile_node

    if node is not None:
        check_node(spec, node)
    names = [node] if node is not None else spec.node_names
    policies = [compile_node(spec, n) for n in names]
    if fmt == "json":
        docs = [plan_json(p) for p in policies]
        _out(json.dumps(docs[0] if node is not None else {"nodes": docs}, indent=2))
        return
    from rich.console import Console

    console = Console(highlight=False)
    for policy in policies:
        print_plan(console, policy, spec)


def explain(spec_path: Path, node: str, src: str, proto: str, dst: str | None,
            dport: int | None, direction: str, icmp_type: str | None, uid: int | None,
            state: str, fmt: str) -> None:
    """Say what the node's firewall does with one packet, and which rule decides."""
    from nodewall.net import cidr

    check_format(fmt)
    spec = load(spec_path)
    check_node(spec, node)
    problems = []
    if proto not in ("tcp", "udp", "icmp", "esp"):
        problems.append(f"--proto: {proto!r} is not one of tcp, udp, icmp, esp")
    if direction not in ("in", "out"):
        problems.append(f"--direction: {direction!r} is not one of in, out")
    if state not in ("new", "established", "related", "invalid"):
        problems.append(f"--state: {state!r} is not a conntrack state")
    if dport is not None and not 1 <= dport <= 65535:
        problems.append(f"--dport: {dport} is not a port (1..65535)")
    if proto in ("tcp", "udp") and dport is None:
        problems.append(f"--dport: a {proto} packet needs a destination port")
    addresses = {}
    for flag, value in (("--src", src), ("--dst", dst)):
        if value is None:
            continue
        try:
            addresses[flag] = cidr.parse_address(value)
        except ValueError:
            problems.append(f"{flag}: {value!r} is not a valid IP address")
    if problems:
        from nodewall.errors import SpecError

        raise Failed(USAGE, *SpecError([("", p) for p in problems]).lines())
    from nodewall.cli.planview import describe_match, explain_json
    from nodewall.compiler.node import compile_node
    from nodewall.policy.evaluator import Packet, evaluate

    _, node_spec = spec.node(node)
    family, _ = addresses["--src"]
    if dst is None:
        own = [a for a in node_spec.addresses if cidr.parse_address(a)[0] == family]
        dst = own[0] if own else ("0.0.0.0" if family == 4 else "::")
    packet = Packet(src=src, dst=dst, protocol=proto, dport=dport,  # type: ignore[arg-type]
                    direction=direction, icmp_type=icmp_type, uid=uid,  # type: ignore[arg-type]
                    ct_state=state)  # type: ignore[arg-type]
    try:
        verdict = evaluate(compile_node(spec, node), packet)
    except ValueError as exc:
        raise Failed(USAGE, str(exc)) from None
    if fmt == "json":
        _out(json.dumps(explain_json(verdict), indent=2))
        return
    _out(f"{verdict.action}: {verdict.reason}")
    _out(f"  rule {verdict.rule_index}: {describe_match(verdict.rule)}")


def backend(name: str) -> Backend:
    from nodewall.backends.registry import get_backend

    try:
        return get_backend(name)
    except ValueError as exc:
        raise Failed(USAGE, f"--backend: {exc}") from None


def resolve(chosen: Backend) -> Backend:
    """The concrete backend behind `auto`, after saying on stderr which one it picked and why."""
    from nodewall.backends.auto import AutoBackend
    from nodewall.backends.base import BackendError

    if not isinstance(chosen, AutoBackend):
        return chosen
    try:
        concrete = chosen.backend()
    except BackendError as exc:
        raise Failed(REFUSED, str(exc)) from None
    print(f"backend auto: {chosen.chosen} ({chosen.why})", file=sys.stderr, flush=True)
    return concrete


def policy(spec_path: Path, node: str, guard: bool = False) -> NodePolicy:
    """The node's policy; with `guard`, refused (exit 2) when it would shut every management
    network out (`nodewall.policy.lockout`)."""
    from nodewall.compiler.node import compile_node

    spec = load(spec_path)
    check_node(spec, node)
    compiled = compile_node(spec, node)
    if guard:
        from nodewall.policy.lockout import lockout_reason

        _, spec_node = spec.node(node)
        why = lockout_reason(compiled, [str(n) for n in spec.platform.management_networks],
                             [a.partition("/")[0] for a in spec_node.addresses])
        if why is not None:
            raise Failed(USAGE, f"refused: {why}\n(nothing applied; `apply --force` applies it "
                         "anyway)")
    return compiled


def render(spec_path: Path, node: str, backend_name: str) -> None:
    """Print the exact ruleset text `apply` would load."""
    compiled = policy(spec_path, node)
    chosen = resolve(backend(backend_name))
    _out(chosen.render(compiled), nl=False)


def apply(spec_path: Path, node: str, backend_name: str, force: bool) -> None:
    """Apply the node's policy to this network namespace, atomically (`nodewall apply` without
    --confirm; that one is `nodewall.cli.confirm`)."""
    from nodewall.backends.base import BackendError
    from nodewall.gcpause import collector_paused

    # One burst of short-lived work, then the process ends: the cyclic collector waits for the
    # end instead of scanning the spec, the policy and the table between the steps.
    with collector_paused():
        compiled = policy(spec_path, node, guard=not force)
        chosen = resolve(backend(backend_name))
        try:
            result = chosen.apply(compiled)
        except BackendError as exc:
            raise Failed(REFUSED, str(exc)) from None
    announce(result)


def announce(result: ApplyResult) -> None:
    """The line `apply` ends with: version, backend, what changed, flows cut, sockets closed."""
    how = "unchanged" if not result.changed else (
        "set elements updated" if result.incremental else "ruleset updated")
    _out(f"applied policy {result.version} with {result.backend}: {how}; "
         f"{result.flows_cut} flow(s) cut, " + (
             f"{result.sockets_closed} socket(s) closed" if result.sockets_closed is not None
             else "sockets left open (this kernel cannot destroy sockets)"))
