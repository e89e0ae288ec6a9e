"""Fuzzing the spec reader: generated spec files, mostly broken, through the whole reading path
(bytes -> UTF-8 check -> YAML 1.2 or strict JSON -> model and rules -> compile and render).

`spec_files()` draws a valid spec (tests/strategies.py), marks every ip_filter description
with a unique token, mutates the document (values replaced by hostile or ill-typed ones, keys
dropped or added, nesting deepened), writes it as JSON or YAML in several styles, and sometimes
damages the text (a key given twice, an alias, a tag, a byte-order mark, UTF-16, a cut, a
flipped byte, deep brackets, two documents). `check()` states what must hold for every input:

- the only exception is `SpecError`, never a crash, traceback or other error;
- every error names its field (a path), or its place in the file (a line, an offset), or is the
  one whole-document reason; no error quotes a description;
- an accepted spec compiles for a node, and no description reaches the policy, its rendered
  nftables ruleset or the warnings.

Used by tests/unit/test_fuzz_input.py (a few hundred inputs, in CI) and bench/fuzz_input.py
(100,000 inputs).
"""

from __future__ import annotations

import codecs
import copy
import json
from typing import Any

import yaml
from hypothesis import strategies as st

from nodewall.errors import SpecError
from nodewall.spec.document import check_text, read_json
from nodewall.spec.load import parse_spec
from nodewall.spec.yaml12 import load_yaml
from strategies import deployment_specs

#: Strings a mutation puts where a value was: other spellings of networks, addresses that are
#: no host's, YAML 1.1 words, numbers as text, long and odd text.
TRICKY = ("10.0.0.0/255.0.0.0", "10.0.0.0/08", "010.0.0.0/8", "2001:DB8::/32",
          "::ffff:10.0.0.1", "::ffff:10.0.0.0/104", "0.0.0.0", "::", "127.0.0.1",
          "169.254.169.254", "255.255.255.255", "ff02::1", "fe80::1%eth0", "10.0.0.0/33",
          "yes", "on", "off", "4:10:00", "014000", "0x36b0", "1e3", "14000", "", " ", "\x00",
          "a" * 2000, "10.20.0.5:1080", "[::1]:1", "2001:db8::1:1080", "9" * 100, "pg",
          "kafka", "ece", "vpc-0", "s0-pg", "<<", "~", "null", "\u202e", "é" * 1100)
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
    st.text(max_size=30), st.sampled_from(TRICKY),
    st.lists(st.sampled_from(TRICKY), max_size=3),
    st.dictionaries(st.sampled_from(("network", "description", "name", "x", "pg", "enabled")),
                    st.sampled_from((True, 1, "x", None)), max_size=3))
