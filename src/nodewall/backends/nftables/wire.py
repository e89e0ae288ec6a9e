"""A `NodePolicy` as nf_tables netlink messages, and the kernel's table as a comparable image.

What `nodewall.backends.nftables.render` writes as text, this module writes as the messages `nft -f`
would send for that text (the same table, sets, elements, chains, rule bytecode and comments;
each rule line made once, by `nftsteps`, and written both ways: `render.line_text`,
`expr.line_parts`),
so that `nft list table inet nodewall` prints the rendered text back; a kernel test holds the
two to that. The nftables backend sends these messages with `nodewall.backends.nftables.nfnetlink`,
skipping libnftables' parser and set cache (docs/benchmarks.md).

An `Image` is what a table holds, normalised so that the one built from a policy (`build`) and
the one read from the kernel (`read_image`) compare equal exactly when the kernel holds the
policy: set headers, each set's elements (the element attributes as the kernel dumps them),
chain headers, and each chain's rules (expression bytes as the kernel dumps them, counter
values left out, an anonymous set named by its contents), and any stateful objects or
flowtables (nodewall makes none). Expressions are encoded in the kernel's own dump layout for
that reason. `read_image` reads table `inet nodewall` and nothing of any other table
(`nftdump` filters every dump).

A set's elements are `nftsets.Elements`; `build` given the image last applied changes only the
sets whose networks changed, locally, and records the element deltas to send.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from nodewall.backends import netlink
from nodewall.backends.netlink import attr, string, u32
from nodewall.backends.nftables import dump as nftdump
from nodewall.backends.nftables import nfnetlink as nl
from nodewall.backends.nftables.expr import (
    ADDR,
    ANON,
    ANON_BY_TYPE,
    Anon,
    Part,
    expr,
    line_parts,
    line_udata,
)
from nodewall.backends.nftables.nfnetlink import Message
from nodewall.backends.nftables.render import CHAINS, TABLE, VERSION_CHAIN, line_text
from nodewall.backends.nftables.sets import (
    KEY_SIZE,
    Change,
    Delta,
    Elements,
    element,
    element_sizes,
    unit_delta,
)
from nodewall.backends.nftables.steps import Line, rule_steps, version_line
from nodewall.backends.rejects import kernel_rules
from nodewall.policy.model import NodePolicy, Rule

NFPROTO_INET = nftdump.NFPROTO_INET
TABLE_COMMENT = "managed by nodewall: do not edit"
_HOOKS = {"input": 1, "output": 3}  # NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT
_SET_UDATA = bytes.fromhex("000402000000")  # key byte order: big endian
_SET_INTERVAL, _SET_ANONYMOUS_CONSTANT = 0x4, 0x3
_NLM_F_APPEND = 0x800
_CHUNK_BYTES = 60000  # elements per message: an attribute holds at most 64 KiB

# ------------------------------------------------------------------------------------ image


RuleImage = tuple[tuple[tuple[str, bytes], ...], bytes]  # (expressions, comment userdata)


@dataclass(frozen=True)
class RuleLine:
    """One nft rule line: its expressions, its comment as userdata, and its text."""

    parts: list[Part]
    udata: bytes
    text: str


@dataclass
class Image:
    """A table, normalised (see the module docstring)."""

    comment: bytes = b""
    sets: dict[str, tuple[int, int, int, bytes]] = field(default_factory=dict)
    elements: dict[str, Elements] = field(default_factory=dict)
    chains: dict[str, tuple[int, ...]] = field(default_factory=dict)
    rules: dict[str, list[RuleImage]] = field(default_factory=dict)
    extras: tuple[str, ...] = ()  # stateful objects and flowtables (nodewall makes none)
    # what `build` made the base chains from, kept for the next build (not compared)
    source: tuple[Rule, ...] | None = field(default=None, compare=False)
    lines: dict[str, list[RuleLine]] = field(default_factory=dict, compare=False)
    chain_digests: list[str] = field(default_factory=list, compare=False)

    def skeleton(self) -> tuple[object, ...]:
        rules = {k: v for k, v in self.rules.items() if k != VERSION_CHAIN}
        return self.comment, self.sets, self.chains, rules, self.extras

    def digests(self) -> str:
        """What the version rule records of the table: rule count and digest per base chain,
        one digest of the rest."""
        parts = self.chain_digests or [
            f"{c}={len(self.rules.get(c, [])) if c in self.chains else -1}:"
            f"{_digest(self.rules.get(c))}" for c in CHAINS]
        rest = [self.comment, sorted(self.sets.items()),
                sorted((k, len(v), v.digest) for k, v in self.elements.items()),
                sorted(c for c in self.chains if c not in (*CHAINS, VERSION_CHAIN))]
        if self.extras:  # only then: the digest of a table without any stays as it was
            rest.append(self.extras)
        return " ".join([*parts, f"sets={_digest(rest)}"])


def _digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:8]


@dataclass
class Plan:
    """A policy in wire form: its image, and per rule line the parts to send."""

    image: Image
    rule_parts: dict[str, list[RuleLine]]  # chain -> its rule lines, in order
    deltas: dict[str, Delta] | None = None  # when built from the last image: what changed


def build(policy: NodePolicy, last: Image | None = None) -> Plan:
    """The plan and image of `policy`. Given `last`, the image last applied (and built by this
    function), sets whose networks are unchanged are shared with it; when every other set can
    be changed locally (a few networks each), they are, taking over `last`'s lists (`last`
    must not be used afterwards), and the plan records their element deltas. Otherwise the
    changed sets are built whole and the update is worked out by comparison."""
    image = Image(comment=bytes([0, len(TABLE_COMMENT) + 1]) + TABLE_COMMENT.encode() + b"\0")
    local: dict[str, Change] = {}  # set -> its local change, when every change is local
    rebuild = last is None
    for s in policy.sets:
        dtype, size = ADDR[s.family]
        header = (0 if s.hosts_only else _SET_INTERVAL, dtype, size, _SET_UDATA)
        image.sets[s.name] = header
        before = last.elements.get(s.name) if last is not None else None
        if before is None or last is None or last.sets.get(s.name) != header:
            rebuild = True
        elif before.networks == s.networks:
            image.elements[s.name] = before  # unchanged: shared
        elif not rebuild:
            change = before.change(s.networks)
            if change is None:
                rebuild = True
            else:
                local[s.name] = change
    deltas: dict[str, Delta] | None = None
    if not rebuild and last is not None:
        deltas = {}
        for name, change in local.items():
            image.elements[name], deltas[name] = last.elements[name].take(change)
    for s in policy.sets:
        if s.name not in image.elements:
            image.elements[s.name] = Elements.build(s.family, s.hosts_only, s.networks)
    if last is not None and last.source == policy.rules:  # the same rules: reuse their form
        image.chains.update({c: last.chains[c] for c in CHAINS})
        image.rules.update({c: last.rules[c] for c in CHAINS})
        image.lines, image.chain_digests = last.lines, last.chain_digests
    else:
        for chain in CHAINS:
            image.chains[chain] = (_HOOKS[chain], 0, 1)
            lines: list[RuleLine] = []
            direction = "in" if chain == "input" else "out"
            for rule in kernel_rules(policy, direction):  # type: ignore[arg-type]
                lines += map(rule_line, rule_steps(rule))
            image.lines[chain] = lines
            image.rules[chain] = [_rule_image(line.parts, line.udata) for line in lines]
        image.chain_digests = Image(chains=image.chains, rules=image.rules).digests().split()[:2]
    image.source = policy.rules
    plan_rules = dict(image.lines)
    image.chains[VERSION_CHAIN] = ()
    marker = version_text(policy.version, image)
    version_rule = rule_line(version_line(marker))
    plan_rules[VERSION_CHAIN] = [version_rule]
    image.rules[VERSION_CHAIN] = [_rule_image(version_rule.parts, version_rule.udata)]
    return Plan(image, plan_rules, deltas)


def version_text(version: str, image: Image) -> str:
    return f"nodewall v={version} {image.digests()}"


def rule_line(line: Line) -> RuleLine:
    """A rule line of `nftsteps` in both its forms: bytecode and comment, and text."""
    return RuleLine(line_parts(line), line_udata(line), line_text(line))


def _rule_image(parts: Sequence[Part], udata: bytes) -> RuleImage:
    return tuple(p.marker() if isinstance(p, Anon) else _normal(*p) for p in parts), udata


def _normal(name: str, data: bytes) -> tuple[str, bytes]:
    return (name, b"") if name == "counter" else (name, data)


def version_comment_of(image: Image) -> str | None:
    rules = image.rules.get(VERSION_CHAIN, [])
    if len(rules) != 1:
        return None
    udata = rules[0][1]
    return udata[2:2 + udata[1] - 1].decode(errors="replace") if len(udata) > 2 else None


# -------------------------------------------------------------------------------- messages


def _t(name: str = TABLE) -> bytes:
    return string(1, name)


def table_messages(replace: bool) -> list[Message]:
    """`add table; delete table; table inet nodewall { comment ... }` (replace), or only the
    last part."""
    body = _t() + u32(2, 0) + attr(6, bytes([0, len(TABLE_COMMENT) + 1])
                                   + TABLE_COMMENT.encode() + b"\0")
    out = []
    if replace:
        out += [Message(nl.NEWTABLE, NFPROTO_INET, _t(), "add table"),
                Message(nl.DELTABLE, NFPROTO_INET, _t(), "delete table", flags=0)]
    return [*out, Message(nl.NEWTABLE, NFPROTO_INET, body, "create table")]


def chain_message(name: str, header: tuple[int, ...]) -> Message:
    body = _t() + string(3, name)
    if header:
        hook, prio, policy = header
        body += attr(4, u32(1, hook) + u32(2, prio & 0xFFFFFFFF)) + u32(5, policy)
        body += string(7, "filter")
    return Message(nl.NEWCHAIN, NFPROTO_INET, body, f"add chain {name}")


def set_message(name: str, header: tuple[int, int, int, bytes], set_id: int) -> Message:
    flags, dtype, size, udata = header
    body = (_t() + string(2, name) + u32(3, flags) + u32(4, dtype) + u32(5, size)
            + u32(10, set_id) + attr(13, udata))
    return Message(nl.NEWSET, NFPROTO_INET, body, f"add set {name}")


def element_messages(name: str, elements: Sequence[bytes], *, delete: bool = False,
                     set_id: int | None = None) -> list[Message]:
    """Elements (whole list items, see `nftsets`) added to or deleted from a set, as many
    messages as the 64 KiB attribute limit needs."""
    kind, verb = (nl.DELSETELEM, "delete") if delete else (nl.NEWSETELEM, "add")
    head = _t() + string(2, name) + (u32(4, set_id) if set_id is not None else b"")
    step = _CHUNK_BYTES // max(map(len, elements), default=1)
    return [Message(kind, NFPROTO_INET, head + attr(3, b"".join(elements[i:i + step])),
                    f"{verb} {len(elements[i:i + step])} element(s) of set {name}",
                    flags=0 if delete else netlink.NLM_F_CREATE)
            for i in range(0, len(elements), step)]


class _Ids:
    def __init__(self) -> None:
        self.next = 0

    def __call__(self) -> int:
        self.next += 1
        return self.next


def rule_messages(chain: str, lines: Sequence[RuleLine], ids: _Ids) -> list[Message]:
    """Each rule line appended to `chain`, its anonymous sets created just before it."""
    out = []
    for number, line in enumerate(lines, 1):
        exprs = []
        for part in line.parts:
            if isinstance(part, Anon):
                set_id = ids()
                dtype, size, set_udata = ANON[part.kind]
                body = (_t() + string(2, "__set%d") + u32(3, _SET_ANONYMOUS_CONSTANT)
                        + u32(4, dtype) + u32(5, size) + attr(9, u32(1, len(part.keys)))
                        + u32(10, set_id) + attr(13, set_udata))
                out.append(Message(nl.NEWSET, NFPROTO_INET, body,
                                   f"add anonymous set for rule {number} of chain {chain}"))
                out += element_messages("__set%d", [element(k) for k in part.keys],
                                        set_id=set_id)
                name, data = expr("lookup", string(1, "__set%d"), u32(2, 1),
                                   u32(4, set_id), u32(5, 0))
            else:
                name, data = part
            exprs.append(attr(1, string(1, name) + attr(2, data)))
        body = _t() + string(2, chain) + attr(4, b"".join(exprs))
        if line.udata:
            body += attr(7, line.udata)
        out.append(Message(nl.NEWRULE, NFPROTO_INET, body, f"rule {number} of chain {chain}: "
                           f"{line.text}", flags=netlink.NLM_F_CREATE | _NLM_F_APPEND))
    return out


def flush_chain(chain: str) -> Message:
    return Message(nl.DELRULE, NFPROTO_INET, _t() + string(2, chain), f"flush chain {chain}",
                   flags=0)


def full_batch(plan: Plan) -> list[Message]:
    """One transaction that replaces the table with `plan`."""
    batch = table_messages(replace=True)
    ids = _Ids()
    for name, set_header in plan.image.sets.items():
        batch.append(set_message(name, set_header, ids()))
        batch += element_messages(name, plan.image.elements[name].ordered())
    for chain, header in plan.image.chains.items():
        batch.append(chain_message(chain, header))
    for chain, lines in plan.rule_parts.items():
        batch += rule_messages(chain, lines, ids)
    return batch


def update_batch(have: Image, plan: Plan) -> list[Message]:
    """One transaction from `have` to `plan` in place: sets whose header stays keep their
    elements and change by deltas (a set recreated in the transaction that refills the rules
    using it can be seen empty for an instant after the commit); changed chains are flushed
    and refilled; the version rule is replaced."""
    want = plan.image
    ids = _Ids()
    recreate = {n for n in want.sets if n in have.sets and have.sets[n] != want.sets[n]}
    dropped = {n for n in have.sets if n not in want.sets} | recreate
    created = {n for n in want.sets if n not in have.sets} | recreate
    chains = [c for c in want.chains if have.rules.get(c) != want.rules[c]
              or c not in have.chains or (dropped and c in have.chains)]
    batch = [flush_chain(c) for c in chains if c in have.chains]
    for extra in sorted(set(have.chains) - set(want.chains)):
        batch += [flush_chain(extra), Message(nl.DELCHAIN, NFPROTO_INET,
                                              _t() + string(3, extra), f"delete chain {extra}",
                                              flags=0)]
    batch += [Message(nl.DELSET, NFPROTO_INET, _t() + string(2, n), f"delete set {n}",
                      flags=0) for n in sorted(dropped)]
    for name in sorted(created):
        batch.append(set_message(name, want.sets[name], ids()))
    for name in sorted(want.elements):
        if name in created:
            batch += element_messages(name, want.elements[name].ordered())
            continue
        delta = plan.deltas.get(name) if plan.deltas is not None else None
        if delta is None:
            old, new = have.elements[name], want.elements[name]
            if old is new or old == new:
                continue
            delta = unit_delta(KEY_SIZE[new.family], old.units(), new.units())
        if delta.removed:
            batch += element_messages(name, delta.removed, delete=True)
        if delta.added:
            batch += element_messages(name, delta.added)
    for chain in chains:
        if chain not in have.chains:
            batch.append(chain_message(chain, want.chains[chain]))
        batch += rule_messages(chain, plan.rule_parts[chain], ids)
    return batch


# ------------------------------------------------------------------------------- read-back


def read_image(sock: nl.NfSocket) -> Image | None:
    """The kernel's `inet nodewall` table as an image; None when there is none. Only objects
    of that table are read, whatever else the kernel holds (see `nftdump`)."""
    table = nftdump.one(sock, nl.GETTABLE, b"")
    if table is None:
        return None
    image = Image(comment=table.get(6, b""), extras=nftdump.extras(sock))
    anon: dict[str, Anon] = {}
    for a in nftdump.ours(sock, nl.GETSET):
        name = netlink.text(a[2])
        set_header = (netlink.be32(a[3]) if 3 in a else 0, netlink.be32(a[4]), netlink.be32(a[5]),
                      a.get(13, b""))
        dumped = read_elements(sock, name)
        if name.startswith("__set"):
            kind = ANON_BY_TYPE.get((set_header[1], set_header[3]), f"?{set_header[1]}")
            keys = netlink.split_attrs(dumped, element_sizes(netlink.be32(a[5])))
            anon[name] = Anon(kind, tuple(_key(e) for e in keys))
        else:
            image.sets[name] = set_header
            family = 6 if set_header[2] == 16 else 4
            image.elements[name] = Elements.from_dump(family,
                                                      not set_header[0] & _SET_INTERVAL, dumped)
    for a in nftdump.ours(sock, nl.GETCHAIN):
        image.chains[netlink.text(a[3])] = _chain_header(a)
        image.rules[netlink.text(a[3])] = []
    for chain, rule in read_rules(sock, anon):
        if chain not in image.chains:  # skipped by a chain dump resumed after another commit
            found = nftdump.one(sock, nl.GETCHAIN, string(3, chain))
            if found is not None:
                image.chains[chain] = _chain_header(found)
        image.rules.setdefault(chain, []).append(rule)
    return image


def _chain_header(a: dict[int, bytes]) -> tuple[int, ...]:
    """A dumped chain's (hook, priority, policy), or () for a regular chain."""
    if 4 not in a:
        return ()
    hook = netlink.parse_attrs(a[4])
    prio = int.from_bytes(hook[2][:4], "big", signed=True)
    return netlink.be32(hook[1]), prio, netlink.be32(a[5]) if 5 in a else 1


