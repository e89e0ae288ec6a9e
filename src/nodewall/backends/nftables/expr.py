"""Policy rules as nf_tables bytecode: the expressions `nft` emits for each rule line, in the
layout the kernel dumps them back. The lines are those of `nodewall.backends.nftables.steps`
(the one description of a rule), the same that `render.line_text` writes as text.

A rule line becomes a list of parts: (expression name, expression attributes) pairs, or an
`Anon` for an anonymous set it looks up (`tcp dport { 22, 80 }`), which the batch creates just
before the rule. The dependencies nft adds are added here too (`meta nfproto` before `ip saddr`,
`meta l4proto` before a port or an ICMP type), so that `nft list` prints the rendered text back.
Attributes are in the kernel's dump order and nesting, without the nested flag, so that a rule
built here and the same rule dumped by the kernel compare as bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from nodewall.backends.netlink import attr, string, u32
from nodewall.backends.nftables.steps import (
    COMMENT_MAX,
    ICMP_L4,
    AddrInSet,
    Counter,
    CtStates,
    Dport,
    IcmpType,
    Iface,
    L4Proto,
    Limit,
    Line,
    NfProto,
    Reject,
    SkUid,
    Verdict,
)
from nodewall.net.family import BYTES, NFPROTO
from nodewall.policy.model import ICMP_TYPES

ADDR = {4: (7, BYTES[4]), 6: (8, BYTES[6])}  # family -> (nft datatype ipv4/6_addr, key length)

# Anonymous sets, by what they hold: (nft datatype, key length, set userdata as nft writes it).
ANON: dict[str, tuple[int, int, bytes]] = {
    "tcp": (13, 2, bytes.fromhex("0004020000000314000407000000010c000408000000010402000000")),
    "udp": (13, 2, bytes.fromhex("0004020000000314000407000000010c000406000000010402000000")),
    "icmp4": (14, 1, bytes.fromhex("0004020000000314000407000000010c000404000000010401000000")),
    "icmp6": (29, 1, bytes.fromhex("0004020000000314000407000000010c00040e000000010401000000")),
    "l4proto": (12, 1, bytes.fromhex("000401000000030e0004090000000106000410000000")),
}
ANON_BY_TYPE = {(dtype, udata): kind for kind, (dtype, _, udata) in ANON.items()}

# meta keys, ct keys, payload bases, cmp operators, verdict codes
_META_IIFNAME, _META_OIFNAME, _META_SKUID, _META_NFPROTO, _META_L4PROTO = 6, 7, 10, 15, 16
_NETWORK, _TRANSPORT = 1, 2
_EQ, _NEQ = 0, 1
VERDICTS = {"accept": 1, "drop": 0, "return": -5}
_CT_BITS = {"invalid": 1, "established": 2, "related": 4, "new": 8}
_L4 = {"tcp": 6, "udp": 17, "esp": 50, "icmp": 1, "ipv6-icmp": 58}  # by nft's names
_ADDR_OFFSET = {(4, True): 12, (4, False): 16, (6, True): 8, (6, False): 24}  # (family, saddr)
# reject type (NFT_REJECT_TCP_RST 1, NFT_REJECT_ICMPX_UNREACH 2) and ICMPx code
_REJECT: dict[str, tuple[int, int | None]] = {
    "tcp reset": (1, None), "icmpx port-unreachable": (2, 1), "icmpx admin-prohibited": (2, 3)}


# ----------------------------------------------------------------------------- expressions


def _u64(kind: int, value: int) -> bytes:
    return attr(kind, value.to_bytes(8, "big"))


def _data(kind: int, value: bytes) -> bytes:
    return attr(kind, attr(1, value))  # NFTA_DATA_VALUE inside, as the kernel dumps it


def expr(name: str, *attrs: bytes) -> tuple[str, bytes]:
    return name, b"".join(attrs)


def _meta(key: int) -> tuple[str, bytes]:
    return expr("meta", u32(2, key), u32(1, 1))


def _cmp(value: bytes, op: int = _EQ) -> tuple[str, bytes]:
    return expr("cmp", u32(1, 1), u32(2, op), _data(3, value))


def _payload(base: int, offset: int, length: int) -> tuple[str, bytes]:
    return expr("payload", u32(1, 1), u32(2, base), u32(3, offset), u32(4, length))


def lookup(set_name: str) -> tuple[str, bytes]:
    return expr("lookup", string(1, set_name), u32(2, 1), u32(5, 0))


def verdict(code: int) -> tuple[str, bytes]:
    return expr("immediate", u32(1, 0), attr(2, attr(2, attr(1, (code & 0xFFFFFFFF)
                                                              .to_bytes(4, "big")))))


@dataclass(frozen=True)
class Anon:
    """An anonymous set a rule looks up (`tcp dport { 22, 80 }`): its kind and element keys."""

    kind: str
    keys: tuple[bytes, ...]

    def marker(self) -> tuple[str, bytes]:
        return "lookup", b"anon:" + self.kind.encode() + b":" + b",".join(sorted(self.keys))


Part = tuple[str, bytes] | Anon


def _ifname(name: str) -> bytes:
    return name.encode().ljust(16, b"\0")


def _nfproto(family: int) -> list[Part]:
    return [_meta(_META_NFPROTO), _cmp(bytes([NFPROTO[family]]))]


def _l4proto(protocol: str) -> list[Part]:
    return [_meta(_META_L4PROTO), _cmp(bytes([_L4[protocol]]))]


def _one_or_anon(kind: str, keys: tuple[bytes, ...]) -> Part:
    """A comparison with one value, or a lookup in an anonymous set of several."""
    return _cmp(keys[0]) if len(keys) == 1 else Anon(kind, keys)


def line_parts(line: Line) -> list[Part]:
    """One rule line (see `nftsteps`) as expressions, with the dependencies nft adds: a family
    check before an address (and before an ICMP type, unless the line has one already), the
    protocol check before a port or an ICMP type."""
    parts: list[Part] = []
    have_nfproto = False
    for step in line.steps:
        match step:
            case Iface(output, name, negate):
                parts += [_meta(_META_OIFNAME if output else _META_IIFNAME),
                          _cmp(_ifname(name), _NEQ if negate else _EQ)]
            case NfProto(family):
                parts += _nfproto(family)
                have_nfproto = True
            case AddrInSet(family, source, set_name):
                offset = _ADDR_OFFSET[(family, source)]
                parts += [*_nfproto(family), _payload(_NETWORK, offset, BYTES[family]),
                          lookup(set_name)]
                have_nfproto = True
            case CtStates(states):
                mask = sum(_CT_BITS[s] for s in states)
                parts += [expr("ct", u32(1, 1), u32(2, 0)),
                          expr("bitwise", u32(1, 1), u32(2, 1), u32(3, 4), u32(6, 0),
                               _data(4, mask.to_bytes(4, "little")), _data(5, bytes(4))),
                          _cmp(bytes(4), _NEQ)]
            case L4Proto(protocols):
                parts += [_meta(_META_L4PROTO), _one_or_anon(
                    "l4proto", tuple(bytes([_L4[p]]) for p in protocols))]
            case Dport(protocol, ports):
                parts += [*_l4proto(protocol), _payload(_TRANSPORT, 2, 2), _one_or_anon(
                    protocol, tuple(p.to_bytes(2, "big") for p in ports))]
            case IcmpType(family, names):
                if not have_nfproto:
                    parts += _nfproto(family)
                codes = ICMP_TYPES[family]
                parts += [*_l4proto(ICMP_L4[family]), _payload(_TRANSPORT, 0, 1), _one_or_anon(
                    f"icmp{family}", tuple(bytes([codes[n]]) for n in names))]
            case SkUid(uid):
                parts += [_meta(_META_SKUID), _cmp(uid.to_bytes(4, "little"))]
            case Limit(per_second):
                parts.append(expr("limit", _u64(1, per_second), _u64(2, 1), u32(3, 5),
                                  u32(4, 0), u32(5, 0)))
            case Counter():
                parts.append(expr("counter", _u64(1, 0), _u64(2, 0)))
            case Reject(with_):
                kind, code = _REJECT[with_]
                parts.append(expr("reject", u32(1, kind),
                                  *(() if code is None else (attr(2, bytes([code])),))))
            case Verdict(name):
                parts.append(verdict(VERDICTS[name]))
            case _:
                assert_never(step)
    return parts


def line_udata(line: Line) -> bytes:
    """A rule line's comment as the rule's userdata (what nft writes), b"" for none."""
    if not line.comment:
        return b""
    raw = line.comment.encode()[:COMMENT_MAX] + b"\0"
    return bytes([0, len(raw)]) + raw
