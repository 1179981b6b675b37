"""JSON schema -> GBNF: llama.cpp's expected grammars, acceptance of valid / rejection of invalid documents, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from emberllm.grammar.json_schema import IGNORED_KEYWORDS, UnsupportedSchemaError, json_object_grammar, schema_to_gbnf

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the example documents (test extra)")

LLAMACPP = json.loads((Path(__file__).parent / "json_schema" / "llamacpp_cases.json").read_text(encoding="utf-8"))

# llama.cpp cases where emberllm deliberately emits another grammar (or an error), and why
KNOWN_DIFFERENCES = {
    "regexp quote": "a literal '\"' in a pattern is written JSON-escaped (\\\"), keeping the output valid JSON",
    "regexp": "'.' matches one JSON string character (never a raw '\"' or '\\\\'), not [^\\x0A\\x0D]",
    "required + optional + additional props": "extra keys that are a proper prefix of a property name are allowed",
    "optional props with common prefix": "extra keys that are a proper prefix of a property name are allowed",
    "unanchored regexp": "an unanchored pattern is honoured (any characters around it), not widened to any string",
    "regexp with unsupported shorthand": "\\d \\w \\s are supported, not widened to any string",
    "regexp with escaped hyphen outside a character class": "literals are written decoded ('a-b', same language)",
    "unsupported regexp in a property": "an unsupported pattern is an error, not widened to any string",
}


def _trim(text: str) -> str:
    """llama.cpp's test normalisation: strip, and strip each line's indentation."""
    return re.sub(r"(^|\n)[ \t]+", r"\1", text.strip(" \n\r\t"))


def _matcher(grammar: str):
    """A matcher for the grammar (skips until the grammar engine is there)."""
    matcher = pytest.importorskip("emberllm.grammar.matcher", reason="the GBNF matcher is not there yet")
    return matcher.Matcher(grammar)


@pytest.mark.parametrize("case", [c for c in LLAMACPP["cases"] if c["name"] not in KNOWN_DIFFERENCES],
                         ids=lambda c: c["name"])
def test_same_grammar_as_llamacpp(case):
    if not case["ok"]:
        with pytest.raises(UnsupportedSchemaError):
            schema_to_gbnf(case["schema"])
        return
    assert _trim(schema_to_gbnf(case["schema"])) == case["grammar"]


def test_known_differences_are_llamacpp_cases():
    names = {c["name"] for c in LLAMACPP["cases"]}
    assert set(KNOWN_DIFFERENCES) <= names
    assert len(names) - len(KNOWN_DIFFERENCES) >= 70


@pytest.mark.parametrize("name", sorted(KNOWN_DIFFERENCES))
def test_known_differences_still_accept_what_llamacpp_meant(name):
    case = next(c for c in LLAMACPP["cases"] if c["name"] == name)
    if name == "unsupported regexp in a property":
        with pytest.raises(UnsupportedSchemaError, match=r"'pattern' at #/properties/a"):
            schema_to_gbnf(case["schema"])
        return
    grammar = schema_to_gbnf(case["schema"])
    assert _trim(grammar) != case["grammar"]
    _matcher(grammar)  # it parses


# (id, schema, valid documents, invalid documents): valid ones must validate with jsonschema and be accepted by the
# grammar (compact and indented); invalid ones must fail jsonschema and be rejected. Objects list their keys in the
# schema's order (llama.cpp's grammars fix the order: required keys first, then optional ones).
UUID = "123e4567-e89b-12d3-a456-426614174000"
SCHEMAS: list[tuple[str, dict, list, list]] = [
    ("person", {
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1}, "age": {"type": "integer", "minimum": 0,
                                                                            "maximum": 150},
                       "email": {"type": "string", "format": "email"}},
        "required": ["name", "age"], "additionalProperties": False,
    }, [{"name": "Zoë", "age": 0}, {"name": "A", "age": 150, "email": "a@b.c"}],
        [{"name": "", "age": 3}, {"name": "A", "age": 151}, {"name": "A"}, {"name": "A", "age": 1, "x": 1},
         {"name": "A", "age": -1}]),
    ("nested objects", {
        "type": "object",
        "properties": {"user": {"type": "object", "properties": {
            "id": {"type": "string", "format": "uuid"},
            "address": {"type": "object", "properties": {"street": {"type": "string"},
                                                         "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                        "required": ["street", "zip"]}},
            "required": ["id", "address"]}},
        "required": ["user"],
    }, [{"user": {"id": UUID, "address": {"street": "Main St 1", "zip": "12345"}}}],
        [{"user": {"id": "not-a-uuid", "address": {"street": "x", "zip": "12345"}}},
         {"user": {"id": UUID, "address": {"street": "x", "zip": "1234"}}}, {"user": {"id": UUID}}]),
    ("array of objects", {
        "type": "array", "minItems": 1, "maxItems": 3,
        "items": {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer",
                                                                                      "minimum": 1}},
                  "required": ["sku", "qty"]},
    }, [[{"sku": "a", "qty": 1}], [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 30}, {"sku": "c", "qty": 4}]],
        [[], [{"sku": "a", "qty": 0}], [{"sku": "a", "qty": 1}] * 4, [{"qty": 1}]]),
    ("string enum", {"enum": ["red", "green", "blue"]}, ["red", "blue"], ["Red", "yellow", 1]),
    ("mixed enum", {"enum": [1, "two", None, True, 2.5]}, [1, "two", None, True, 2.5], [2, "one", False, 2.4]),
    ("const object", {"const": {"a": 1, "b": [True]}}, [{"a": 1, "b": [True]}], [{"a": 2, "b": [True]}, {"a": 1}]),
    ("$defs refs", {
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                            "required": ["x", "y"], "additionalProperties": False}},
        "type": "object", "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}},
        "required": ["from", "to"], "additionalProperties": False,
    }, [{"from": {"x": 0, "y": -1.5}, "to": {"x": 1e3, "y": 2}}],
        [{"from": {"x": 0}, "to": {"x": 1, "y": 2}}, {"from": {"x": "0", "y": 1}, "to": {"x": 1, "y": 2}}]),
    ("recursive tree", {
        "$ref": "#/definitions/node",
        "definitions": {"node": {"type": "object", "properties": {
            "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}},
            "required": ["value"], "additionalProperties": False}},
    }, [{"value": 1}, {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}, {"value": 4}]}],
        [{"value": 1, "children": [{"children": []}]}, {"value": 1.5}]),
    ("anyOf string or integer", {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]},
     ["abc", "", -42], ["abcd", 1.5, None]),
    ("oneOf tagged objects", {
        "oneOf": [
            {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
             "required": ["kind", "r"], "additionalProperties": False},
            {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "number"}},
             "required": ["kind", "side"], "additionalProperties": False},
        ],
        "discriminator": {"propertyName": "kind"},
    }, [{"kind": "circle", "r": 1}, {"kind": "square", "side": 2}],
        [{"kind": "circle", "side": 1}, {"kind": "triangle", "r": 1}]),
    ("nullable via type list", {"type": ["string", "null"], "maxLength": 2}, ["ab", None], ["abc", 1]),
    ("allOf merges object properties", {
        "allOf": [
            {"type": "object", "properties": {"id": {"type": "integer"}}},
            {"type": "object", "properties": {"name": {"type": "string"}}},
        ],
    }, [{"id": 1, "name": "x"}], [{"id": "1", "name": "x"}, {"id": 1, "name": 2}]),
    ("phone pattern", {"type": "string", "pattern": r"^\(\d{3}\) \d{3}-\d{4}$"},
     ["(555) 123-4567"], ["555-123-4567", "(555) 123-456"]),
    ("alternation pattern", {"type": "string", "pattern": "^(cat|dog)s?$"}, ["cat", "dogs"], ["cow", "cats!"]),
    ("unanchored pattern", {"type": "string", "pattern": "[0-9]{2}"}, ["ab12cd", "99", "x\"12"], ["a1b2", ""]),
    ("pattern with quotes and classes", {"type": "string", "pattern": '^say "[^"\\\\]+"\\.?$'},
     ['say "hi"', 'say "a b".'], ['say "a"b"', "say hi", 'say "a\\b"']),
    ("date format", {"type": "string", "format": "date"}, ["2024-02-29", "1999-12-31"], ["2024-13-01", "24-01-01"]),
    ("date-time format", {"type": "string", "format": "date-time"},
     ["2024-02-29T12:30:00Z", "2024-02-29T23:59:59.123+02:00"], ["2024-02-29 12:30:00Z", "2024-02-29T25:00:00Z"]),
    ("time format", {"type": "string", "format": "time"}, ["08:00:00Z", "23:59:59-05:00"], ["8:00:00Z", "08:00"]),
    ("uuid format", {"type": "string", "format": "uuid"}, [UUID], ["123e4567e89b12d3a456426614174000"]),
    ("integer range across zero", {"type": "integer", "minimum": -10, "maximum": 10},
     [-10, -1, 0, 7, 10], [-11, 11, 100, 1.5]),
    ("integer exclusive bounds", {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
     [1, 50, 99], [0, 100, -5]),
    ("integer minimum only", {"type": "integer", "minimum": 1000}, [1000, 1234, 99999], [999, 0, -1000]),
    ("non-negative number", {"type": "number", "minimum": 0}, [0, 0.5, 12.25, 3e5], [-0.5, -1]),
    ("string length bounds", {"type": "string", "minLength": 2, "maxLength": 4}, ["ab", "abcd", "é\n"],
     ["a", "abcde"]),
    ("additionalProperties true", {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": True,
    }, [{"a": 1}, {"a": 1, "b": [1, {"c": None}], "ab": "x"}], [{"a": "1"}, {"b": 2}]),
    ("additionalProperties schema", {
        "type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": {"type": "integer"},
    }, [{"name": "x", "n": 1}, {"na": 2}, {}], [{"name": "x", "n": "1"}, {"name": 1}]),
    ("any object", {"type": "object"}, [{}, {"a": [1, "b", None]}], [[], "x", None]),
    ("tuple", {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False,
               "minItems": 2},
     [["a", 1]], [["a"], [1, "a"], ["a", 1, 2]]),
    ("array of enums", {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}, [[], ["a", "b"]],
     [["a", "b", "a"], ["c"]]),
    ("boolean and null", {"type": "object", "properties": {"ok": {"type": "boolean"}, "none": {"type": "null"}},
                          "required": ["ok", "none"]}, [{"ok": False, "none": None}], [{"ok": 0, "none": None}]),
    ("empty schema", {}, [1, "x", None, [True, {"a": {}}], {"b": -2.5e-3}], []),
    ("pydantic-style model", {
        "$defs": {"Color": {"enum": ["red", "green"], "title": "Color", "type": "string"}},
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "color": {"$ref": "#/$defs/Color", "description": "the colour"},
            "tags": {"anyOf": [{"items": {"type": "string"}, "type": "array"}, {"type": "null"}], "default": None,
                     "title": "Tags"},
        },
        "required": ["name", "color"], "title": "Item", "type": "object",
    }, [{"name": "x", "color": "red"}, {"name": "x", "color": "green", "tags": None},
        {"name": "x", "color": "red", "tags": ["a", "b"]}],
        [{"name": "x", "color": "blue"}, {"name": "x", "color": "red", "tags": [1]}]),
]

# the formats the grammar enforces; others (email, uri...) are annotations it ignores unless strict
_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checkers = {k: v for k, v in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers.items()
                     if k in ("date", "time", "date-time", "uuid")}


def _valid(schema: dict, doc) -> bool:
    """jsonschema's verdict (the enforced formats checked)."""
    return jsonschema.Draft202012Validator(schema, format_checker=_FORMATS).is_valid(doc)


