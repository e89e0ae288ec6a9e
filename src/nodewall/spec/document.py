"""Bytes to a spec document (or an API body), with every limit checked while reading.

A spec file is read as at most `MAX_SPEC_BYTES` + 1 bytes (so `/dev/zero` or a runaway file
ends at once), must be UTF-8 (a UTF-16 or UTF-32 byte-order mark, NUL bytes or an invalid byte
is refused, naming where), then parsed: `.json` files strictly as JSON, any other as YAML 1.2
(`nodewall.spec.yaml12`). Strict JSON means: a key given twice in one object is an error with its
path, `NaN`/`Infinity` are refused, integers are bounded in length, and nesting is bounded by
`MAX_DEPTH`. API bodies take the same JSON reading (`read_json`).

Errors are `SpecError`s whose messages name paths, lines and byte offsets, never the
document's text. Nothing here validates a spec's meaning (`nodewall.spec.load` does).
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import Any

from nodewall.errors import SpecError, format_path
from nodewall.spec.limits import MAX_DEPTH, MAX_INTEGER_DIGITS, MAX_SPEC_BYTES

_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def read_limited(path: Path, limit: int = MAX_SPEC_BYTES) -> bytes:
    """At most `limit` bytes of the file; SpecError when it holds more or cannot be read."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise SpecError([("", f"cannot read {path}: {exc.strerror}")]) from None
    if len(data) > limit:
        raise SpecError([("", f"{path}: larger than {limit} bytes, the most a spec may be")])
    return data


def check_text(data: bytes, name: str) -> str:
    """`data` as text (without a UTF-8 byte-order mark), once it is known to be UTF-8."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise SpecError([("", f"{name}: the file is {encoding} (byte-order mark); "
                              "nodewall reads UTF-8 only")])
    if b"\x00" in data:
        at = data.index(b"\x00")
        raise SpecError([("", f"{name}: NUL byte at offset {at} (line {_line(data, at)}): "
                          "not UTF-8 text (UTF-16 without a byte-order mark?)")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([("", f"{name}: not UTF-8: invalid byte 0x{data[exc.start]:02x} at "
                          f"offset {exc.start} (line {_line(data, exc.start)})")]) from None
    return text.removeprefix("\ufeff")


def _line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_document(path: str | Path) -> Any:
    """The parsed YAML or JSON of a spec file; SpecError when it cannot be read or parsed."""
    p = Path(path)
    data = check_text(read_limited(p), str(p))
    if p.suffix == ".json":
        return read_json(data, str(p))
    from nodewall.spec.yaml12 import load_yaml

    return load_yaml(data, str(p))


# --- strict JSON ----------------------------------------------------------------------------

class _Twice(dict[str, Any]):
    """An object in which some key was given twice: which ones (found after parsing)."""

    twice: list[str]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"an integer of more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def read_json(data: bytes | str, name: str = "body", max_depth: int = MAX_DEPTH) -> Any:
    """A JSON document read strictly (see the module docstring); SpecError otherwise, with
    paths for keys given twice and for nesting too deep."""
    found_twice = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found_twice
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        found_twice = True
        twice = _Twice(obj)
        seen: set[str] = set()
        twice.twice = [k for k, _ in items if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
        return twice

    try:
        doc = json.loads(data, object_pairs_hook=pairs, parse_constant=_no_constant,
                         parse_int=_number)
    except json.JSONDecodeError as exc:
        raise SpecError([("", f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg}")]) from None
    except RecursionError:
        raise SpecError([("", f"{name}: nested deeper than {max_depth} levels")]) from None
    except ValueError as exc:  # a constant or an overlong integer, refused by the hooks
        raise SpecError([("", f"{name}: invalid JSON: {exc}")]) from None
    errors = _walk(doc, max_depth, found_twice)
    if not errors and _SURROGATE_ESCAPE.search(data if isinstance(data, str) else
                                               data.decode("utf-8", "replace")):
        errors = _lone_surrogates(doc)
    if errors:
        raise SpecError(errors)
    return doc


_CONTAINERS = frozenset((dict, list, _Twice))
#: A `\\uD800`..`\\uDFFF` escape: JSON can spell half of a UTF-16 pair, which is no character.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


_LONE_SURROGATE = ("a lone UTF-16 surrogate escape (\\uD800-\\uDFFF without its pair) is not a "
                   "character")


def _lone_surrogates(doc: Any) -> list[tuple[str, str]]:
    """The paths of strings (keys included) holding a lone surrogate: text no UTF-8 store,
    log or terminal can hold."""
    if isinstance(doc, str):
        return [] if _encodable(doc) else [("", _LONE_SURROGATE)]
    errors: list[tuple[str, str]] = []
    todo: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())] if isinstance(doc, dict | list) else []
    while todo:
        node, loc = todo.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            where = (*loc, key)
            for text in (key, value):
                if isinstance(text, str) and not _encodable(text):
                    errors.append((format_path(where), _LONE_SURROGATE))
                    break
            if isinstance(value, dict | list):
                todo.append((value, where))
    return sorted(errors)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _depth_exceeds(doc: Any, max_depth: int) -> bool:
    """Whether `doc` nests deeper than `max_depth`: one level at a time, no recursion."""
    level = [doc] if type(doc) in _CONTAINERS else []
    depth = 0
    containers = _CONTAINERS
    while level:
        depth += 1
        if depth > max_depth:
            return True
        below: list[Any] = []
        add = below.extend
        for node in level:
            add([v for v in (node.values() if type(node) is not list else node)
                 if type(v) in containers])
        level = below
    return False


def _walk(doc: Any, max_depth: int, find_twice: bool) -> list[tuple[str, str]]:
    """Nesting past `max_depth` (the first place found), and every key given twice, with
    their paths. Iterative: the document may be as deep as the JSON parser allows."""
    too_deep = _depth_exceeds(doc, max_depth)
    if not too_deep and not find_twice:
        return []
    errors: list[tuple[str, str]] = []
    todo: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while todo:
        node, loc = todo.pop()
        if too_deep and len(loc) >= max_depth:
            return [(format_path(loc), f"nested deeper than {max_depth} levels")]
        if isinstance(node, dict):
            if isinstance(node, _Twice):
                errors += [(format_path((*loc, key)), "key given twice in one object; the last "
                            "would silently win") for key in node.twice]
            todo += [(v, (*loc, k)) for k, v in node.items() if isinstance(v, dict | list)]
        elif isinstance(node, list):
            todo += [(v, (*loc, i)) for i, v in enumerate(node) if isinstance(v, dict | list)]
    return sorted(errors)
