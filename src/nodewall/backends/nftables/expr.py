"""Policy rules as nf_tables bytecode: the expressions `nft` emits for each rule line of
`nodewall.backends.nftables.render`, in the layout the kernel dumps them back.

A rule line becomes a list of parts: (expression name, expression attributes) pairs, or an
`Anon` for an anonymous set it looks up (`tcp dport { 22, 80 }`), which the batch creates just
before the rule. The dependencies nft adds are added here too (`meta nfproto` before `ip saddr`,
`meta l4proto` before a port or an ICMP type), so that `nft list` prints the rendered text back.
Attributes are in the kernel's dump order and nesting, without the nested flag, so that a rule
built here and the same rule dumped by the kernel compare as bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodewall.backends.netlink import attr, string, u32
from nodewall.backends.nftables.render import COMMENT_MAX, comment
from nodewall.policy.model import ICMP_TYPES, Rule

ADDR = {4: (7, 4), 6: (8, 16)}  # family -> (nft datatype ipv4_addr / ipv6_addr, key length)

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
_L4 = {"tcp": 6, "udp": 17, "esp": 50, "icmp4": 1, "icmp6": 58}


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


def _addr_match(family: int, set_name: str, source: bool) -> list[Part]:
    offset = {(4, True): 12, (4, False): 16, (6, True): 8, (6, False): 24}[(family, source)]
    return [_meta(_META_NFPROTO), _cmp(bytes([2 if family == 4 else 10])),
            _payload(_NETWORK, offset, ADDR[family][1]), lookup(set_name)]


def _protocol_parts(rule: Rule, have_nfproto: bool) -> list[Part]:
    """The bytecode of `nftrender._protocol_match` (with the dependencies nft adds)."""
    if rule.protocol in ("tcp", "udp"):
        parts: list[Part] = [_meta(_META_L4PROTO), _cmp(bytes([_L4[rule.protocol]]))]
        ports = sorted(set(rule.dports))
        if len(ports) == 1:
            parts += [_payload(_TRANSPORT, 2, 2), _cmp(ports[0].to_bytes(2, "big"))]
        elif ports:
            parts += [_payload(_TRANSPORT, 2, 2),
                      Anon(rule.protocol, tuple(p.to_bytes(2, "big") for p in ports))]
        return parts
    if rule.protocol == "esp":
        return [_meta(_META_L4PROTO), _cmp(bytes([_L4["esp"]]))]
    if rule.protocol == "icmp":
        if rule.family is None:
            return [_meta(_META_L4PROTO), Anon("l4proto", (b"\x01", b"\x3a"))]
        kind = f"icmp{rule.family}"
        parts = [_meta(_META_L4PROTO), _cmp(bytes([_L4[kind]]))]
        if not rule.icmp_types:
            return parts
        if not have_nfproto:
            parts = [_meta(_META_NFPROTO), _cmp(bytes([2 if rule.family == 4 else 10])),
                     *parts]
        codes = sorted({ICMP_TYPES[rule.family][n] for n in rule.icmp_types})
        parts.append(_payload(_TRANSPORT, 0, 1))
        parts.append(_cmp(bytes(codes)) if len(codes) == 1
                     else Anon(kind, tuple(bytes([c]) for c in codes)))
        return parts
    return []


def _verdict_parts(action: str) -> list[Part]:
    if action == "counter reject with tcp reset":
        return [expr("counter", _u64(1, 0), _u64(2, 0)), expr("reject", u32(1, 1))]
    if action.startswith("counter reject with icmpx "):
        code = 1 if action.endswith("port-unreachable") else 3
        return [expr("counter", _u64(1, 0), _u64(2, 0)),
                expr("reject", u32(1, 2), attr(2, bytes([code])))]
    return [verdict(VERDICTS[action])]


def rule_parts(rule: Rule, protocol: str | None, action: str) -> list[Part]:
    """One rule line of `nftrender.rule_lines` as expressions. `protocol` overrides the
    rule's protocol match ("meta l4proto tcp" for the three lines of a protocol-less reject,
    "" for none)."""
    parts: list[Part] = []
    if rule.interface is not None:
        key = _META_IIFNAME if rule.direction == "in" else _META_OIFNAME
        parts += [_meta(key), _cmp(_ifname("lo"), _EQ if rule.interface == "loopback" else _NEQ)]
    implied = rule.src_set or rule.dst_set or rule.protocol == "icmp"
    have_nfproto = False
    if rule.family is not None and not implied:
        parts += [_meta(_META_NFPROTO), _cmp(bytes([2 if rule.family == 4 else 10]))]
        have_nfproto = True
    for set_name, source in ((rule.src_set, True), (rule.dst_set, False)):
        if set_name:
            parts += _addr_match(rule.family or 4, set_name, source)
            have_nfproto = True
    if rule.ct_states:
        mask = sum(_CT_BITS[s] for s in set(rule.ct_states))
        parts += [expr("ct", u32(1, 1), u32(2, 0)),
                  expr("bitwise", u32(1, 1), u32(2, 1), u32(3, 4), u32(6, 0),
                        _data(4, mask.to_bytes(4, "little")), _data(5, bytes(4))),
                  _cmp(bytes(4), _NEQ)]
    if protocol is None:
        parts += _protocol_parts(rule, have_nfproto)
    elif protocol:
        parts += [_meta(_META_L4PROTO), _cmp(bytes([_L4[protocol]]))]
    if rule.uid is not None:
        parts += [_meta(_META_SKUID), _cmp(int(rule.uid).to_bytes(4, "little"))]
    if rule.limit_per_second is not None:
        parts.append(expr("limit", _u64(1, int(rule.limit_per_second)), _u64(2, 1),
                           u32(3, 5), u32(4, 0), u32(5, 0)))
    return parts + _verdict_parts(action)


def policy_rule_parts(rule: Rule) -> list[list[Part]]:
    """A policy rule as the expression lists of its nft rule lines (see `nftrender`)."""
    if rule.action == "reject" and rule.protocol is None:
        return [rule_parts(rule, "tcp", "counter reject with tcp reset"),
                rule_parts(rule, "udp", "counter reject with icmpx port-unreachable"),
                rule_parts(rule, "", "counter reject with icmpx admin-prohibited")]
    if rule.action == "reject":
        action = {"tcp": "counter reject with tcp reset",
                  "udp": "counter reject with icmpx port-unreachable"}.get(
            rule.protocol or "", "counter reject with icmpx admin-prohibited")
    else:
        action = rule.action
    return [rule_parts(rule, None, action)]


def rule_udata(text: str) -> bytes:
    raw = comment(text).encode()[:COMMENT_MAX] + b"\0"
    return bytes([0, len(raw)]) + raw if len(raw) > 1 else b""
