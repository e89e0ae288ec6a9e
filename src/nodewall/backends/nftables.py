"""The nftables backend: a `NodePolicy` rendered into one `inet nodewall` table, applied atomically.

Design note
-----------
Goals. The kernel of the current network namespace holds exactly the rendered table, or what it
held before: never a moment with the table half-built or absent. Re-applying the same policy
sends nothing. A change of set contents only (an ip_filter entry, a peer) is sent as element
deltas, not a rebuild. Other tools' tables (Docker's, iptables-nft's `ip filter`) are never read
for writing, flushed or reordered: every command names `inet nodewall` explicitly.

Model. `render` is pure: policy in, nft text out, written in the exact form `nft list` prints back
(canonical form), so that verification is a comparison, not an interpretation. `_parse` reads that
form, whether it came from `render` or from the kernel, into a `TableImage`: the table-level lines,
each set's header lines and its sorted element tokens, each chain's lines. Whitespace, counter
values and the one spelling the kernel shortens (`reject with icmpx port-unreachable` prints as
`reject`) are normalised in `_normalise_line` and nowhere else. The applied policy's version and a
digest of everything else live in the comment of the one rule of chain `version` (the table comment
cannot be updated in place); `status` checks the kernel against that digest, so it needs no state
file.

Apply. Render, parse; read the kernel's image (or use the one this object last verified, falling
back to a read when the commit or its read-back disagrees); equal: no-op (always confirmed by a
read). Table present with the same table
lines and base-chain hooks: one transaction that updates it in place (`_update`): element deltas
for sets that stay (never recreated: a set created in the same transaction as the rules using it
can be seen empty for an instant after the commit, which the no-blink test caught), new sets added,
changed chains flushed and refilled, obsolete sets and foreign chains deleted, the version rule
replaced. Only set elements changed: `incremental`. Otherwise (no table, or its hooks edited) one
transaction `add table; delete table; table inet nodewall {...}`. Each batch is checked before
anything reaches the kernel: libnftables parses and evaluates the whole batch first and sends
nothing if any line fails; the kernel then validates every message of the batch before it commits
any (all or nothing). A separate dry run (`check`) would repeat the same parse and evaluation at
the same cost as the apply itself, so apply does not run one. After the commit the table is read
back and compared with the intended image; any difference raises `BackendError`. The error carries
libnftables' message with the offending line. Then the conntrack cut
(`nodewall.backends.conntrack`), skipped when the change only added elements to sets that only
accept rules use.

Threads and namespaces. One long-lived libnftables handle per backend object (avoids the 8-16 ms
netlink close of a fresh `nft` process). Its socket belongs to the network namespace of the
thread that opened it; the handle is reopened when the calling thread is in another namespace.
Not thread-safe: one backend object per thread.

Never: read customer text (a policy holds none; reasons are sanitised anyway), touch objects
outside `inet nodewall`, put timestamps or counters' values in what is compared.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import socket
import tempfile
from dataclasses import dataclass, field
from typing import Any

from nodewall.backends.base import ApplyResult, BackendError, Status
from nodewall.policy import ICMP_TYPES, NodePolicy, Rule, check_policy

FAMILY = "inet"
TABLE = "nodewall"
CHAINS = ("input", "output")
VERSION_CHAIN = "version"
COMMENT_MAX = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/@+=,()\[\]#-]")
_CT_ORDER = ("invalid", "established", "related", "new")  # nft prints the bitmask in bit order
_IP = {4: "ip", 6: "ip6"}
_VERSION_RE = re.compile(
    r'^return comment "nodewall v=(?P<version>[0-9a-f]+) (?P<digests>[^"]*)"$'
)

_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
Interval = tuple[int, int, int]  # (family, first address, last address)


def comment(text: str) -> str:
    """A nodewall-made text as an nft comment: a safe character set only, at most 128 bytes."""
    return _UNSAFE.sub("_", text)[:COMMENT_MAX].strip()


# --------------------------------------------------------------------------------------- render


def render(policy: NodePolicy) -> str:
    """The full ruleset text, in the form `nft list table inet nodewall` prints it back."""
    return render_image(policy)[0]


def render_image(policy: NodePolicy) -> tuple[str, TableImage]:
    """The ruleset text and its image (what a read-back of it must equal)."""
    check_policy(policy)
    body = _render_body(policy)
    image = _parse(body)
    marker = _version_rule(policy.version, image)
    image.chains[VERSION_CHAIN] = [_normalise_line(marker)]
    return body.replace(_VERSION_PLACEHOLDER, marker), image


_VERSION_PLACEHOLDER = "\t\t@@version@@\n"


def _render_body(policy: NodePolicy) -> str:
    out = [f"table {FAMILY} {TABLE} {{\n", '\tcomment "managed by nodewall: do not edit"\n']
    for s in policy.sets:
        out.append(f"\tset {s.name} {{\n\t\ttype ipv{s.family}_addr\n")
        if not s.hosts_only:
            out.append("\t\tflags interval\n")
        tokens = _element_tokens(s.networks, s.hosts_only)
        if tokens:
            out.append(_elements_text(tokens, "\t\t"))
        out.append("\t}\n\n")
    for chain in CHAINS:
        direction = "in" if chain == "input" else "out"
        out.append(f"\tchain {chain} {{\n")
        out.append(f"\t\ttype filter hook {chain} priority filter; policy accept;\n")
        for rule in policy.rules_for(direction):  # type: ignore[arg-type]
            out.extend(f"\t\t{line}\n" for line in rule_lines(rule))
        out.append("\t}\n\n")
    out.append(f"\tchain {VERSION_CHAIN} {{\n{_VERSION_PLACEHOLDER}\t}}\n}}\n")
    return "".join(out)


def _elements_text(tokens: list[str], indent: str) -> str:
    rows = [", ".join(tokens[i : i + 8]) for i in range(0, len(tokens), 8)]
    return f"{indent}elements = {{ " + f",\n{indent}\t     ".join(rows) + " }\n"


def rule_lines(rule: Rule) -> list[str]:
    """One policy rule as nft rule lines (a protocol-less reject needs three)."""
    if rule.action == "reject" and rule.protocol is None:
        return [
            _rule_line(rule, "meta l4proto tcp", "counter reject with tcp reset"),
            _rule_line(rule, "meta l4proto udp", "counter reject with icmpx port-unreachable"),
            _rule_line(rule, None, "counter reject with icmpx admin-prohibited"),
        ]
    if rule.action == "reject":
        verdict = {
            "tcp": "counter reject with tcp reset",
            "udp": "counter reject with icmpx port-unreachable",
        }.get(rule.protocol or "", "counter reject with icmpx admin-prohibited")
    else:
        verdict = rule.action
    return [_rule_line(rule, _protocol_match(rule), verdict)]


def _protocol_match(rule: Rule) -> str | None:
    if rule.protocol in ("tcp", "udp"):
        ports = sorted(set(rule.dports))
        if not ports:
            return f"meta l4proto {rule.protocol}"
        if len(ports) == 1:
            return f"{rule.protocol} dport {ports[0]}"
        return f"{rule.protocol} dport {{ {', '.join(map(str, ports))} }}"
    if rule.protocol == "esp":
        return "meta l4proto esp"
    if rule.protocol == "icmp":
        if rule.family is None:
            return "meta l4proto { icmp, ipv6-icmp }"
        keyword = "icmp" if rule.family == 4 else "icmpv6"
        if not rule.icmp_types:
            return "meta l4proto " + ("icmp" if rule.family == 4 else "ipv6-icmp")
        codes = ICMP_TYPES[rule.family]
        names = sorted(set(rule.icmp_types), key=lambda n: codes[n])
        if len(names) == 1:
            return f"{keyword} type {names[0]}"
        return f"{keyword} type {{ {', '.join(names)} }}"
    return None


def _rule_line(rule: Rule, protocol_match: str | None, verdict: str) -> str:
    parts: list[str] = []
    iface = "iifname" if rule.direction == "in" else "oifname"
    if rule.interface == "loopback":
        parts.append(f'{iface} "lo"')
    elif rule.interface == "not-loopback":
        parts.append(f'{iface} != "lo"')
    implied = rule.src_set or rule.dst_set or rule.protocol == "icmp"
    if rule.family is not None and not implied:
        parts.append(f"meta nfproto ipv{rule.family}")
    if rule.src_set:
        parts.append(f"{_IP[rule.family or 4]} saddr @{rule.src_set}")
    if rule.dst_set:
        parts.append(f"{_IP[rule.family or 4]} daddr @{rule.dst_set}")
    if rule.ct_states:
        parts.append("ct state " + ",".join(s for s in _CT_ORDER if s in rule.ct_states))
    if protocol_match:
        parts.append(protocol_match)
    if rule.uid is not None:
        parts.append(f"meta skuid {int(rule.uid)}")
    if rule.limit_per_second is not None:
        parts.append(f"limit rate {int(rule.limit_per_second)}/second")
    parts.append(verdict)
    reason = comment(rule.reason)
    if reason:
        parts.append(f'comment "{reason}"')
    return " ".join(parts)


def _element_tokens(networks: tuple[str, ...], hosts_only: bool) -> list[str]:
    """Networks merged and split into aligned prefixes, in kernel order, as nft prints them
    (a host without its /32). Host-only sets keep every address as it is."""
    intervals = sorted({_interval(n) for n in networks})
    if hosts_only:
        if any(first != last for _, first, last in intervals):
            raise ValueError(f"a host-only set holds a network: {networks}")
        return [_address(fam, first) for fam, first, _ in intervals]
    merged: list[list[int]] = []  # [family, first, last, index of the one network or -1]
    for fam, first, last in intervals:
        if merged and merged[-1][0] == fam and first <= merged[-1][2] + 1:
            merged[-1][2:] = [max(last, merged[-1][2]), -1]
        else:
            merged.append([fam, first, last, len(merged)])
    tokens = []
    for fam, first, last, alone in merged:
        if alone >= 0 and fam == 4:  # one IPv4 network, unmerged: print it as it is written
            tokens.append(_address(4, first) if first == last else
                          f"{_address(4, first)}/{33 - (last - first + 1).bit_length()}")
        else:
            tokens.extend(_prefix_tokens(fam, first, last))
    return tokens


_BITS = {4: 32, 6: 128}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def _address(fam: int, value: int) -> str:
    return socket.inet_ntop(_AF[fam], value.to_bytes(_BITS[fam] // 8, "big"))


def _interval(token: str) -> Interval:
    """"10.0.0.0/24", "10.0.0.5" or "10.0.0.5-10.0.0.9" as (family, first, last)."""
    if "-" in token:
        first_s, last_s = (t.strip() for t in token.split("-", 1))
        fam = 6 if ":" in first_s else 4
        return (fam, _value(fam, first_s), _value(fam, last_s))
    address, _, plen = token.partition("/")
    fam = 6 if ":" in address else 4
    size = 1 << (_BITS[fam] - (int(plen) if plen else _BITS[fam]))
    first = _value(fam, address)
    if first % size:
        raise ValueError(f"{token!r} has host bits set")
    return (fam, first, first + size - 1)


def _value(fam: int, address: str) -> int:
    return int.from_bytes(socket.inet_pton(_AF[fam], address), "big")


def _prefix_tokens(fam: int, first: int, last: int) -> list[str]:
    """The fewest aligned prefixes covering first..last, as nft element tokens."""
    bits, tokens = _BITS[fam], []
    while first <= last:
        size = first & -first if first else 1 << bits
        while size > last - first + 1:
            size >>= 1
        plen = bits - size.bit_length() + 1
        tokens.append(_address(fam, first) + ("" if plen == bits else f"/{plen}"))
        first += size
    return tokens


# ---------------------------------------------------------------------------------------- image


@dataclass
class TableImage:
    """What a table holds, normalised: comparable between a render and a kernel read-back."""

    head: list[str] = field(default_factory=list)
    sets: dict[str, list[str]] = field(default_factory=dict)
    elements: dict[str, list[str]] = field(default_factory=dict)  # sorted element tokens
    chains: dict[str, list[str]] = field(default_factory=dict)

    def skeleton(self) -> tuple[Any, ...]:
        chains = {k: v for k, v in self.chains.items() if k != VERSION_CHAIN}
        return (self.head, self.sets, chains)

    def digests(self) -> str:
        parts = [f"{c}={len(self.chains.get(c, [])) - 1}:{_digest(self.chains.get(c))}"
                 for c in CHAINS]
        others = sorted(c for c in self.chains if c not in (*CHAINS, VERSION_CHAIN))
        sets = [self.head, sorted(self.sets.items()), sorted(self.elements.items()), others]
        return " ".join([*parts, f"sets={_digest(sets)}"])


def _digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:8]


def _version_rule(version: str, image: TableImage) -> str:
    return f'\t\treturn comment "nodewall v={version} {image.digests()}"\n'


_ELEMENTS = re.compile(r"elements = \{(?P<body>[^}]*)\}", re.DOTALL)


def _normalise_line(line: str) -> str:
    line = " ".join(line.split())
    line = re.sub(r" counter packets \d+ bytes \d+", " counter", line)
    return line.replace("reject with icmpx port-unreachable", "reject")


def _denormalise(line: str) -> str:
    """A normalised rule line back to what `render` wrote (see `_normalise_line`)."""
    return re.sub(r"counter reject(?= comment|$)", "counter reject with icmpx port-unreachable",
                  line)


def _parse(text: str) -> TableImage:
    """Read a table in `nft list` form (a render, or the kernel's listing)."""
    image = TableImage()
    pending: dict[int, str] = {}

    def stash(match: re.Match[str]) -> str:
        pending[len(pending)] = match.group("body")
        return f"elements = @{len(pending) - 1}"

    text = _ELEMENTS.sub(stash, text)
    current: list[str] | None = None
    kind, name = "", ""
    for raw in text.splitlines():
        line = _normalise_line(raw)
        if not line or line.startswith("table ") or (line == "}" and current is None):
            continue
        header = re.match(r"^(set|chain) (\S+) \{$", line)
        if header and current is None:
            kind, name = header.group(1), header.group(2)
            current = []
        elif line == "}":
            assert current is not None
            (image.sets if kind == "set" else image.chains)[name] = current
            current = None
        elif current is None:
            image.head.append(line)
        elif kind == "set" and line.startswith("elements = @"):
            image.elements[name] = _element_list(pending[int(line.split("@")[1])])
        else:
            current.append(line)
    for set_name in image.sets:
        image.elements.setdefault(set_name, [])
    return image


def _element_list(body: str) -> list[str]:
    """The tokens of an `elements = { ... }` body, sorted. Tokens are compared as text: the
    kernel prints an element exactly as `render` writes it (the bench and the differential
    test check this on every apply, as the read-back would differ)."""
    return sorted(t.strip() for t in body.replace("\n", " ").split(",") if t.strip())


def describe_drift(want: TableImage, have: TableImage) -> list[str]:
    """What differs between two images, one line per object."""
    found = []
    for line in sorted(set(want.head) ^ set(have.head)):
        found.append(f"table: {'missing' if line in want.head else 'unexpected'} {line!r}")
    for kind, want_d, have_d in (("set", want.sets, have.sets), ("chain", want.chains,
                                                                     have.chains)):
        for name in sorted(set(want_d) | set(have_d)):
            if name not in have_d:
                found.append(f"{kind} {name}: missing")
            elif name not in want_d:
                found.append(f"{kind} {name}: extra (not made by nodewall)")
            elif want_d[name] != have_d[name]:
                extra = [r for r in have_d[name] if r not in want_d[name]]
                lost = [r for r in want_d[name] if r not in have_d[name]]
                detail = "; ".join([*(f"extra rule {r!r}" for r in extra[:3]),
                                    *(f"missing rule {r!r}" for r in lost[:3])])
                found.append(f"{kind} {name}: changed" + (f" ({detail})" if detail else ""))
    for name in sorted(set(want.elements) & set(have.elements)):
        if want.elements[name] != have.elements[name]:
            found.append(f"set {name}: elements differ "
                         f"({len(have.elements[name])} held, {len(want.elements[name])} meant)")
    return found


# -------------------------------------------------------------------------------------- backend


def _netns_id() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


class NftablesBackend:
    """The `Backend` for nftables, holding one libnftables handle (see the design note)."""

    name = "nftables"

    def __init__(self) -> None:
        self._nft: Any = None
        self._netns = -1
        self._lib: Any = None
        self._last: TableImage | None = None  # what the last apply verified in the kernel
        self._last_ns = -1

    # -- libnftables ------------------------------------------------------------------------
    def _handle(self) -> Any:
        if self._nft is None or self._netns != _netns_id():
            try:
                import nftables
            except (ImportError, OSError) as exc:
                raise BackendError(f"libnftables is not available: {exc}") from exc
            self._nft = nftables.Nftables()
            self._nft.set_stateless_output(True)
            self._lib = ctypes.CDLL("libnftables.so.1")
            self._lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
            self._lib.nft_run_cmd_from_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            self._lib.nft_run_cmd_from_filename.restype = ctypes.c_int
            self._netns = _netns_id()
        return self._nft

    def _run(self, text: str, *, what: str, check: bool = False) -> str:
        """Run one batch (one kernel transaction), or only check it (a dry run, in a context
        of its own: a dry run leaves libnftables' cache as if it had been committed). The
        batch is read from a file so that errors point at the right line."""
        nft = self._handle()
        if check:
            import nftables

            nft = nftables.Nftables()
        ctx = nft._Nftables__ctx
        with tempfile.NamedTemporaryFile("w", prefix="nodewall-", suffix=".nft",
                                         dir=_SCRATCH) as batch:
            batch.write(text)
            batch.flush()
            self._lib.nft_ctx_set_dry_run(ctx, check)
            rc = self._lib.nft_run_cmd_from_filename(ctx, batch.name.encode())
            output = nft.nft_ctx_get_output_buffer(ctx) or b""
            error = (nft.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
            error = error.replace(batch.name, "<batch>")
        if rc != 0:
            self._nft = None  # its cache may now disagree with the kernel
            raise BackendError(f"nftables {what} failed; the kernel keeps its previous "
                               f"ruleset:\n{_first_error(error)}")
        return str(output.decode(errors="replace"))

    def _read(self) -> TableImage | None:
        nft = self._handle()
        rc, output, error = nft.cmd(f"list table {FAMILY} {TABLE}")
        if rc != 0:
            if "No such file or directory" in error:
                return None
            raise BackendError(f"reading table {FAMILY} {TABLE} failed: {error.rstrip()}")
        return _parse(output)

    # -- Backend protocol -------------------------------------------------------------------
    def render(self, policy: NodePolicy) -> str:
        return render(policy)

    def check(self, policy: NodePolicy) -> None:
        """Parse and evaluate the full ruleset without committing (BackendError if bad)."""
        text = render(policy)
        self._run(f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n{text}",
                  what="check", check=True)

    def apply(self, policy: NodePolicy) -> ApplyResult:
        text, want = render_image(policy)
        # The image this object last verified stands in for the pre-read (it saves one listing
        # of every element); a stale one only costs a retry, since every commit is verified.
        cached = self._last if self._last_ns == _netns_id() else None
        self._last = None
        remembered = cached is not None and cached != want
        have = cached if remembered else self._read()
        if have == want:
            self._last, self._last_ns = want, _netns_id()
            return ApplyResult(self.name, policy.version, changed=False, incremental=False)
        incremental = have is not None and have.skeleton() == want.skeleton()
        if have is not None and _updatable(have, want):
            batch = _update(have, want)
        else:
            batch = f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n{text}"
        try:
            self._run(batch, what="apply")
        except BackendError:
            if remembered:
                return self.apply(policy)  # the kernel was not what we remembered
            raise
        got = self._read()
        if got != want:
            if remembered:
                return self.apply(policy)
            drift = describe_drift(want, got) if got else ["table missing after apply"]
            raise BackendError("nftables read-back differs from the rendered policy:\n"
                               + "\n".join(drift))
        self._last, self._last_ns = want, _netns_id()
        from nodewall.backends.conntrack import cut_refused_flows

        cut = 0 if incremental and _only_widens(have, want, policy) else cut_refused_flows(policy)
        return ApplyResult(self.name, policy.version, changed=True, incremental=incremental,
                           flows_cut=cut)

    def status(self) -> Status:
        have = self._read()
        if have is None:
            return Status(self.name, False, None, ("table inet nodewall is missing",))
        marker = have.chains.get(VERSION_CHAIN, [])
        match = _VERSION_RE.match(marker[0]) if len(marker) == 1 else None
        if match is None:
            return Status(self.name, True, None, ("version marker missing or edited",))
        drift = _digest_drift(match.group("digests"), have.digests())
        return Status(self.name, True, match.group("version"), tuple(drift))

    def remove(self) -> bool:
        self._last = None
        if self._read() is None:
            return False
        self._run(f"delete table {FAMILY} {TABLE}", what="remove")
        return True


def _first_error(error: str) -> str:
    """The first error of libnftables' report (the kernel answers every later command of an
    aborted batch with the same error), with its line and a count of the rest."""
    blocks = re.split(r"\n(?=\S[^\n]*Error: )|\n(?=Error: )", error.strip())
    rest = len(blocks) - 1
    return blocks[0] + (f"\n({rest} more error(s) follow from the same abort)" if rest else "")


def _digest_drift(recorded: str, actual: str) -> list[str]:
    want = dict(p.split("=", 1) for p in recorded.split())
    have = dict(p.split("=", 1) for p in actual.split())
    drift = []
    for chain in CHAINS:
        w, h = want.get(chain, "?:?"), have.get(chain, "?:?")
        if w != h:
            wn, hn = w.split(":")[0], h.split(":")[0]
            if hn == "-1":
                drift.append(f"chain {chain}: missing")
            elif wn != hn:
                drift.append(f"chain {chain}: {hn} rules held, {wn} applied "
                             f"({'extra' if int(hn) > int(wn) else 'missing'} rules)")
            else:
                drift.append(f"chain {chain}: rules changed")
    if want.get("sets") != have.get("sets"):
        drift.append("sets, set elements or extra chains changed")
    return drift


def _only_widens(have: TableImage | None, want: TableImage, policy: NodePolicy) -> bool:
    """True when the change only added elements to sets that only accept rules use: the new
    policy then admits every flow the old one did, and there is nothing to cut."""
    if have is None:
        return False
    grown = {n for n in want.elements if have.elements.get(n) != want.elements[n]}
    if any(not set(have.elements.get(n, ())) <= set(want.elements[n]) for n in grown):
        return False
    return all(r.action == "accept" for r in policy.rules
               if r.src_set in grown or r.dst_set in grown)


def _updatable(have: TableImage, want: TableImage) -> bool:
    """True when the table can be brought to `want` in place: same table lines, same base
    chain hooks. Then sets that stay are never recreated (see `_update`)."""
    if have.head != want.head:
        return False
    return all(have.chains.get(c, [""])[:1] == want.chains[c][:1] for c in CHAINS)


def _update(have: TableImage, want: TableImage) -> str:
    """One transaction from `have` to `want` that keeps every set whose type stays: its
    elements change in place. A set created and filled in the same transaction as the rules
    using it is, in some kernels, seen empty for an instant after the commit, so a rebuild
    could refuse a connection both policies allow (the no-blink test caught it)."""
    t = f"{FAMILY} {TABLE}"
    recreate = {n for n in want.sets if n in have.sets and have.sets[n] != want.sets[n]}
    dropped = {n for n in have.sets if n not in want.sets} | recreate
    created = {n for n in want.sets if n not in have.sets} | recreate
    chains = [c for c in want.chains if have.chains.get(c) != want.chains[c]
              or (dropped and c in have.chains)]
    lines = [f"flush chain {t} {c}" for c in chains if c in have.chains]
    for extra in sorted(set(have.chains) - set(want.chains)):
        lines += [f"flush chain {t} {extra}", f"delete chain {t} {extra}"]
    lines += [f"delete set {t} {n}" for n in sorted(dropped)]
    for name in sorted(created):
        lines.append(f"add set {t} {name} {{ {'; '.join(want.sets[name])}; }}")
    for name in sorted(want.elements):
        old = set() if name in created else set(have.elements[name])
        new = set(want.elements[name])
        gone, added = sorted(old - new), sorted(new - old)
        if gone:
            lines.append(f"delete element {t} {name} {{ {', '.join(gone)} }}")
        if added:
            lines.append(f"add element {t} {name} {{ {', '.join(added)} }}")
    for chain in chains:
        body = want.chains[chain]
        if chain not in have.chains:
            header = f" {{ {body[0]} }}" if body and body[0].startswith("type ") else ""
            lines.append(f"add chain {t} {chain}{header}")
        lines += [f"add rule {t} {chain} {_denormalise(r)}" for r in body
                  if not r.startswith("type ")]
    return "".join(line + "\n" for line in lines)