_STYLES = ("json", "json-indent", "yaml-block", "yaml-flow")
_DAMAGE = ("none",) * 8 + ("dup-key", "alias", "tag", "bom", "utf16", "cut", "flip", "deep",
                           "two-docs", "nul")


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value in the document."""
    out: list[tuple[Any, Any]] = []
    todo = [doc]
    while todo:
        node = todo.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            out.append((node, key))
            if isinstance(value, dict | list):
                todo.append(value)
    return out


def _mark_descriptions(doc: dict[str, Any]) -> list[str]:
    markers: list[str] = []
    for service in doc.get("services", []):
        for entry in service.get("user_config", {}).get("ip_filter", []):
            if isinstance(entry, dict) and "description" in entry:
                marker = f"zqmark{len(markers):04d}"
                entry["description"] = f"{marker} {entry['description']}"[:1024]
                markers.append(marker)
    return markers


def _mutate(draw: st.DrawFn, doc: dict[str, Any]) -> None:
    for _ in range(draw(st.integers(0, 3))):
        slots = _slots(doc)
        if not slots:
            return
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        op = draw(st.sampled_from(("replace", "replace", "delete", "insert", "deepen")))
        if op == "replace":
            container[key] = draw(_VALUES)
        elif op == "delete":
            del container[key]
        elif op == "insert" and isinstance(container, dict):
            container[draw(st.sampled_from(("extra", "ip_filter", "name", "ports", "")))] = (
                draw(_VALUES))
        elif op == "insert":
            container.insert(key, draw(_VALUES))
        else:
            value: Any = container[key]
            for _ in range(draw(st.integers(1, 60))):
                value = [value] if draw(st.booleans()) else {"k": value}
            container[key] = value


def _write(style: str, doc: Any) -> str:
    if style == "json":
        return json.dumps(doc, allow_nan=True)
    if style == "json-indent":
        return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=True)
    return yaml.safe_dump(doc, default_flow_style=style == "yaml-flow", allow_unicode=True,
                          width=80)


def _damage(draw: st.DrawFn, how: str, text: str) -> bytes:
    if how == "dup-key":
        lines = text.splitlines(keepends=True)
        keyed = [i for i, line in enumerate(lines) if ": " in line or line.rstrip().endswith(":")]
        if keyed:
            i = keyed[draw(st.integers(0, len(keyed) - 1))]
            lines.insert(i, lines[i] if lines[i].endswith("\n") else lines[i] + "\n")
        elif "{" in text:
            at = text.index("{") + 1
            text = text[:at] + '"project": 1, "project": 2, ' + text[at:]
        text = "".join(lines) if keyed else text
    elif how == "alias":
        text = "a0: &a0 [x, y]\n" + text + "\na1: *a0\n"
    elif how == "tag":
        text = text.replace(": ", ": !!str ", 1)
    elif how == "deep":
        depth = draw(st.integers(10, 5000))
        text = text.replace("[", "[" * depth, 1)
    elif how == "two-docs":
        text = text + "\n---\n" + text
    data = text.encode("utf-8", "surrogatepass")
    if how == "bom":
        data = codecs.BOM_UTF8 + data
    elif how == "utf16":
        data = text.encode("utf-16", "surrogatepass")
    elif how == "cut" and data:
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif how == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    elif how == "nul":
        data = data.replace(b" ", b"\x00", 1)
    return data


@st.composite
def spec_files(draw: st.DrawFn) -> tuple[str, bytes, list[str]]:
    """(file name, file bytes, description markers) of a generated, probably broken spec."""
    doc = copy.deepcopy(draw(deployment_specs(max_services=2, max_nodes=2)))
    markers = _mark_descriptions(doc)
    _mutate(draw, doc)
    style = draw(st.sampled_from(_STYLES))
    name = "spec.json" if style.startswith("json") else "spec.yaml"
    return name, _damage(draw, draw(st.sampled_from(_DAMAGE)), _write(style, doc)), markers


def _names_its_place(name: str, path: str, reason: str) -> bool:
    return bool(path) or reason.startswith(f"{name}:") or "line " in reason or reason in (
        "the spec must be a mapping with platform, project and services",
        "more than one YAML document: a spec is one document")


def check(name: str, data: bytes, markers: list[str]) -> str:
    """Read, validate and (when valid) compile one file; 'accepted' or 'rejected', or an
    AssertionError saying which promise broke."""
    from nodewall.backends.nftables.render import render_text
    from nodewall.compiler.node import compile_node

    try:
        text = check_text(data, name)
        doc = read_json(text, name) if name.endswith(".json") else load_yaml(text, name)
        spec = parse_spec(doc)
    except SpecError as exc:
        assert exc.errors, "a SpecError without errors"
        for path, reason in exc.errors:
            assert _names_its_place(name, path, reason), f"names no field or place: {reason!r}"
            line = f"{path}: {reason}"
            leaked = [m for m in markers if m in line]
            assert not leaked, f"an error quotes a description: {line[:300]!r}"
        return "rejected"
    if not spec.node_names:
        return "accepted"
    policy = compile_node(spec, spec.node_names[0])
    outputs = (policy.to_json(), render_text(policy, policy.version), "\n".join(policy.warnings))
    for marker in markers:
        assert not any(marker in out for out in outputs), f"description {marker} leaked"
    return "accepted"