def test_at_least_25_schemas():
    assert len(SCHEMAS) >= 25
    assert len({s[0] for s in SCHEMAS}) == len(SCHEMAS)


@pytest.mark.parametrize(("schema", "valid", "invalid"), [s[1:] for s in SCHEMAS], ids=[s[0] for s in SCHEMAS])
def test_examples_agree_with_jsonschema(schema, valid, invalid):
    assert [d for d in valid if not _valid(schema, d)] == []
    assert [d for d in invalid if _valid(schema, d)] == []


@pytest.mark.parametrize(("schema", "valid", "invalid"), [s[1:] for s in SCHEMAS], ids=[s[0] for s in SCHEMAS])
def test_grammar_parses(schema, valid, invalid):
    gbnf = pytest.importorskip("emberllm.grammar.gbnf", reason="the GBNF parser is not there yet")
    grammar = schema_to_gbnf(schema)
    assert grammar.startswith(tuple("abcdefghijklmnopqrstuvwxyz"))
    gbnf.parse(grammar)


# const / enum values are literals written compactly, as llama.cpp writes them (no whitespace inside)
COMPACT_ONLY = {"const object"}


@pytest.mark.parametrize(("name", "schema", "valid", "invalid"), SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_grammar_accepts_valid_and_rejects_invalid(name, schema, valid, invalid):
    m = _matcher(schema_to_gbnf(schema))
    for doc in valid:
        texts = [json.dumps(doc, separators=(",", ":"), ensure_ascii=False)]
        if name not in COMPACT_ONLY:
            texts += [json.dumps(doc), json.dumps(doc, indent=2)]
        for text in texts:
            assert m.accepts(text), text
    for doc in invalid:
        for text in (json.dumps(doc), json.dumps(doc, separators=(",", ":"))):
            assert not m.accepts(text), text


def test_whitespace_is_bounded():
    m = _matcher(schema_to_gbnf({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}))
    assert m.accepts('{\n  "a": 1\n}') and m.accepts('{"a":1}') and m.accepts('{ "a" : 1 }')
    assert not m.accepts('{\n\n\n"a": 1}')
    assert not m.accepts('{"a": 1}' + " ")
    assert not m.accepts('{"a":' + " " * 22 + "1}") and m.accepts('{"a":\n' + " " * 20 + "1}")


def test_json_object_grammar():
    grammar = json_object_grammar()
    assert grammar.splitlines()[[line.split(" ::=")[0] for line in grammar.splitlines()].index("root")] == \
        "root ::= object"
    m = _matcher(grammar)
    assert m.accepts('{"a": [1, 2.5e-3, "x", null, true, {"b": {}}]}') and m.accepts("{}")
    assert not m.accepts("[]") and not m.accepts('"x"') and not m.accepts('{"a": }')


@pytest.mark.parametrize(("schema", "keyword", "path"), [
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not", "#/properties/a"),
    ({"if": {"type": "string"}, "then": {"minLength": 1}}, "if", "#"),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems", "#"),
    ({"type": "object", "minProperties": 1}, "minProperties", "#"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties", "#"),
    ({"type": "integer", "multipleOf": 5}, "multipleOf", "#"),
    ({"type": "number", "maximum": 5}, "maximum", "#"),
    ({"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}}, "exclusiveMinimum", "#/items"),
    ({"$ref": "https://example.com/schema.json"}, "$ref", "#"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "$ref", "#/properties/a"),
    ({"type": "string", "pattern": "^(?=a)a$"}, "pattern", "#"),
    ({"type": "string", "pattern": "^a\\bc$"}, "pattern", "#"),
    ({"type": "string", "pattern": "^[0-9]+$", "maxLength": 3}, "maxLength", "#"),
    ({"type": "string", "format": "date", "minLength": 3}, "minLength", "#"),
    ({"type": "kaboom"}, "type", "#"),
    ({"type": "object", "properties": {"a": {}}, "required": ["a", "b"]}, "required", "#"),
    ({"anyOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"type": "string"}}, "maxLength": 3}, "maxLength", "#"),
    ({"allOf": [{"type": "string"}, {"minLength": 2}]}, "allOf", "#/allOf/0"),
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "allOf": [{"required": ["a"]}]}, "allOf", "#"),
    ({"minimum": 3}, "minimum", "#"),
    ({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}}, "items", "#"),
    ({"type": "object", "properties": {"a": False}}, "false", "#/properties/a"),
    ({"type": "object", "properties": {"a/b": {"enum": [1], "type": "string"}}}, "enum", "#/properties/a~1b"),
    ({"type": "integer", "minimum": 5, "maximum": 4}, "minimum", "#"),
    ({"unknownKeyword": 1, "type": "string"}, "unknownKeyword", "#"),
])
def test_unsupported_keywords_name_keyword_and_path(schema, keyword, path):
    with pytest.raises(UnsupportedSchemaError) as err:
        schema_to_gbnf(schema)
    assert (err.value.keyword, err.value.path) == (keyword, path)
    assert str(err.value).startswith(f"unsupported JSON schema keyword {keyword!r} at {path}")
    assert isinstance(err.value, ValueError)


def test_error_message_example():
    with pytest.raises(UnsupportedSchemaError, match=r"^unsupported JSON schema keyword 'not' at #/properties/a$"):
        schema_to_gbnf({"type": "object", "properties": {"a": {"not": {}}}})


def test_keywords_of_other_types_and_no_op_values_are_accepted():
    assert schema_to_gbnf({"type": "integer", "minLength": 3, "uniqueItems": True, "minProperties": 1}) == \
        schema_to_gbnf({"type": "integer"})
    assert schema_to_gbnf({"type": "array", "items": {"type": "string"}, "uniqueItems": False}) == \
        schema_to_gbnf({"type": "array", "items": {"type": "string"}})
    with pytest.raises(UnsupportedSchemaError, match="'minProperties'"):
        schema_to_gbnf({"type": "object", "minProperties": 1})


def test_ignored_keywords_do_not_change_the_grammar():
    base = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    annotated = {**base, **{k: {} if k in ("$defs", "definitions") else "x" for k in IGNORED_KEYWORDS}}
    annotated["properties"] = {"a": {"type": "string", "title": "A", "description": "d", "examples": ["e"],
                                     "default": "x", "deprecated": False, "readOnly": True}}
    assert schema_to_gbnf(annotated) == schema_to_gbnf(base)
    assert {"title", "description", "examples", "$schema", "$id", "default", "deprecated", "readOnly"} <= \
        IGNORED_KEYWORDS


def test_strict_mode():
    schema = {  # an OpenAI strict json_schema: closed objects, every property required, nullable via type lists
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": ["integer", "null"]},
                       "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city", "days", "unit"], "additionalProperties": False,
    }
    assert schema_to_gbnf(schema, strict=True) == schema_to_gbnf(schema)
    m = _matcher(schema_to_gbnf(schema, strict=True))
    assert m.accepts('{"city": "Oslo", "days": null, "unit": "c"}')
    assert not m.accepts('{"city": "Oslo", "unit": "c"}')
    assert not m.accepts('{"city": "Oslo", "days": 1, "unit": "c", "x": 1}')
    loose = {"type": "string", "format": "email"}
    assert schema_to_gbnf(loose) == schema_to_gbnf({"type": "string"})
    with pytest.raises(UnsupportedSchemaError, match="'format' at #"):
        schema_to_gbnf(loose, strict=True)


def test_not_strings_allows_prefixes_of_property_names():
    m = _matcher(schema_to_gbnf({"type": "object", "properties": {"abc": {"type": "integer"}},
                                 "additionalProperties": {"type": "integer"}}))
    assert m.accepts('{"ab": 1}') and m.accepts('{"abcd": 1}') and m.accepts('{"abc": 1, "x": 2}')
    assert not m.accepts('{"x": 1, "abc": 2}')


def test_pattern_literals_are_json_escaped():
    m = _matcher(schema_to_gbnf({"type": "string", "pattern": '^a"b\\\\c\\td$'}))
    assert m.accepts(json.dumps('a"b\\c\td'))
    assert not m.accepts('"a"b\\c\td"')


def test_refs_with_reserved_and_conflicting_names():
    schema = {"type": "object", "properties": {"string": {"type": "object", "properties": {
        "root": {"$ref": "#/$defs/string"}}, "required": ["root"]}}, "required": ["string"],
        "$defs": {"string": {"type": "integer", "maximum": 9}}}
    grammar = schema_to_gbnf(schema)
    names = [line.split(" ::=")[0] for line in grammar.splitlines()]
    assert len(names) == len(set(names)) and names == sorted(names)
    m = _matcher(grammar)
    assert m.accepts('{"string": {"root": -3}}') and not m.accepts('{"string": {"root": 10}}')


# patterns checked against Python's re (ASCII mode, search semantics as JSON schema's pattern, "$" only at the very
# end as in ECMAScript) on random strings, each with some strings it matches
PATTERNS = {
    "^[a-c]+$": ["abc", "a"], "^a?b*c{2}$": ["cc", "abbcc"], "^(ab|c)+d?$": ["abcd", "c"], "^[^a]{1,3}$": ["b\"\\"],
    r"^\d{2}-\w+$": ["12-a_B", "00-0"], r"^\s*x\s*$": [" x\t", "\nx"], r"^\D\W\S$": ["a-b", "a b"],
    '^"[^"]*"$': ['""', '"a\\b"'], r"^a\\b$": ["a\\b"], r"^a\.b$": ["a.b"], "^.{2}$": ['"\\', "é/"],
    "^(?:a|b)(c|d){0,2}$": ["a", "bcd"], "b+": ["xbx", "b"], "^a": ["a\n"], "c$": ["\"c"],
    "^[a-c\\-]{2,}$": ["a-", "--c"], "^(a(b(c)?)?)+$": ["aababc"], r"^[\"\\]+$": ['"\\"'], "^é+$": ["éé"],
    r"^\x41\u0062$": ["Ab"], "^[\\n\\t]a$": ["\na", "\ta"], "^(|a)b$": ["b", "ab"], "^[/x]\\/$": ["//", "x/"],
}
ALPHABET = ["a", "b", "c", "d", "A", "0", "7", "-", "_", ".", " ", '"', "\\", "\n", "\t", "é", "x", "/"]


def _python_regex(pattern: str) -> re.Pattern:
    """The pattern for Python's re with ECMAScript's meaning of a final "$"."""
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern, re.ASCII)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_pattern_matches_like_python_re(pattern):
    import random

    rng = random.Random(pattern)
    m = _matcher(schema_to_gbnf({"type": "string", "pattern": pattern}))
    regex = _python_regex(pattern)
    examples = PATTERNS[pattern]
    assert all(regex.search(s) for s in examples)
    strings = examples + [""] + ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6))) for _ in range(400)]
    wrong = [s for s in strings if m.accepts(json.dumps(s, ensure_ascii=False)) != bool(regex.search(s))]
    assert wrong == []


