"""A packet tracer over nf_tables batches, without a kernel: what the kernel would do with one
packet, given the netlink messages nodewall sends (as kube-proxy's `helpers_test.go` traces the
iptables ruleset it writes).

`Ruleset` takes the messages of a batch the way the kernel's transaction does (tables, sets and
their elements, anonymous sets bound by id, chains, rules appended, chains flushed, sets and
chains deleted), so that a full batch and an in-place update after it can both be traced.
`Ruleset.trace` walks the base chains of the packet's hook, expression by expression, over the
registers, as `nft_do_chain` does: meta, payload and ct loads, cmp, bitwise, lookup (interval
sets as half-open ranges between a start key and the next end key), immediate verdicts, jump,
goto and return, counter, limit (never reached, as the reference evaluator assumes) and reject
(a TCP reset answers TCP only: for any other packet it is a silent drop). Anything else is an
error: a tracer that skipped what it does not know would pass a broken ruleset.

Everything here is written from the kernel's headers (linux/netfilter/nf_tables.h) and the
packet formats, not from nodewall's encoders: only the message container is shared.
"""

from __future__ import annotations

import bisect
import ipaddress
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from nodewall.policy.evaluator import Packet

# nf_tables message types, hooks, verdicts
NEWTABLE, DELTABLE, NEWCHAIN, DELCHAIN, NEWRULE, DELRULE = 0, 2, 3, 5, 6, 8
NEWSET, DELSET, NEWSETELEM, DELSETELEM = 9, 11, 12, 14
NFPROTO_INET = 1
HOOK_LOCAL_IN, HOOK_LOCAL_OUT = 1, 3
NF_DROP, NF_ACCEPT = 0, 1
NFT_CONTINUE, NFT_BREAK, NFT_JUMP, NFT_GOTO, NFT_RETURN = -1, -2, -3, -4, -5
SET_INTERVAL = 0x4
ELEM_INTERVAL_END = 0x1
LOOKUP_INVERT = 0x1
META = {"iifname": 6, "oifname": 7, "skuid": 10, "nfproto": 15, "l4proto": 16}
CT_STATE = 0
CT_BITS = {"invalid": 1, "established": 2, "related": 4, "new": 8}
PAYLOAD_NETWORK, PAYLOAD_TRANSPORT = 1, 2
CMP = {0: "eq", 1: "neq", 2: "lt", 3: "lte", 4: "gt", 5: "gte"}
REJECT_ICMP, REJECT_TCP_RST, REJECT_ICMPX = 0, 1, 2
ICMPX_CODES = {0: "no-route", 1: "port-unreachable", 2: "host-unreachable",
               3: "admin-prohibited"}