def read_rules(sock: nl.NfSocket, anon: dict[str, Anon] | None = None, chain: str | None = None
               ) -> list[tuple[str, RuleImage]]:
    """(chain, rule) of each rule of nodewall's table (of `chain` only, when given), in order;
    lookups of the anonymous sets in `anon` as their markers."""
    extra = string(2, chain) if chain is not None else b""
    out = []
    for a in nftdump.ours(sock, nl.GETRULE, extra):
        exprs = []
        for _, item in netlink.iter_attrs(a.get(4, b"")):
            e = netlink.parse_attrs(item)
            name, data = netlink.text(e[1]), e.get(2, b"")
            if name == "lookup" and anon:
                target = netlink.text(netlink.parse_attrs(data).get(1, b""))
                if target in anon:
                    exprs.append(anon[target].marker())
                    continue
            exprs.append(_normal(name, data))
        held = netlink.text(a.get(2, b""))
        if chain is None or held == chain:
            out.append((held, (tuple(exprs), a.get(7, b""))))
    return out


def read_elements(sock: nl.NfSocket, name: str) -> bytes:
    """A set's elements as the kernel dumps them: whole list items (see `nftsets`), back to
    back, in the kernel's order."""
    parts = []
    for a in nftdump.ours(sock, nl.GETSETELEM, string(2, name)):
        listed = a.get(3)
        if listed and netlink.text(a.get(2, b"")) == name:
            parts.append(listed)
    return b"".join(parts)