def _mutants(rng, doc, pool: list, n: int) -> list:
    """Random edits of a JSON document: a leaf replaced, a key dropped or added, an item dropped or repeated."""
    out = []
    for _ in range(n):
        out.append(_mutate(rng, json.loads(json.dumps(doc)), pool))
    return out


def _mutate(rng, doc, pool: list):
    """One random edit somewhere in ``doc``."""
    if isinstance(doc, dict) and doc and rng.random() < 0.7:
        key = rng.choice(list(doc))
        action = rng.random()
        if action < 0.2:
            del doc[key]
        elif action < 0.35:
            doc[rng.choice(["x", "zz", key + "x", key[:1]])] = rng.choice(pool)
        else:
            doc[key] = _mutate(rng, doc[key], pool)
        return doc
    if isinstance(doc, list) and doc and rng.random() < 0.7:
        i = rng.randrange(len(doc))
        action = rng.random()
        if action < 0.2:
            del doc[i]
        elif action < 0.35:
            doc.append(doc[i])
        else:
            doc[i] = _mutate(rng, doc[i], pool)
        return doc
    return rng.choice(pool)


POOL = [None, True, False, 0, -1, 1, 7, 150, 151, 1000, 1e3, -2.5, 0.5, "", "a", "abcd", "red", "circle", UUID,
        "12345", "2024-02-29", "08:00:00Z", "(555) 123-4567", [], ["a"], [1, 2], {}, {"a": 1}, {"x": 0, "y": 1}]