IPPROTO = {"tcp": 6, "udp": 17, "esp": 50}
ICMP_CODES = {4: {"destination-unreachable": 3, "echo-request": 8, "echo-reply": 0,
                  "time-exceeded": 11, "parameter-problem": 12},
              6: {"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
                  "parameter-problem": 4, "echo-request": 128, "echo-reply": 129,
                  "nd-router-solicit": 133, "nd-router-advert": 134,
                  "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136}}
_ATTR = struct.Struct("=HH")


class MessageLike(Protocol):
    @property
    def kind(self) -> int: ...
    @property
    def family(self) -> int: ...
    @property
    def body(self) -> bytes: ...


def attrs(data: bytes) -> dict[int, bytes]:
    """Netlink attributes by type (flags cleared, the last of a type wins)."""
    return dict(attr_list(data))


def attr_list(data: bytes) -> list[tuple[int, bytes]]:
    out, offset = [], 0
    while offset + 4 <= len(data):
        size, kind = _ATTR.unpack_from(data, offset)
        if size < 4 or offset + size > len(data):
            raise ValueError(f"broken attribute at {offset}: size {size}")
        out.append((kind & 0x3FFF, data[offset + 4:offset + size]))
        offset += (size + 3) & ~3
    return out


def _be32(value: bytes) -> int:
    return int.from_bytes(value[:4], "big")


def _name(value: bytes) -> str:
    return value.rstrip(b"\0").decode()


def _value(data: bytes) -> bytes:
    """The value inside NFTA_DATA_VALUE."""
    return attrs(data)[1]


@dataclass
class Set:
    name: str
    key_len: int
    interval: bool
    elements: set[tuple[bytes, bool]] = field(default_factory=set)  # (key, interval end)
    _order: list[tuple[bytes, int]] | None = None

    def change(self, add: Iterable[tuple[bytes, bool]] = (),
               remove: Iterable[tuple[bytes, bool]] = ()) -> None:
        for element in remove:
            if element not in self.elements:
                raise ValueError(f"no element {element[0].hex()} in set {self.name}")
            self.elements.remove(element)
        for element in add:
            if element[1] and not self.interval:
                raise ValueError(f"interval end in set {self.name}, not an interval set")
            self.elements.add(element)  # already there: kept (no NLM_F_EXCL)
        self._order = None

    def holds(self, key: bytes) -> bool:
        if not self.interval:
            return (key, False) in self.elements
        # the element with the greatest key not above `key` decides: a start includes, an end
        # (the first address after a range) excludes; at one key a start wins over an end
        if self._order is None:
            self._order = sorted((k, 0 if end else 1) for k, end in self.elements)
        i = bisect.bisect_right(self._order, (key, 2)) - 1
        return i >= 0 and self._order[i][1] == 1


@dataclass
class Expr:
    name: str
    data: dict[int, bytes]
    target: Set | None = None  # a lookup's set, bound when the rule is added


@dataclass
class TracedRule:
    exprs: list[Expr]
    comment: str


@dataclass
class Chain:
    name: str
    hook: int | None
    priority: int
    policy: int
    rules: list[TracedRule] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """What the ruleset did with a packet: "accept", "drop" or "reject" (with the answer
    sent), and the rule that decided (chain, index, comment), or the chain policy."""

    verdict: str
    reject_with: str | None
    chain: str
    index: int | None
    comment: str


@dataclass
class Ruleset:
    sets: dict[str, Set] = field(default_factory=dict)
    set_ids: dict[int, Set] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)
    anon_count: int = 0

    @classmethod
    def of(cls, batch: Iterable[MessageLike]) -> Ruleset:
        ruleset = cls()
        ruleset.apply(batch)
        return ruleset

    # ------------------------------------------------------------------------ transaction

    def apply(self, batch: Iterable[MessageLike]) -> None:
        for message in batch:
            if message.family != NFPROTO_INET:
                raise ValueError(f"message of family {message.family}, not inet")
            a = attrs(message.body)
            if _name(a.get(1, b"")) != "nodewall":
                raise ValueError(f"message for table {a.get(1)!r}")
            handler = {NEWTABLE: self._noop, DELTABLE: self._del_table,
                       NEWSET: self._new_set, DELSET: self._del_set,
                       NEWSETELEM: self._new_elements, DELSETELEM: self._del_elements,
                       NEWCHAIN: self._new_chain, DELCHAIN: self._del_chain,
                       NEWRULE: self._new_rule, DELRULE: self._del_rules}.get(message.kind)
            if handler is None:
                raise ValueError(f"message type {message.kind} not traced")
            handler(a)

    def _noop(self, a: dict[int, bytes]) -> None:
        pass

    def _del_table(self, a: dict[int, bytes]) -> None:
        self.sets.clear()
        self.set_ids.clear()
        self.chains.clear()

    def _set(self, name: str, set_id: bytes | None) -> Set:
        if "%" not in name and name in self.sets:
            return self.sets[name]
        if set_id is not None and _be32(set_id) in self.set_ids:
            return self.set_ids[_be32(set_id)]
        raise ValueError(f"no set {name!r}")

    def _new_set(self, a: dict[int, bytes]) -> None:
        name = _name(a[2])
        flags = _be32(a[3]) if 3 in a else 0
        if "%" in name:
            self.anon_count += 1
            name = name.replace("%d", str(self.anon_count))
        made = Set(name, _be32(a[5]), bool(flags & SET_INTERVAL))
        if name in self.sets:
            raise ValueError(f"set {name} exists")
        self.sets[name] = made
        if 10 in a:
            self.set_ids[_be32(a[10])] = made

    def _del_set(self, a: dict[int, bytes]) -> None:
        del self.sets[_name(a[2])]

    def _elements(self, a: dict[int, bytes]) -> tuple[Set, list[tuple[bytes, bool]]]:
        target = self._set(_name(a[2]), a.get(4))
        out = []
        for _, item in attr_list(a.get(3, b"")):
            e = attrs(item)
            key = _value(e[1])
            if len(key) != target.key_len:
                raise ValueError(f"key of {len(key)} bytes in set {target.name}")
            out.append((key, bool(_be32(e[3]) & ELEM_INTERVAL_END) if 3 in e else False))
        return target, out

    def _new_elements(self, a: dict[int, bytes]) -> None:
        target, elements = self._elements(a)
        target.change(add=elements)

    def _del_elements(self, a: dict[int, bytes]) -> None:
        target, elements = self._elements(a)
        target.change(remove=elements)

    def _new_chain(self, a: dict[int, bytes]) -> None:
        name = _name(a[3])
        hook, priority = None, 0
        if 4 in a:
            h = attrs(a[4])
            hook, priority = _be32(h[1]), int.from_bytes(h[2][:4], "big", signed=True)
        policy = _be32(a[5]) if 5 in a else NF_ACCEPT
        if name not in self.chains:
            self.chains[name] = Chain(name, hook, priority, policy)

    def _del_chain(self, a: dict[int, bytes]) -> None:
        name = _name(a[3])
        if self.chains[name].rules:
            raise ValueError(f"chain {name} is not empty")
        del self.chains[name]

    def _new_rule(self, a: dict[int, bytes]) -> None:
        chain = self.chains[_name(a[2])]
        exprs = []
        for _, item in attr_list(a.get(4, b"")):
            e = attrs(item)
            data = attrs(e.get(2, b""))
            made = Expr(_name(e[1]), data)
            if made.name == "lookup":
                made.target = self._set(_name(data[1]), data.get(4))
            exprs.append(made)
        udata = a.get(7, b"")
        text = _name(udata[2:2 + udata[1]]) if len(udata) > 2 and udata[0] == 0 else ""
        chain.rules.append(TracedRule(exprs, text))

    def _del_rules(self, a: dict[int, bytes]) -> None:
        if 3 in a:
            raise ValueError("deleting one rule by handle is not traced")
        self.chains[_name(a[2])].rules.clear()

    # ----------------------------------------------------------------------------- tracing

    def trace(self, packet: Packet) -> Outcome:
        """What the base chains of the packet's hook do with it, in priority order."""
        pkt = _Wire.of(packet)
        hook = HOOK_LOCAL_IN if packet.direction == "in" else HOOK_LOCAL_OUT
        bases = sorted((c for c in self.chains.values() if c.hook == hook),
                       key=lambda c: c.priority)
        if not bases:
            raise ValueError(f"no base chain at hook {hook}")
        outcome = None
        for base in bases:
            outcome = self._run(base, pkt)
            if outcome.verdict != "accept":
                return outcome
        assert outcome is not None
        return outcome

    def _run(self, base: Chain, pkt: _Wire) -> Outcome:
        stack: list[tuple[Chain, int]] = []
        chain, index = base, 0
        for _ in range(100000):  # a loop of jumps is refused by the kernel; here: an error
            if index >= len(chain.rules):
                if not stack:  # the end of the base chain, or of a chain gone to
                    return Outcome(_VERDICT_NAMES[base.policy], None, base.name, None,
                                   "chain policy")
                chain, index = stack.pop()
                continue
            rule = chain.rules[index]
            code, target, reject = _eval_rule(rule, pkt)
            if code in (NFT_CONTINUE, NFT_BREAK):
                index += 1
            elif code == NFT_JUMP:
                stack.append((chain, index + 1))
                chain, index = self.chains[target], 0
            elif code == NFT_GOTO:
                chain, index = self.chains[target], 0
            elif code == NFT_RETURN:
                if not stack:
                    return Outcome(_VERDICT_NAMES[base.policy], None, base.name, None,
                                   "chain policy")
                chain, index = stack.pop()
            elif reject is not None:
                verdict = "drop" if reject == "tcp reset" and pkt.l4proto != 6 else "reject"
                return Outcome(verdict, reject, chain.name, index, rule.comment)
            else:
                return Outcome(_VERDICT_NAMES[code], None, chain.name, index, rule.comment)
        raise ValueError("jump loop")


_VERDICT_NAMES = {NF_ACCEPT: "accept", NF_DROP: "drop"}


@dataclass
class _Wire:
    """A packet as the tracer reads it: headers as bytes, and the metadata of the hook."""

    nfproto: int
    l4proto: int
    network: bytes
    transport: bytes
    iifname: bytes
    oifname: bytes
    skuid: int | None
    ct_state: int

    @classmethod
    def of(cls, p: Packet) -> _Wire:
        src, dst = ipaddress.ip_address(p.src), ipaddress.ip_address(p.dst)
        if p.protocol == "icmp":
            if p.icmp_type is None:
                raise ValueError("an ICMP packet needs its type")
            l4 = 1 if src.version == 4 else 58
            transport = bytes([ICMP_CODES[src.version][p.icmp_type], 0]) + bytes(6)
        elif p.protocol == "esp":
            l4, transport = IPPROTO["esp"], bytes(8)
        else:
            if p.dport is None:
                raise ValueError("a TCP or UDP packet needs its port")
            l4 = IPPROTO[p.protocol]
            ports = struct.pack("!HH", 40000, p.dport)
            transport = ports + bytes(16 if p.protocol == "tcp" else 4)
        if src.version == 4:
            network = (bytes([0x45, 0]) + struct.pack("!H", 20 + len(transport)) + bytes(5)
                       + bytes([l4]) + bytes(2) + src.packed + dst.packed)
        else:
            network = (bytes([0x60, 0, 0, 0]) + struct.pack("!H", len(transport))
                       + bytes([l4, 64]) + src.packed + dst.packed)
        device = (b"lo" if p.interface == "loopback" else b"eth0").ljust(16, b"\0")
        incoming = p.direction == "in"
        return cls(2 if src.version == 4 else 10, l4, network, transport,
                   device if incoming else bytes(16), bytes(16) if incoming else device,
                   None if incoming else p.uid, CT_BITS[p.ct_state])


_REG_BYTES = 4 * 20  # the verdict register (4 words), then 16 words of data


def _reg(value: bytes) -> int:
    """Byte offset of a register: NFT_REG_1..4 are 16 bytes each, NFT_REG32_00.. 4 each."""
    reg = _be32(value)
    if 1 <= reg <= 4:
        return reg * 16
    if 8 <= reg <= 23:
        return 16 + (reg - 8) * 4
    raise ValueError(f"register {reg}")


def _store(regs: bytearray, offset: int, value: bytes) -> None:
    words = (len(value) + 3) // 4 * 4
    if offset + words > _REG_BYTES:
        raise ValueError("register overflow")
    regs[offset:offset + words] = value.ljust(words, b"\0")


def _eval_rule(rule: TracedRule, pkt: _Wire) -> tuple[int, str, str | None]:
    """(verdict code, jump target, reject answer) of one rule for the packet."""
    regs = bytearray(_REG_BYTES)
    for e in rule.exprs:
        d = e.data
        if e.name == "meta":
            if 3 in d:
                raise ValueError("meta set not traced")
            key = _be32(d[2])
            if key == META["nfproto"]:
                value = bytes([pkt.nfproto])
            elif key == META["l4proto"]:
                value = bytes([pkt.l4proto])
            elif key == META["iifname"]:
                value = pkt.iifname
            elif key == META["oifname"]:
                value = pkt.oifname
            elif key == META["skuid"]:
                if pkt.skuid is None:
                    return NFT_BREAK, "", None  # no socket: the rule cannot match
                value = pkt.skuid.to_bytes(4, sys.byteorder)
            else:
                raise ValueError(f"meta key {key} not traced")
            _store(regs, _reg(d[1]), value)
        elif e.name == "payload":
            base, offset, length = _be32(d[2]), _be32(d[3]), _be32(d[4])
            header = {PAYLOAD_NETWORK: pkt.network, PAYLOAD_TRANSPORT: pkt.transport}[base]
            if offset + length > len(header):
                return NFT_BREAK, "", None
            _store(regs, _reg(d[1]), header[offset:offset + length])
        elif e.name == "ct":
            if _be32(d[2]) != CT_STATE or 3 in d or 4 in d:
                raise ValueError("only `ct state` is traced")
            _store(regs, _reg(d[1]), pkt.ct_state.to_bytes(4, sys.byteorder))
        elif e.name == "bitwise":
            if 6 in d and _be32(d[6]) != 0:
                raise ValueError("only boolean bitwise is traced")
            src, dst, length = _reg(d[1]), _reg(d[2]), _be32(d[3])
            mask, xor = _value(d[4]), _value(d[5])
            if len(mask) != length or len(xor) != length:
                raise ValueError("bitwise mask/xor length")
            _store(regs, dst, bytes((b & m) ^ x for b, m, x in
                                    zip(regs[src:src + length], mask, xor, strict=True)))
        elif e.name == "cmp":
            value = _value(d[3])
            held = bytes(regs[_reg(d[1]):_reg(d[1]) + len(value)])
            op = CMP[_be32(d[2])]
            ok = {"eq": held == value, "neq": held != value, "lt": held < value,
                  "lte": held <= value, "gt": held > value, "gte": held >= value}[op]
            if not ok:
                return NFT_BREAK, "", None
        elif e.name == "lookup":
            if 3 in d:
                raise ValueError("map lookups are not traced")
            assert e.target is not None
            start = _reg(d[2])
            found = e.target.holds(bytes(regs[start:start + e.target.key_len]))
            if found == bool(_be32(d.get(5, bytes(4))) & LOOKUP_INVERT):
                return NFT_BREAK, "", None
        elif e.name == "immediate":
            data = attrs(d[2])
            if _be32(d[1]) != 0:
                _store(regs, _reg(d[1]), data[1])  # a value into a data register
                continue
            v = attrs(data[2])
            code = int.from_bytes(v[1][:4], "big", signed=True)
            return code, _name(v.get(2, b"")), None
        elif e.name == "reject":
            kind = _be32(d[1])
            if kind == REJECT_TCP_RST:
                return NF_DROP, "", "tcp reset"
            if kind == REJECT_ICMPX:
                return NF_DROP, "", f"icmpx {ICMPX_CODES[d[2][0]]}"
            raise ValueError(f"reject type {kind} not traced")
        elif e.name in ("counter", "limit"):
            continue  # counts; a limit is taken as not reached (as the evaluator does)
        else:
            raise ValueError(f"expression {e.name} not traced")
    return NFT_CONTINUE, "", None
