"""Writing many policies' JSON text and version digests at once, each shared part written once.

The policies of one service's nodes share most of their objects (`nodewall.compiler.service`
makes them so): the same sets, the same rules tuple, and peer sets that are the service's peer
elements less the node's own. `PolicyEncoder` remembers the text of every set, element and
rules tuple it has written, by object (the objects are frozen, so their text cannot change), and
builds each policy's text and digest from those pieces. The results are exactly
`NodePolicy.to_json()` and `NodePolicy.version` (tests/unit/test_service_compile.py checks
both); only the work differs.

An encoder holds on to everything it has seen: use one per batch, then drop it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from nodewall.policy.model import _RULE_FIELDS, AddressSet, NodePolicy, SetElement, _json_strings

_dumps = json.JSONEncoder(sort_keys=True).encode  # as `to_json` writes: json.dumps(sort_keys)
_compact = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


class PolicyEncoder:
    """`to_json` and `version` of many policies, with their shared parts encoded once."""

    def __init__(self) -> None:
        # id(obj) -> (obj, text): the object is kept so that its id is not reused
        self._elements: dict[int, tuple[SetElement, str]] = {}
        self._sets: dict[int, tuple[AddressSet, str, str]] = {}
        self._parts: dict[int, tuple[Any, str, str]] = {}
        # sets seen once: a set is remembered from its second use on (a node's own peer set is
        # used once, and 1000 of them would hold 100 MB)
        self._seen: dict[int, AddressSet] = {}
        self._wholes: dict[int, tuple[AddressSet, _Joined, _Joined | None]] = {}

    def _element(self, e: SetElement) -> str:
        known = self._elements.get(id(e))
        if known is None:
            known = self._elements[id(e)] = (e, _dumps({"network": e.network,
                                                        "reasons": e.reasons}))
        return known[1]

    def _set(self, s: AddressSet) -> tuple[str, str]:
        """The set's text in `to_json` and its piece of the version digest."""
        known = self._sets.get(id(s))
        if known is not None:
            return known[1], known[2]
        marked = s.__dict__.get("cut_from")
        if marked is not None:
            return self._cut_set(s, *marked)
        text = _set_text(s, ", ".join(map(self._element, s.elements)))
        digest = _set_digest(s, _json_strings(s.networks))
        if id(s) in self._seen:  # its second use: shared, remembered from now on
            self._sets[id(s)] = (s, text, digest)
        else:
            self._seen[id(s)] = s
        return text, digest

    def _cut_set(self, s: AddressSet, whole: AddressSet,
                 runs: tuple[tuple[int, int], ...]) -> tuple[str, str]:
        """A set cut from `whole`: its text cut from the whole's, which is written once."""
        known = self._wholes.get(id(whole))
        if known is None:
            texts = [self._element(e) for e in whole.elements]
            joined = "".join(whole.networks)  # as `_json_strings` checks: nothing to escape
            plain = joined.isascii() and joined.isprintable() and not {'"', "\\"} & set(joined)
            known = self._wholes[id(whole)] = (whole, _Joined.of(texts, ", "),
                                                _Joined.of(whole.networks, '","') if plain
                                                else None)
        _, elements, networks = known
        text = _set_text(s, elements.cut(runs))
        if networks is None:
            return text, _set_digest(s, _json_strings(s.networks))
        return text, _set_digest(s, f'["{networks.cut(runs)}"]' if s.elements else "[]")

    def _rules(self, policy: NodePolicy) -> tuple[str, str]:
        """The rules' text in `to_json` and in the version digest (shared tuples once)."""
        known = self._parts.get(id(policy.rules))
        if known is None:
            text = _dumps([dict(vars(r)) for r in policy.rules])
            digest = _compact([{f: getattr(r, f) for f in _RULE_FIELDS} for r in policy.rules])
            known = self._parts[id(policy.rules)] = (policy.rules, text, digest)
        return known[1], known[2]

    def _other(self, value: Any, as_dicts: bool) -> str:
        known = self._parts.get(id(value))
        if known is None:
            text = _dumps([dict(vars(c)) for c in value] if as_dicts else list(value))
            known = self._parts[id(value)] = (value, text, "")
        return known[1]

    def encode(self, policy: NodePolicy) -> tuple[str, str]:
        """(`policy.to_json()`, `policy.version`); the version is also cached on the policy."""
        sets = [self._set(s) for s in policy.sets]
        rules_text, rules_digest = self._rules(policy)
        text = (f'{{"components": {self._other(policy.components, True)}, '
                f'"environment": {_dumps(policy.environment)}, "node": {_dumps(policy.node)}, '
                f'"rules": {rules_text}, "service": {_dumps(policy.service)}, '
                f'"service_type": {_dumps(policy.service_type)}, '
                f'"sets": [{", ".join(t for t, _ in sets)}], '
                f'"warnings": {self._other(policy.warnings, False)}}}')
        blob = f'{{"rules":{rules_digest},"sets":[{",".join(d for _, d in sets)}]}}'.encode()
        version = hashlib.sha256(blob).hexdigest()[:16]
        policy.__dict__.setdefault("version", version)  # the cached property's slot
        return text, version


def _set_text(s: AddressSet, elements: str) -> str:
    return (f'{{"elements": [{elements}], "family": {s.family}, '
            f'"hosts_only": {_dumps(s.hosts_only)}, "name": {_dumps(s.name)}, '
            f'"purpose": {_dumps(s.purpose)}}}')


def _set_digest(s: AddressSet, networks: str) -> str:
    return f"[{json.dumps(s.name)},{s.family},{json.dumps(s.hosts_only)},{networks}]"


class _Joined(NamedTuple):
    """Texts joined by a separator, with where each one starts and ends in the joined text."""

    text: str
    starts: list[int]
    ends: list[int]
    separator: str

    @classmethod
    def of(cls, texts: Sequence[str], separator: str) -> _Joined:
        ends = list(itertools.accumulate(len(t) + len(separator) for t in texts))
        ends = [e - len(separator) for e in ends]
        starts = [e - len(t) for e, t in zip(ends, texts, strict=True)]
        return cls(separator.join(texts), starts, ends, separator)

    def cut(self, runs: tuple[tuple[int, int], ...]) -> str:
        """The texts of the kept runs [start, stop), joined as the whole is."""
        return self.separator.join(self.text[self.starts[a]:self.ends[b - 1]] for a, b in runs)


def cut(whole: AddressSet, dropped: Sequence[int]) -> AddressSet:
    """`whole` less its elements at the positions `dropped` (ascending), marked so that an
    encoder writes its text by cutting the whole's (a node's cluster peers: the service's
    peers less the node's own addresses)."""
    runs: list[tuple[int, int]] = []
    start = 0
    for index in (*dropped, len(whole.elements)):
        if index > start:
            runs.append((start, index))
        start = index + 1
    elements = tuple(itertools.chain.from_iterable(whole.elements[a:b] for a, b in runs))
    networks = tuple(itertools.chain.from_iterable(whole.networks[a:b] for a, b in runs))
    made = AddressSet(whole.name, whole.family, whole.hosts_only, whole.purpose, elements)
    made.__dict__["networks"] = networks  # the slot of the cached property
    made.__dict__["cut_from"] = (whole, tuple(runs))
    return made