@pytest.mark.parametrize(("name", "schema", "valid", "invalid"), SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_grammar_never_accepts_an_invalid_document(name, schema, valid, invalid):
    import random

    rng = random.Random(name)
    m = _matcher(schema_to_gbnf(schema))
    docs = [d for v in valid for d in _mutants(rng, v, POOL + valid, 60)] + invalid + POOL
    accepted_invalid = [d for d in docs if m.accepts(json.dumps(d, separators=(",", ":"), ensure_ascii=False))
                        and not _valid(schema, d)]
    assert accepted_invalid == []


@pytest.mark.parametrize(("low", "high"), [
    (0, None), (1, None), (9, None), (25, None), (105, None), (115, None), (1000, None), (-5, None), (-1000, None),
    (None, 0), (None, 30), (None, 105), (None, -5), (None, -105), (-123, 42), (15, 300), (1005, 2003), (-2005, -1003),
])
def test_integer_bounds_exhaustively(low, high):
    schema = {"type": "integer", **({"minimum": low} if low is not None else {}),
              **({"maximum": high} if high is not None else {})}
    m = _matcher(schema_to_gbnf(schema))
    wrong = [x for x in range(-2100, 2100) if m.accepts(str(x)) != _valid(schema, x)]
    assert wrong == []
    assert not m.accepts("01") and not m.accepts("1.0") and not m.accepts("--1")


def _llama_cpp_python_converter():
    """llama-cpp-python's pure-Python json_schema_to_gbnf from its sdist in the cache (skips without it)."""
    import glob
    import importlib.util
    import os

    cache = os.environ.get("EMBERLLM_CACHE") or os.path.expanduser("~/.cache/emberllm")
    found = sorted(glob.glob(os.path.join(cache, "llamacpp", "llama_cpp_python-*", "llama_cpp", "llama_grammar.py")))
    if not found:
        pytest.skip("llama-cpp-python's sdist is not in the cache (build_scripts/build_llamacpp.py fetches it)")
    spec = importlib.util.spec_from_file_location("llama_cpp_python_grammar", found[-1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.json_schema_to_gbnf


@pytest.mark.parametrize(("name", "schema", "valid", "invalid"), SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_where_llama_cpp_python_disagrees_jsonschema_sides_with_us(name, schema, valid, invalid):
    import random

    convert = _llama_cpp_python_converter()
    try:  # its older converter fails on some schemas (definitions refs, \d escapes, unanchored patterns)
        reference = _matcher(convert(json.dumps(schema)))
    except Exception as err:  # any failure of the oracle only means there is nothing to compare
        pytest.skip(f"llama-cpp-python's converter cannot take this schema: {type(err).__name__}")
    ours = _matcher(schema_to_gbnf(schema))
    rng = random.Random(name)
    docs = valid + invalid + POOL + [d for v in valid for d in _mutants(rng, v, POOL + valid, 40)]
    wrong = []
    for doc in docs:
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        if reference.accepts(text) != ours.accepts(text) and ours.accepts(text) != _valid(schema, doc):
            wrong.append(text)
    assert wrong == []
