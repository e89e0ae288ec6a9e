"""SPEC section 2, strict reading and limits: how a spec file is read before it is validated.

Limits hold while reading (size, nesting, aliases), through the real console script where a
crash would show (SIGSEGV, a traceback, memory); keys given twice are errors at their path in
YAML and JSON; YAML is read by the 1.2 core schema; the encoding is UTF-8 only.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nodewall.errors import SpecError
from nodewall.spec.document import check_text, read_document, read_json
from nodewall.spec.limits import MAX_DEPTH, MAX_SPEC_BYTES
from nodewall.spec.load import load_spec, parse_spec
from nodewall.spec.yaml12 import load_yaml

from .helpers import EXAMPLES, run_nodewall

GOOD_YAML = """\
platform:
  management_networks: [198.51.100.0/28]
project:
  name: acme
  base_port: 14000
services:
  - name: pg-prod
    type: pg
    cloud: aws-eu-west-1
    user_config:
      ip_filter: [10.0.0.0/8]
      enable_ipv6: true
    nodes:
      - {name: pg-prod-1, addresses: [192.0.2.11]}
"""


def errors_of(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value.lines()


def write(tmp_path: Path, text: str | bytes, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def validate(path: Path | str) -> tuple[int, str]:
    """`nodewall validate` through the installed console script: (exit status, stderr)."""
    result = run_nodewall("validate", str(path), real=True)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.returncode, result.stderr


def test_the_good_yaml_is_valid(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD_YAML))
    assert spec.services[0].user_config.enable_ipv6 is True
    assert spec.project.base_port == 14000


# --- limits, through the real CLI ------------------------------------------------------------

def test_validate_dev_zero_ends_at_the_size_limit() -> None:
    code, err = validate("/dev/zero")
    assert code == 2, err
    assert f"larger than {MAX_SPEC_BYTES} bytes" in err, err


def test_a_file_one_byte_over_the_limit_is_refused_and_one_at_it_is_read(tmp_path: Path) -> None:
    at_limit = write(tmp_path, b"#" * MAX_SPEC_BYTES, "at.yaml")
    assert read_document(at_limit) is None  # read whole: a comment, no document
    over = write(tmp_path, b"#" * (MAX_SPEC_BYTES + 1), "over.yaml")
    with pytest.raises(SpecError, match="larger than"):
        read_document(over)


@pytest.mark.parametrize("text, name", [("[" * 100_000, "deep.yaml"),
                                        ("- " * 50_000 + "x", "deep-block.yaml"),
                                        ("a:\n" + "".join(" " * i + "a:\n" for i in range(1, 2000)),
                                         "deep-map.yaml"),
                                        ("[" * 100_000, "deep.json"),
                                        ("[" * 500 + "]" * 500, "deep500.json")])
def test_deep_nesting_exits_2_naming_the_limit(tmp_path: Path, text: str, name: str) -> None:
    code, err = validate(write(tmp_path, text, name))
    assert code == 2, f"exit {code} (SIGSEGV is -11): {err[-500:]}"
    assert f"nested deeper than {MAX_DEPTH} levels" in err, err[-500:]


def test_nesting_at_the_limit_is_read() -> None:
    doc = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_yaml(doc, "x") == read_json(doc) == json.loads(doc)
    deeper = "[" + doc + "]"
    for reader in (lambda t: load_yaml(t, "x"), read_json):
        with pytest.raises(SpecError, match="nested deeper"):
            reader(deeper)


def test_an_alias_bomb_is_refused_at_once_with_one_error(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    code, err = validate(write(tmp_path, "\n".join(lines) + "\n"))
    assert code == 2, err
    assert err.splitlines() == ["error: a0: YAML anchor &a0: anchors and aliases are not "
                                "accepted in a spec (write the value out) (line 1, column 5)"], err


def test_an_alias_without_an_anchor_in_the_spec_is_refused_at_its_path(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("ip_filter: [10.0.0.0/8]", "ip_filter: *office")
    errors = errors_of(write(tmp_path, text))
    assert len(errors) == 1 and errors[0].startswith(
        "services[0].user_config.ip_filter: YAML alias *office: anchors and aliases are not "
        "accepted"), errors


@pytest.mark.parametrize("data, fragment", [
    ("platform: x\n".encode("utf-16"), "the file is UTF-16 (byte-order mark)"),
    ("platform: x\n".encode("utf-16-be"), "NUL byte at offset 0"),
    ("platform: x\n".encode("utf-32"), "the file is UTF-32 (byte-order mark)"),
    (b"project:\n  name: caf\xe9\n", "not UTF-8: invalid byte 0xe9 at offset 20 (line 2)"),
    (b"\xff\xfe\xfd", "the file is UTF-16"),
    (b"a: \xed\xa0\x80\n", "not UTF-8: invalid byte 0xed at offset 3 (line 1)"),  # a surrogate
])
def test_text_that_is_not_utf8_is_refused_naming_why(tmp_path: Path, data: bytes,
                                                      fragment: str) -> None:
    for name in ("spec.yaml", "spec.json"):
        errors = errors_of(write(tmp_path, data, name))
        assert len(errors) == 1 and fragment in errors[0], f"{name}: {errors}"


def test_utf16_exits_2_through_the_real_cli(tmp_path: Path) -> None:
    code, err = validate(write(tmp_path, GOOD_YAML.encode("utf-16")))
    assert code == 2 and "the file is UTF-16 (byte-order mark)" in err, err


def test_a_utf8_byte_order_mark_is_read(tmp_path: Path) -> None:
    assert load_spec(write(tmp_path, codecs.BOM_UTF8 + GOOD_YAML.encode())).project.name == "acme"
    doc = json.dumps(yaml.safe_load(GOOD_YAML))
    assert load_spec(write(tmp_path, codecs.BOM_UTF8 + doc.encode(), "s.json")).project.name


# --- keys given twice --------------------------------------------------------------------------

def test_a_later_ip_filter_never_silently_wins_in_yaml(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("      enable_ipv6: true\n",
                             "      enable_ipv6: true\n      ip_filter: [0.0.0.0/0]\n")
    code, err = validate(write(tmp_path, text))
    assert code == 2, err
    assert err.splitlines() == ["error: services[0].user_config.ip_filter: key given twice in one "
                                "mapping (again at line 13, column 7); the last would silently "
                                "win"], err


def test_every_key_given_twice_is_reported_in_yaml(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("  name: acme\n", "  name: acme\n  name: other\n") + (
        "  - {name: x, type: pg, name: y}\n")
    errors = errors_of(write(tmp_path, text))
    assert [e.split(":")[0] for e in errors] == ["project.name", "services[1].name"], errors


def test_keys_given_twice_in_json_are_errors_at_their_paths(tmp_path: Path) -> None:
    doc = json.dumps(yaml.safe_load(GOOD_YAML))
    doc = doc.replace('"ip_filter": ["10.0.0.0/8"]',
                      '"ip_filter": ["10.0.0.0/8"], "ip_filter": ["0.0.0.0/0"]')
    doc = doc.replace('"name": "pg-prod-1"', '"name": "pg-prod-1", "name": "pg-prod-2"')
    code, err = validate(write(tmp_path, doc, "spec.json"))
    assert code == 2, err
    assert sorted(err.splitlines()) == [
        "error: services[0].nodes[0].name: key given twice in one object; the last would "
        "silently win",
        "error: services[0].user_config.ip_filter: key given twice in one object; the last "
        "would silently win"], err


# --- YAML 1.2 core ---------------------------------------------------------------------------

@pytest.mark.parametrize("edit, path, fragment", [
    (("enable_ipv6: true", "enable_ipv6: yes"), "services[0].user_config.enable_ipv6", "boolean"),
    (("enable_ipv6: true", "enable_ipv6: on"), "services[0].user_config.enable_ipv6", "boolean"),
    (("enable_ipv6: true", "enable_ipv6: 1"), "services[0].user_config.enable_ipv6", "boolean"),
    (("base_port: 14000", "base_port: 4:10:00"), "project.base_port", "integer"),
    (("base_port: 14000", 'base_port: "14000"'), "project.base_port", "integer"),
    (("base_port: 14000", "base_port: 14_000"), "project.base_port", "integer"),
    (("base_port: 14000", "base_port: 14000.0"), "project.base_port", "integer"),
    (("base_port: 14000", "base_port: 014000"), "project.base_port",
     "014000 has a leading zero: octal in YAML 1.1, decimal in YAML 1.2; write 14000"),
    (("base_port: 14000", "base_port: !!int 14000"), "project.base_port",
     "YAML tag !!int: tags are not accepted"),
    (("base_port: 14000", "base_port: " + "9" * 50), "project.base_port", "more than 40 digits"),
    (("name: acme", "name: null"), "project.name", "string"),
    (("name: acme", "name: 2024-01-01"), "project.name", "pattern"),  # a string, not a date
])
def test_yaml_12_core_values_only(tmp_path: Path, edit: tuple[str, str], path: str,
                                  fragment: str) -> None:
    assert edit[0] in GOOD_YAML
    errors = errors_of(write(tmp_path, GOOD_YAML.replace(edit[0], edit[1], 1)))
    assert any(e.startswith(f"{path}: ") and fragment in e for e in errors), errors


@pytest.mark.parametrize("text, value", [
    ("x: TRUE", True), ("x: False", False), ("x: ~", None), ("x:", None), ("x: NULL", None),
    ("x: 0x36b0", 14000), ("x: 0o33260", 14000), ("x: -12", -12), ("x: +12", 12), ("x: 0", 0),
    ("x: yes", "yes"), ("x: off", "off"), ("x: 4:10:00", "4:10:00"), ("x: 1_000", "1_000"),
    ("x: '014000'", "014000"), ("x: 10.0.0.0/8", "10.0.0.0/8"), ("x: 1.5", 1.5),
    ("x: .inf", float("inf")), ("x: <<", "<<"), ("x: 0b101", "0b101"), ("x: 1e3", 1000.0),
])
def test_plain_scalars_resolve_by_the_core_schema(text: str, value: Any) -> None:
    assert load_yaml(text, "x") == {"x": value}


@pytest.mark.parametrize("text, fragment", [
    ("a: 1\n---\na: 2\n", "more than one YAML document"),
    ("? [a, b]\n: 1\n", "a mapping key that is a list or a mapping"),
    ("a: !!python/object:os.system x\n", "YAML tag !!python/object:os.system"),
    ("a: !custom x\n", "YAML tag !custom"),
    ("a: [1, 2\n", "invalid YAML at line 2, column 1: did not find expected ',' or ']'"),
])
def test_yaml_that_a_spec_never_needs_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        load_yaml(text, "spec.yaml")
    assert any(fragment in line for line in info.value.lines()), info.value.lines()


def test_every_example_reads_as_pyyaml_reads_it() -> None:
    """The examples hold nothing on which YAML 1.1 and 1.2 disagree."""
    for example in sorted(EXAMPLES.glob("*.yaml")):
        assert read_document(example) == yaml.safe_load(example.read_text()), example.name


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"),
                              exclude_characters="\x85\u2028\u2029\ufeff\ufffe\uffff"),
                max_size=20)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=False,
                                                                           allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(doc=_JSON, indent=st.sampled_from([None, 2]))
def test_yaml_reads_json_as_the_json_reader_does(doc: Any, indent: int | None) -> None:
    """YAML 1.2 is a superset of JSON: both readers give the same document."""
    text = json.dumps(doc, ensure_ascii=False, indent=indent)
    assert load_yaml(text, "x") == read_json(text) == doc


@pytest.mark.parametrize("text, fragment", [
    ('{"a": NaN}', "NaN is not a JSON number"),
    ('{"a": -Infinity}', "-Infinity is not a JSON number"),
    ('{"a": ' + "1" * 41 + "}", "more than 40 digits"),
    ('{"a": ["\\ud800"]}', "a[0]: a lone UTF-16 surrogate"),
    ('{"a": 1,}', "invalid JSON at line 1, column 9"),
])
def test_json_that_is_not_strictly_json_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        read_json(text)
    assert any(fragment in line for line in info.value.lines()), info.value.lines()


def test_check_text_takes_utf8_only() -> None:
    assert check_text("é".encode(), "x") == "é"
    with pytest.raises(SpecError, match="not UTF-8"):
        check_text(b"\xc3", "x")


def test_a_tagged_mapping_key_is_an_input_error_at_its_path(tmp_path: Path) -> None:
    """Found by bench/fuzz_input.py: a tag on a key ended in a TypeError (the path held the
    reader's "no key yet" marker); it is an input error naming the key, exit 2."""
    path = tmp_path / "spec.yaml"
    path.write_text("integrations:\n- ? ''\n  : !!str description: null\n  source: s0\n"
                    "project: {name: p}\n")
    result = run_nodewall("validate", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: integrations[0][<key of 0 characters>] (key): YAML tag !!str: tags are not "
        "accepted in a spec (values are plain YAML 1.2) (line 3, column 5)"], result.stderr
    for tag in ("!!binary", "!!set", "!!timestamp", "!!int", "!!python/object:os.system"):
        with pytest.raises(SpecError, match=r"\(key\): YAML tag"):
            load_yaml(f"project:\n  {tag} name: p\n", "spec.yaml")


def test_a_mapping_key_that_is_not_a_name_is_never_quoted(tmp_path: Path) -> None:
    """Found by bench/fuzz_input.py: a description written as a key of an ip_filter entry was
    quoted in the "Extra inputs" error; an unknown key that is not a plain name is shown by its
    length only (it may be any customer text), a plain one by name."""
    text = ("project: {name: p, base_port: 10000, typo_key: 1}\n"
            "platform: {management_networks: [192.0.2.0/28]}\n"
            "services:\n- name: s\n  type: pg\n  cloud: aws-eu-west-1\n"
            "  nodes: [{name: n1, addresses: [10.0.0.1]}]\n"
            "  user_config:\n    ip_filter:\n"
            "    - {network: 10.1.0.0/16, \"office ' OR 1=1 --\": x}\n")
    with pytest.raises(SpecError) as caught:
        parse_spec(load_yaml(text, "spec.yaml"))
    lines = caught.value.lines()
    assert "project.typo_key: Extra inputs are not permitted" in lines, lines
    assert ("services[0].user_config.ip_filter[0][<key of 18 characters>]: Extra inputs are "
            "not permitted") in lines, lines
    assert not any("OR 1=1" in line for line in lines)