def _key(elem: bytes) -> bytes:
    key = netlink.parse_attrs(elem, 4).get(1, b"")
    return netlink.parse_attrs(key).get(1, b"")


def describe_drift(want: Image, have: Image) -> list[str]:
    """What differs between two images, one line per object."""
    found = []
    if want.comment != have.comment:
        found.append("table: comment changed")
    found += [f"{extra}: extra (not made by nodewall)" for extra in have.extras
              if extra not in want.extras]
    for kind, want_d, have_d in (("set", want.sets, have.sets),
                                 ("chain", want.chains, have.chains)):
        for name in sorted(set(want_d) | set(have_d)):
            if name not in have_d:
                found.append(f"{kind} {name}: missing")
            elif name not in want_d:
                found.append(f"{kind} {name}: extra (not made by nodewall)")
            elif want_d[name] != have_d[name]:
                found.append(f"{kind} {name}: type, flags or hook changed")
    for name in sorted(set(want.rules) & set(have.rules)):
        w, h = want.rules[name], have.rules[name]
        if w != h:
            extra = sum(1 for r in h if r not in w)
            lost = sum(1 for r in w if r not in h)
            found.append(f"chain {name}: rules changed ({len(h)} held, {len(w)} meant; "
                         f"{extra} extra, {lost} missing)")
    for name in sorted(set(want.elements) & set(have.elements)):
        if want.elements[name] != have.elements[name]:
            found.append(f"set {name}: elements differ ({len(have.elements[name])} held, "
                         f"{len(want.elements[name])} meant)")
    return found

