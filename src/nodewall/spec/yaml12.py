"""A spec's YAML read strictly: YAML 1.2 core-schema values built straight from the parser's
event stream, every refusal with the path and line of the node it is about.

libyaml (PyYAML's C parser; its pure-Python parser where libyaml is missing) turns the text into
events without recursing; this module builds lists, dicts and plain values from them in one loop
with an explicit stack, so nesting depth is bounded by `MAX_DEPTH` whatever the input (PyYAML's
own composer recurses in C and dies of a deep `[[[[...`). It refuses what a spec never needs
and what makes a reviewer read something other than what is applied:

- anchors and aliases (`&a`, `*a`): refused, not expanded, so a few bytes cannot turn into
  millions of nodes;
- tags (`!!int`, `!!python/...`): refused; values are plain YAML 1.2;
- a key given twice in one mapping: every such key, with its path (the last one never wins);
- collections as mapping keys, and more than one document.

Plain scalars follow the YAML 1.2 core schema only: `null`/`~`/empty, `true`/`false` (three
spellings each), integers (decimal, `0o`, `0x`), floats; everything else, `yes`, `on`, `4:10:00`,
`1_000` and dates included, is a string. A decimal integer written with a leading zero is
refused as ambiguous (YAML 1.1 reads `014000` as octal). Quoted scalars are strings.

It never constructs objects of other types, and never quotes the document's text in an error
(customer descriptions live in specs): errors name paths, lines and columns.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml import events

from nodewall.errors import SpecError, format_path
from nodewall.spec.limits import MAX_DEPTH, MAX_INTEGER_DIGITS

_WORDS: dict[str, Any] = {
    "null": None, "Null": None, "NULL": None, "~": None,
    "true": True, "True": True, "TRUE": True,
    "false": False, "False": False, "FALSE": False,
    ".inf": math.inf, ".Inf": math.inf, ".INF": math.inf,
    "+.inf": math.inf, "+.Inf": math.inf, "+.INF": math.inf,
    "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
    ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
}
_NUMBER_START = frozenset("0123456789+-.")
_DECIMAL = re.compile(r"[-+]?[0-9]+")
_OCTAL = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_STRING = object()  # _WORDS.get default: the scalar is a string
_NO_KEY = object()  # a mapping frame waiting for its next key

_Scalar = events.ScalarEvent
_MapStart = events.MappingStartEvent
_SeqStart = events.SequenceStartEvent
_MapEnd = events.MappingEndEvent
_SeqEnd = events.SequenceEndEvent
_Alias = events.AliasEvent


class _Refusal(Exception):
    """One refusal: where (path), what, and at which line and column."""

    def __init__(self, loc: list[Any], reason: str, event: Any) -> None:
        super().__init__(reason)
        self.loc = loc
        self.reason = reason
        self.event = event


def _at(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}"


def _plain(value: str, stack: list[list[Any]], event: Any) -> Any:
    """A plain scalar by the YAML 1.2 core schema (`stack`: where it is, for a refusal)."""
    if not value:
        return None
    if value[0] in _NUMBER_START:
        too_long = f"an integer of more than {MAX_INTEGER_DIGITS} digits"
        if _DECIMAL.fullmatch(value):
            digits = value.lstrip("+-")
            if len(digits) > MAX_INTEGER_DIGITS:
                raise _Refusal(_where(stack), too_long, event)
            if len(digits) > 1 and digits[0] == "0":
                raise _Refusal(_where(stack), f"{value} has a leading zero: octal in YAML 1.1, "
                               f"decimal in YAML 1.2; write {int(value)}", event)
            return int(value)
        if value[0] == "0" and len(value) > 2 and value[1] in "ox":
            base = 8 if value[1] == "o" else 16
            if (_OCTAL if base == 8 else _HEX).fullmatch(value):
                if len(value) - 2 > MAX_INTEGER_DIGITS:
                    raise _Refusal(_where(stack), too_long, event)
                return int(value[2:], base)
        if _FLOAT.fullmatch(value):
            return float(value)
    word = _WORDS.get(value, _STRING)
    return value if word is _STRING else word


def _where(stack: list[list[Any]]) -> list[Any]:
    """The path of the node being built at the top of `stack` (`[key]` while it is a key)."""
    return [(("[key]" if key is _NO_KEY else key) if is_map else len(container))
            for container, is_map, key in stack]


def _node_refusal(event: Any, stack: list[list[Any]]) -> _Refusal:
    loc = _where(stack)
    if event.anchor is not None:
        return _Refusal(loc, f"YAML anchor &{_name(event.anchor)}: anchors and aliases are not "
                        "accepted in a spec (write the value out)", event)
    tag = event.tag.replace("tag:yaml.org,2002:", "!!", 1)
    return _Refusal(loc, f"YAML tag {_name(tag)}: tags are not accepted in a spec "
                    "(values are plain YAML 1.2)", event)


def _name(text: str) -> str:
    """An anchor or tag name as nodewall shows it: short, printable, never the document's
    text beyond it."""
    shown = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return shown[:32]


def _compose(get_event: Any, max_depth: int) -> Any:
    get_event()  # StreamStart
    event = get_event()
    if type(event) is events.StreamEndEvent:
        return None  # an empty document: the caller says a spec must be a mapping
    stack: list[list[Any]] = []  # [container, is_mapping, pending key] per open collection
    duplicates: list[tuple[str, str]] = []
    value: Any
    while True:
        event = get_event()
        kind = type(event)
        if kind is _Scalar:
            if event.anchor is not None or event.tag is not None:
                raise _node_refusal(event, stack)
            if event.implicit[0]:
                value = event.value
                if value and value[0] not in _NUMBER_START and value not in _WORDS:
                    pass  # the common case: a plain string
                else:
                    value = _plain(value, stack, event)
            else:
                value = event.value
        elif kind is _MapStart or kind is _SeqStart:
            if event.anchor is not None or event.tag is not None:
                raise _node_refusal(event, stack)
            if stack and stack[-1][1] and stack[-1][2] is _NO_KEY:
                raise _Refusal(_where(stack[:-1]), "a mapping key that is a list or a mapping "
                               "(keys are plain values)", event)
            if len(stack) >= max_depth:
                raise _Refusal(_where(stack), f"nested deeper than {max_depth} levels", event)
            stack.append([{} if kind is _MapStart else [], kind is _MapStart, _NO_KEY])
            continue
        elif kind is _MapEnd or kind is _SeqEnd:
            value = stack.pop()[0]
        elif kind is _Alias:
            raise _Refusal(_where(stack), f"YAML alias *{_name(event.anchor)}: anchors and "
                           "aliases are not accepted in a spec (write the value out)", event)
        else:  # pragma: no cover - the parser emits nothing else inside a document
            raise _Refusal(_where(stack), f"unexpected YAML event {kind.__name__}", event)
        if not stack:
            break
        frame = stack[-1]
        if not frame[1]:
            frame[0].append(value)
        elif frame[2] is _NO_KEY:
            if value in frame[0]:
                loc = [*_where(stack[:-1]), value]
                duplicates.append((format_path(tuple(loc)), "key given twice in one mapping "
                                   f"(again at {_at(event)}); the last would silently win"))
            frame[2] = value
        else:
            frame[0][frame[2]] = value
            frame[2] = _NO_KEY
    get_event()  # DocumentEnd
    if type(get_event()) is not events.StreamEndEvent:
        raise SpecError([("", "more than one YAML document: a spec is one document")])
    if duplicates:
        raise SpecError(duplicates)
    return value


def _parser(data: str) -> tuple[Any, bool]:
    """An event parser of `data`, and whether it is libyaml's (whose messages never quote
    the document; the pure-Python scanner's quote the character it stopped at)."""
    try:
        from yaml._yaml import CParser
    except ImportError:  # PyYAML built without libyaml
        return yaml.BaseLoader(data), False
    return CParser(data), True  # its event parser (Reader, Scanner, Parser) is all we use


def load_yaml(data: str, name: str, max_depth: int = MAX_DEPTH) -> Any:
    """The document in `data`; SpecError otherwise."""
    parser, libyaml = _parser(data)
    try:
        return _compose(parser.get_event, max_depth)
    except _Refusal as exc:
        at = _at(exc.event)
        raise SpecError([(format_path(tuple(exc.loc)), f"{exc.reason} ({at})" if at else exc.reason)
                         ]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or ""
        shown = f": {problem}" if problem and (libyaml or "'" not in problem) else ""
        raise SpecError([("", f"{name}: invalid YAML{where}{shown}")]) from None
    except yaml.YAMLError:
        raise SpecError([("", f"{name}: invalid YAML")]) from None
    finally:
        parser.dispose()
