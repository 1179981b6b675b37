"""JSON schema -> GBNF grammar in llama.cpp's dialect, with the coverage of llama.cpp's json-schema-to-grammar.

``schema_to_gbnf(schema)`` returns the grammar text (rules sorted by name, ``root`` the start rule), the same text
llama.cpp emits for the schemas it handles. Where llama.cpp would silently loosen a schema (ignore a keyword it
cannot express, accept any string for an unsupported ``pattern``), this module raises ``UnsupportedSchemaError``
naming the keyword and its JSON pointer instead. Keywords that only annotate are ignored: ``IGNORED_KEYWORDS``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .regex_to_gbnf import PatternError, build_repetition, pattern_to_rule

__all__ = ["IGNORED_KEYWORDS", "UnsupportedSchemaError", "json_object_grammar", "schema_to_gbnf"]

# Keywords that do not constrain a value (annotations, containers of sub-schemas reached through $ref, vocabulary
# declarations): accepted anywhere and ignored.
IGNORED_KEYWORDS = frozenset({
    "$schema", "$id", "$comment", "$anchor", "$vocabulary", "$defs", "definitions", "title", "description",
    "examples", "example", "default", "deprecated", "readOnly", "writeOnly", "contentEncoding", "contentMediaType",
    "discriminator", "nullable", "externalDocs", "xml",
})

# Keywords that only constrain values of some JSON types: elsewhere they are no-ops and are skipped.
_TYPE_KEYWORDS: dict[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties", "minProperties", "maxProperties",
                         "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas",
                         "dependencies", "unevaluatedProperties"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains", "minContains",
                        "maxContains", "additionalItems", "unevaluatedItems"}),
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}),
}
# keyword values that constrain nothing (a keyword with any other value must be honoured or refused)
_NO_OP_VALUES = {"uniqueItems": False, "minProperties": 0, "minContains": 1}
_KEYWORD_OWNER = {kw: owner for owner, kws in _TYPE_KEYWORDS.items() for kw in kws}
_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})

SPACE_RULE = '| " " | "\\n"{1,2} [ \\t]{0,20}'
_INVALID_RULE_CHARS = re.compile(r"[^a-zA-Z0-9-]+")
_LITERAL_ESCAPES = {"\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}
_MAX_INT64 = (1 << 63) - 1


@dataclass(frozen=True)
class _Builtin:
    """A fixed rule and the fixed rules it uses."""

    content: str
    deps: tuple[str, ...] = ()


PRIMITIVE_RULES: dict[str, _Builtin] = {
    "boolean": _Builtin('("true" | "false")'),
    "decimal-part": _Builtin("[0-9]{1,16}"),
    "integral-part": _Builtin("[0] | [1-9] [0-9]{0,15}"),
    "number": _Builtin('("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)?',
                       ("integral-part", "decimal-part")),
    "integer": _Builtin('("-"? integral-part)', ("integral-part",)),
    "value": _Builtin("object | array | string | number | boolean | null",
                      ("object", "array", "string", "number", "boolean", "null")),
    "object": _Builtin('"{" space ( string ":" space value ("," space string ":" space value)* )? space "}"',
                       ("string", "value")),
    "array": _Builtin('"[" space ( value ("," space value)* )? space "]"', ("value",)),
    "uuid": _Builtin('"\\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
                     '[0-9a-fA-F]{12} "\\""'),
    "char": _Builtin('[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})'),
    "string": _Builtin('"\\"" char* "\\""', ("char",)),
    "null": _Builtin('"null"'),
}

STRING_FORMAT_RULES: dict[str, _Builtin] = {
    "date": _Builtin('[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )'),
    "time": _Builtin('([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
                     '( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )'),
    "date-time": _Builtin('date "T" time', ("date", "time")),
    "date-string": _Builtin('"\\"" date "\\""', ("date",)),
    "time-string": _Builtin('"\\"" time "\\""', ("time",)),
    "date-time-string": _Builtin('"\\"" date-time "\\""', ("date-time",)),
}

_FORMATS = {"date": "date-string", "time": "time-string", "date-time": "date-time-string", "uuid": "uuid",
            **{f"uuid{v}": "uuid" for v in range(1, 6)}}
_RESERVED_NAMES = frozenset({"root", *PRIMITIVE_RULES, *STRING_FORMAT_RULES})


class UnsupportedSchemaError(ValueError):
    """A JSON schema keyword (or keyword value) that the grammar cannot express."""

    def __init__(self, keyword: str, path: str, detail: str = "") -> None:
        """Name the keyword and the JSON pointer of the schema holding it."""
        self.keyword = keyword
        self.path = path
        self.detail = detail
        message = f"unsupported JSON schema keyword {keyword!r} at {path}"
        super().__init__(f"{message}: {detail}" if detail else message)


def format_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    return '"' + "".join(_LITERAL_ESCAPES.get(c, c) for c in text) + '"'


def _dump(value: Any) -> str:
    """Compact JSON text of a value, as llama.cpp's json::dump() writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _join_path(path: str, *tokens: str | int) -> str:
    """Extend a JSON pointer."""
    return path + "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def _json_type(value: Any) -> str:
    """The JSON schema type of a Python JSON value (integers are 'integer')."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_admits(type_name: str | None, value: Any) -> bool:
    """Whether a value is of the schema type (None: any type)."""
    actual = _json_type(value)
    return type_name is None or actual == type_name or (type_name == "number" and actual == "integer")


def _is_no_op(key: str, value: Any) -> bool:
    """Whether a keyword's value constrains nothing (``uniqueItems: false``...)."""
    no_op = _NO_OP_VALUES.get(key)
    return no_op is not None and type(value) is type(no_op) and value == no_op


def _known_format(schema: dict) -> bool:
    """Whether the schema names a ``format`` with a grammar rule."""
    fmt = schema.get("format")
    return isinstance(fmt, str) and fmt in _FORMATS


def _declares_type(schema: Any, type_name: Any) -> bool:
    """Whether a schema only admits values of ``type_name`` (by its ``type``, or an object by its properties)."""
    if not isinstance(schema, dict):
        return False
    if "type" in schema:
        return schema["type"] == type_name
    return type_name == "object" and ("properties" in schema or "additionalProperties" in schema)


def _is_any(schema: Any) -> bool:
    """Whether a schema constrains nothing (``true`` or only ignored keywords)."""
    return schema is True or (isinstance(schema, dict) and all(k in IGNORED_KEYWORDS for k in schema))


def _count(schema: dict, key: str, path: str, default: int | None) -> int | None:
    """A non-negative integer keyword's value."""
    if key not in schema:
        return default
    value = schema[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnsupportedSchemaError(key, path, "must be a non-negative integer")
    return value


def _bound(schema: dict, key: str, path: str) -> float | int:
    """A numeric bound keyword's value."""
    value = schema[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UnsupportedSchemaError(key, path, "must be a finite number")
    return value


def _integer_bounds(schema: dict, path: str) -> tuple[int | None, int | None]:
    """The tightest integer [min, max] from (exclusive) minimum / maximum (draft-4 boolean forms too)."""
    lows: list[int] = []
    highs: list[int] = []
    excl_min, excl_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if "minimum" in schema:
        low = _bound(schema, "minimum", path)
        lows.append(math.floor(low) + 1 if excl_min is True else math.ceil(low))
    if "maximum" in schema:
        high = _bound(schema, "maximum", path)
        highs.append(math.ceil(high) - 1 if excl_max is True else math.floor(high))
    if "exclusiveMinimum" in schema and not isinstance(excl_min, bool):
        lows.append(math.floor(_bound(schema, "exclusiveMinimum", path)) + 1)
    if "exclusiveMaximum" in schema and not isinstance(excl_max, bool):
        highs.append(math.ceil(_bound(schema, "exclusiveMaximum", path)) - 1)
    low, high = (max(lows) if lows else None), (min(highs) if highs else None)
    if low is not None and high is not None and low > high:
        raise UnsupportedSchemaError("minimum", path, f"no integer lies in [{low}, {high}]")
    return low, high


class _IntRangeWriter:
    """Writes llama.cpp's digit-range GBNF for an integer range (each bound optional)."""

    def __init__(self) -> None:
        """Start with empty output."""
        self.out: list[str] = []

    def text(self) -> str:
        """The written GBNF."""
        return "".join(self.out)

    def _digit_range(self, lo: str, hi: str) -> None:
        """A one-digit class."""
        self.out.append(f"[{lo}]" if lo == hi else f"[{lo}-{hi}]")

    def _more_digits(self, min_digits: int, max_digits: int | None) -> None:
        """``[0-9]`` repeated min..max times (None: unbounded)."""
        self.out.append("[0-9]")
        if min_digits == max_digits == 1:
            return
        self.out.append("{" + str(min_digits))
        if max_digits != min_digits:
            self.out.append("," + ("" if max_digits is None else str(max_digits)))
        self.out.append("}")

    def _uniform_range(self, lo: str, hi: str) -> None:
        """Numbers from ``lo`` to ``hi``, both with the same count of digits."""
        i = 0
        while i < len(lo) and i < len(hi) and lo[i] == hi[i]:
            i += 1
        if i > 0:
            self.out.append(f'"{lo[:i]}"')
        if i >= len(lo) or i >= len(hi):
            return
        if i > 0:
            self.out.append(" ")
        sub_len = len(lo) - i - 1
        if sub_len == 0:
            self.out.append(f"[{lo[i]}-{hi[i]}]")
            return
        lo_sub, hi_sub, zeros, nines = lo[i + 1 :], hi[i + 1 :], "0" * sub_len, "9" * sub_len
        to_reached = False
        self.out.append("(")
        if lo_sub == zeros:
            self._digit_range(lo[i], chr(ord(hi[i]) - 1))
            self.out.append(" ")
            self._more_digits(sub_len, sub_len)
        else:
            self.out.append(f"[{lo[i]}] (")
            self._uniform_range(lo_sub, nines)
            self.out.append(")")
            if ord(lo[i]) < ord(hi[i]) - 1:
                self.out.append(" | ")
                to_reached = hi_sub == nines
                self._digit_range(chr(ord(lo[i]) + 1), hi[i] if to_reached else chr(ord(hi[i]) - 1))
                self.out.append(" ")
                self._more_digits(sub_len, sub_len)
        if not to_reached:
            self.out.append(" | ")
            self._digit_range(hi[i], hi[i])
            self.out.append(" ")
            self._uniform_range(zeros, hi_sub)
        self.out.append(")")

    def write(self, low: int | None, high: int | None, decimals_left: int = 16, top_level: bool = True) -> None:
        """GBNF for integers in [low, high]."""
        if low is not None and high is not None:
            self._write_closed(low, high, decimals_left)
        elif low is not None:
            self._write_min(low, decimals_left, top_level)
        elif high is not None:
            self._write_max(high, decimals_left, top_level)
        else:
            raise ValueError("at least one bound is needed")

    def _write_closed(self, low: int, high: int, decimals_left: int) -> None:
        """Both bounds."""
        if low < 0 and high < 0:
            self.out.append('"-" (')
            self.write(-high, -low, decimals_left, True)
            self.out.append(")")
            return
        if low < 0:
            self.out.append('"-" (')
            self.write(0, -low, decimals_left, True)
            self.out.append(") | ")
            low = 0
        low_s, high_s = str(low), str(high)
        for digits in range(len(low_s), len(high_s)):
            self._uniform_range(low_s, "9" * digits)
            low_s = "1" + "0" * digits
            self.out.append(" | ")
        self._uniform_range(low_s, high_s)

    def _write_min(self, low: int, decimals_left: int, top_level: bool) -> None:
        """Only a lower bound."""
        if low < 0:
            self.out.append('"-" (')
            self.write(None, -low, decimals_left, False)
            self.out.append(") | [0] | [1-9] ")
            self._more_digits(0, decimals_left - 1)
        else:
            self._write_min_digits(str(low), decimals_left, top_level)

    def _write_min_digits(self, low_s: str, decimals_left: int, top_level: bool) -> None:
        """At least ``low_s``; below the top level it is the tail of a longer number and may start with zeros."""
        less = max(decimals_left - 1, 1)
        start = "1" if top_level else "0"
        if low_s.strip("0") == "":
            if top_level:
                self.out.append("[0] | [1-9] ")
                self._more_digits(0, less)
            else:
                self._more_digits(len(low_s), decimals_left)
        elif len(low_s) == 1:
            if low_s > start:
                self._digit_range(start, chr(ord(low_s) - 1))
                self.out.append(" ")
                self._more_digits(1, less)
                self.out.append(" | ")
            self._digit_range(low_s, "9")
            self.out.append(" ")
            self._more_digits(0, less)
        else:
            c = low_s[0]
            if c > start:
                self._digit_range(start, chr(ord(c) - 1))
                self.out.append(" ")
                self._more_digits(len(low_s), less)
                self.out.append(" | ")
            self._digit_range(c, c)
            self.out.append(" (")
            self._write_min_digits(low_s[1:], less, False)
            self.out.append(")")
            if c < "9":
                self.out.append(" | ")
                self._digit_range(chr(ord(c) + 1), "9")
                self.out.append(" ")
                self._more_digits(len(low_s) - 1, less)

    def _write_max(self, high: int, decimals_left: int, top_level: bool) -> None:
        """Only an upper bound."""
        if high >= 0:
            if top_level:
                self.out.append('"-" [1-9] ')
                self._more_digits(0, max(decimals_left - 1, 1))
                self.out.append(" | ")
            self.write(0, high, decimals_left, True)
        else:
            self.out.append('"-" (')
            self.write(-high, None, decimals_left, False)
            self.out.append(")")


def _class_char(c: str) -> str:
    """One character inside a GBNF character class, escaped where it would be syntax."""
    return f"\\x{ord(c):02X}" if c in "\\]-^" or ord(c) < 0x20 else c


class _Converter:
    """Walks a schema, collecting named GBNF rules."""

    def __init__(self, root: Any, strict: bool) -> None:
        """Start with the ``space`` rule."""
        self.root = root
        self.strict = strict
        self.rules: dict[str, str] = {"space": SPACE_RULE}
        self.refs_being_resolved: set[str] = set()

    def format_grammar(self) -> str:
        """The rules, sorted by name, one per line."""
        return "".join(f"{name} ::= {self.rules[name]}\n" for name in sorted(self.rules))

    def add_rule(self, name: str, rule: str) -> str:
        """Add a rule under a free name derived from ``name`` (or an identical existing one); return the name."""
        esc = _INVALID_RULE_CHARS.sub("-", name)
        if self.rules.get(esc, rule) == rule:
            self.rules[esc] = rule
            return esc
        i = 0
        while f"{esc}{i}" in self.rules and self.rules[f"{esc}{i}"] != rule:
            i += 1
        self.rules[f"{esc}{i}"] = rule
        return f"{esc}{i}"

    def add_primitive(self, name: str, builtin: _Builtin) -> str:
        """Add a fixed rule and the fixed rules it uses."""
        added = self.add_rule(name, builtin.content)
        for dep in builtin.deps:
            if dep not in self.rules:
                self.add_primitive(dep, PRIMITIVE_RULES.get(dep) or STRING_FORMAT_RULES[dep])
        return added

    def _visit_primitive(self, rule_name: str, type_name: str) -> str:
        """A fixed rule for a type (named ``root`` at the top)."""
        return self.add_primitive("root" if rule_name == "root" else type_name, PRIMITIVE_RULES[type_name])

    @staticmethod
    def _check(schema: dict, path: str, used: set[str], type_name: str | None) -> None:
        """Raise for the first keyword that constrains values of ``type_name`` but was not used."""
        for key in schema:
            if key in used or key in IGNORED_KEYWORDS or _is_no_op(key, schema[key]):
                continue
            owner = _KEYWORD_OWNER.get(key)
            if owner is not None and type_name is not None and owner != type_name:
                if not (owner == "number" and type_name == "integer"):
                    continue
            raise UnsupportedSchemaError(key, path)

    def visit(self, schema: Any, name: str, path: str) -> str:
        """Add the rules for ``schema``; return the name of its rule."""
        rule_name = name + "-" if name in _RESERVED_NAMES else (name or "root")
        if _is_any(schema):
            return self.add_rule(rule_name, self.add_primitive("value", PRIMITIVE_RULES["value"]))
        if not isinstance(schema, dict):
            raise UnsupportedSchemaError("false" if schema is False else "schema", path, "a schema must be an object")
        if "$ref" in schema:
            self._check(schema, path, {"$ref"}, None)
            return self.add_rule(rule_name, self._resolve_ref(schema["$ref"], path))
        if "oneOf" in schema or "anyOf" in schema:
            return self._visit_union(schema, name, rule_name, path)
        type_value = schema.get("type")
        if isinstance(type_value, list):
            return self._visit_type_list(schema, type_value, name, rule_name, path)
        if type_value is not None and (not isinstance(type_value, str) or type_value not in _JSON_TYPES):
            raise UnsupportedSchemaError("type", path, f"unrecognized type {type_value!r}")
        if "const" in schema or "enum" in schema:
            return self._visit_constants(schema, type_value, rule_name, path)
        return self._visit_typed(schema, type_value, name, rule_name, path)

    def _visit_typed(self, schema: dict, type_name: str | None, name: str, rule_name: str, path: str) -> str:
        """A schema without $ref / anyOf / const / enum, by its type (or, untyped, by its keywords)."""
        has_properties = "properties" in schema or schema.get("additionalProperties", True) is not True
        if type_name is None:
            if has_properties:
                type_name = "object"
            elif "allOf" in schema:
                return self._visit_all_of(schema, name, rule_name, path)
            elif "items" in schema or "prefixItems" in schema:
                type_name = "array"
            elif any(k in schema for k in ("pattern", "minLength", "maxLength")) or _known_format(schema):
                type_name = "string"
            else:
                unknown_format = "format" in schema and not self.strict and isinstance(schema["format"], str)
                self._check(schema, path, {"format"} if unknown_format else set(), None)
                return self.add_rule(rule_name, self.add_primitive("value", PRIMITIVE_RULES["value"]))
        if "allOf" in schema and type_name in ("object", "string") and not has_properties:
            return self._visit_all_of(schema, name, rule_name, path)
        visitor = {"object": self._visit_object, "array": self._visit_array, "string": self._visit_string,
                   "integer": self._visit_integer, "number": self._visit_number}.get(type_name)
        if visitor is not None:
            return visitor(schema, name, rule_name, path)
        self._check(schema, path, {"type"}, type_name)
        return self._visit_primitive(rule_name, type_name)

    def _visit_union(self, schema: dict, name: str, rule_name: str, path: str) -> str:
        """``anyOf`` / ``oneOf`` (oneOf as anyOf); sibling keywords are pushed into each alternative."""
        key = "oneOf" if "oneOf" in schema else "anyOf"
        alts = schema[key]
        if not isinstance(alts, list) or not alts:
            raise UnsupportedSchemaError(key, path, "must be a non-empty array of schemas")
        siblings = {k: v for k, v in schema.items() if k != key and k not in IGNORED_KEYWORDS}
        for other in ("oneOf", "anyOf", "allOf", "$ref"):
            if other in siblings:
                raise UnsupportedSchemaError(other, path, f"alongside {key}")
        merged = [self._merge_siblings(alt, siblings, path) for alt in alts]
        alt_path = _join_path(path, key)
        rules = [self.visit(alt, f"{name}-{i}" if name else f"alternative-{i}", _join_path(alt_path, i))
                 for i, alt in enumerate(merged)]
        return self.add_rule(rule_name, " | ".join(rules))

    def _merge_siblings(self, alt: Any, siblings: dict, path: str) -> Any:
        """An alternative with its parent's other keywords added (they must not clash)."""
        if not siblings:
            return alt
        if isinstance(alt, dict) and "$ref" in alt:
            target, _ = self._deref(alt, path)
            if set(siblings) == {"type"} and _declares_type(target, siblings["type"]):
                return alt
            raise UnsupportedSchemaError(next(iter(siblings)), path, "alongside anyOf/oneOf with a $ref alternative")
        if not isinstance(alt, dict):
            raise UnsupportedSchemaError(next(iter(siblings)), path, "alongside anyOf/oneOf")
        for k, v in siblings.items():
            if k in alt and alt[k] != v:
                raise UnsupportedSchemaError(k, path, "conflicts with the same keyword in an anyOf/oneOf alternative")
        return {**siblings, **alt}

    def _visit_type_list(self, schema: dict, types: list, name: str, rule_name: str, path: str) -> str:
        """``"type": [a, b]``: the schema once per type, as alternatives."""
        if not types:
            raise UnsupportedSchemaError("type", path, "must not be empty")
        rules = [self.visit({**schema, "type": t}, f"{name}-{i}" if name else f"alternative-{i}",
                            _join_path(path, "type", i)) for i, t in enumerate(types)]
        return self.add_rule(rule_name, " | ".join(rules))

    def _visit_constants(self, schema: dict, type_name: str | None, rule_name: str, path: str) -> str:
        """``const`` or ``enum`` (values of another type than ``type`` left out)."""
        if "const" in schema:
            if not _type_admits(type_name, schema["const"]):
                raise UnsupportedSchemaError("const", path, f"not of type {type_name}")
            self._check(schema, path, {"const", "enum", "type"}, None)
            return self.add_rule(rule_name, format_literal(_dump(schema["const"])))
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise UnsupportedSchemaError("enum", path, "must be a non-empty array")
        kept = [v for v in values if _type_admits(type_name, v)]
        if not kept:
            raise UnsupportedSchemaError("enum", path, f"no value of type {type_name}")
        self._check(schema, path, {"enum", "type"}, None)
        return self.add_rule(rule_name, "(" + " | ".join(format_literal(_dump(v)) for v in kept) + ")")

    def _resolve_pointer(self, ref: str, path: str) -> Any:
        """The sub-schema a local ``#/...`` reference points at."""
        target = self.root
        for raw in ref[2:].split("/"):
            token = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                raise UnsupportedSchemaError("$ref", path, f"cannot resolve {ref}: {token!r} not found")
        return target

    def _resolve_ref(self, ref: Any, path: str) -> str:
        """The rule name for a local reference (its target visited once; recursion allowed)."""
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise UnsupportedSchemaError("$ref", path, f"only local references (#/...) are supported, not {ref!r}")
        ref_name = "ref" + _INVALID_RULE_CHARS.sub("-", ref[1:])
        if ref_name not in self.rules and ref not in self.refs_being_resolved:
            target = self._resolve_pointer(ref, path)
            self.refs_being_resolved.add(ref)
            ref_name = self.visit(target, ref_name, ref)
            self.refs_being_resolved.discard(ref)
        return ref_name

    def _deref(self, schema: Any, path: str) -> tuple[Any, str]:
        """Follow ``$ref`` chains; return the schema and its path."""
        seen: set[str] = set()
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
                raise UnsupportedSchemaError("$ref", path, f"cannot follow {ref!r} here")
            seen.add(ref)
            schema, path = self._resolve_pointer(ref, path), ref
        return schema, path

    def _visit_all_of(self, schema: dict, name: str, rule_name: str, path: str) -> str:
        """``allOf``: one component as itself; else object properties merged (anyOf parts optional), enums met."""
        parts = schema["allOf"]
        if not isinstance(parts, list) or not parts:
            raise UnsupportedSchemaError("allOf", path, "must be a non-empty array of schemas")
        self._check(schema, path, {"allOf", "type"}, "object")
        if len(parts) == 1 and not self._mergeable(parts[0], path):
            return self.visit(parts[0], name, _join_path(path, "allOf", 0))
        properties: list[tuple[str, Any, str]] = []
        required: set[str] = set()
        enum_counts: dict[str, int] = {}
        for i, part in enumerate(parts):
            part_path = _join_path(path, "allOf", i)
            if isinstance(part, dict) and ("anyOf" in part or "oneOf" in part):
                key = "anyOf" if "anyOf" in part else "oneOf"
                for j, alt in enumerate(part[key]):
                    self._all_of_component(alt, False, _join_path(part_path, key, j), properties, required, enum_counts)
            else:
                self._all_of_component(part, True, part_path, properties, required, enum_counts)
        met = [literal for literal, count in enum_counts.items() if count == len(parts)]
        if met:
            return self.add_rule(rule_name, "(" + " | ".join(met) + ")")
        return self.add_rule(rule_name, self._build_object_rule(properties, required, name, None))

    def _mergeable(self, part: Any, path: str) -> bool:
        """Whether an allOf component is one llama.cpp merges (an object, an enum or a const)."""
        target, _ = self._deref(part, path)
        return isinstance(target, dict) and (
            "enum" in target or "const" in target or "properties" in target or target.get("type") == "object")

    def _all_of_component(self, part: Any, is_required: bool, path: str, properties: list[tuple[str, Any, str]],
                          required: set[str], enum_counts: dict[str, int]) -> None:
        """Collect one allOf component's properties or enum values."""
        part, path = self._deref(part, path)
        if not isinstance(part, dict):
            raise UnsupportedSchemaError("allOf", path, "components must be schemas")
        if "enum" in part or "const" in part:
            values = part["enum"] if "enum" in part else [part["const"]]
            for literal in dict.fromkeys(format_literal(_dump(v)) for v in values):
                enum_counts[literal] = enum_counts.get(literal, 0) + 1
            return
        if "properties" not in part and part.get("type") != "object":
            raise UnsupportedSchemaError("allOf", path, "only object and enum components can be combined")
        self._check(part, path, {"type", "properties", "required", "additionalProperties"}, "object")
        for prop_name, prop_schema in (part.get("properties") or {}).items():
            properties.append((prop_name, prop_schema, _join_path(path, "properties", prop_name)))
            if is_required:
                required.add(prop_name)

    def _visit_object(self, schema: dict, name: str, rule_name: str, path: str) -> str:
        """An object with properties / required / additionalProperties (llama.cpp's defaults)."""
        self._check(schema, path, {"type", "properties", "required", "additionalProperties"}, "object")
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise UnsupportedSchemaError("properties", path, "must be an object")
        required_list = schema.get("required", [])
        required = {r for r in required_list if isinstance(r, str)} if isinstance(required_list, list) else set()
        missing = sorted(required - props.keys())
        if missing:
            raise UnsupportedSchemaError("required", path, f"{missing[0]!r} is not among the properties")
        additional: Any = None
        if "additionalProperties" in schema:
            additional = schema["additionalProperties"]
            if additional is False:
                additional = None
            elif not isinstance(additional, dict | bool):
                raise UnsupportedSchemaError("additionalProperties", path, "must be a boolean or a schema")
        elif "properties" not in schema:
            additional = True
        if not props and additional is not None and _is_any(additional):
            return self.add_rule(rule_name, self.add_primitive("object", PRIMITIVE_RULES["object"]))
        properties = [(k, v, _join_path(path, "properties", k)) for k, v in props.items()]
        additional_path = _join_path(path, "additionalProperties")
        rule = self._build_object_rule(properties, required, name, additional, additional_path)
        return self.add_rule(rule_name, rule)

    def _build_object_rule(self, properties: list[tuple[str, Any, str]], required: set[str], name: str,
                           additional: Any, additional_path: str = "") -> str:
        """The object rule body: required keys in order, then optional ones in order, then extra keys."""
        prefix = f"{name}-" if name else ""
        kv_rules: dict[str, str] = {}
        required_props: list[str] = []
        optional_props: list[str] = []
        for prop_name, prop_schema, prop_path in properties:
            prop_rule = self.visit(prop_schema, prefix + prop_name, prop_path)
            kv_rules[prop_name] = self.add_rule(
                f"{prefix}{prop_name}-kv", f'{format_literal(_dump(prop_name))} space ":" space {prop_rule}')
            (required_props if prop_name in required else optional_props).append(prop_name)
        if additional is not None:
            kv_rules["*"] = self._additional_kv(additional, f"{prefix}additional", [p[0] for p in properties],
                                                additional_path)
            optional_props.append("*")
        if not required_props and not optional_props:
            return '"{" space "}"'
        rule = '"{" space ' + ' "," space '.join(kv_rules[p] for p in required_props)
        if optional_props:
            rule += " ("
            if required_props:
                rule += ' "," space ( '
            rule += " | ".join(self._optional_chain(optional_props[i:], kv_rules, prefix, False)
                               for i in range(len(optional_props)))
            if required_props:
                rule += " )"
            rule += " )?"
        return rule + ' space "}"'

    def _additional_kv(self, additional: Any, sub_name: str, prop_names: list[str], path: str) -> str:
        """The rule for one extra key/value pair (keys other than the named properties)."""
        if _is_any(additional):
            value_rule = self.add_primitive("value", PRIMITIVE_RULES["value"])
        else:
            value_rule = self.visit(additional, f"{sub_name}-value", path)
        if prop_names:
            key_rule = self.add_rule(f"{sub_name}-k", self._not_strings(prop_names))
        else:
            key_rule = self.add_primitive("string", PRIMITIVE_RULES["string"])
        return self.add_rule(f"{sub_name}-kv", f'{key_rule} ":" space {value_rule}')

    def _optional_chain(self, keys: list[str], kv_rules: dict[str, str], prefix: str, first_optional: bool) -> str:
        """Optional keys in order, starting with ``keys[0]``; the rest goes into ``<key>-rest`` rules."""
        key, kv = keys[0], kv_rules[keys[0]]
        comma_ref = f'( "," space {kv} )'
        if first_optional:
            result = comma_ref + ("*" if key == "*" else "?")
        else:
            result = kv + (f" {comma_ref}*" if key == "*" else "")
        if len(keys) > 1:
            rest = self._optional_chain(keys[1:], kv_rules, prefix, True)
            result += " " + self.add_rule(f"{prefix}{key}-rest", rest)
        return result

    def _not_strings(self, strings: list[str]) -> str:
        """A JSON string rule matching any string except the given ones (a trie of their characters)."""
        char_rule = self.add_primitive("char", PRIMITIVE_RULES["char"])
        trie: dict = {}
        for s in strings:
            node = trie
            for c in s:
                node = node.setdefault(c, {})
            node[""] = {}

        def visit(node: dict) -> str:
            """Alternatives below one trie node."""
            children = sorted((c, child) for c, child in node.items() if c)
            alts = []
            for c, child in children:
                below = {k: v for k, v in child.items() if k}
                if below:
                    inner = visit(child)
                    alts.append(f"[{_class_char(c)}] ({inner})" + ("" if "" in child else "?"))
                else:
                    alts.append(f"[{_class_char(c)}] {char_rule}+")
            rejects = "".join(_class_char(c) for c, _ in children)
            return " | ".join(alts) + (f' | [^"{rejects}] {char_rule}*' if children else "")

        return '["] ( ' + visit(trie) + " )" + ("" if "" in trie else "?") + ' ["]'

    def _visit_array(self, schema: dict, name: str, rule_name: str, path: str) -> str:
        """An array: a tuple (items as a list / prefixItems) or repeated items with min/max counts."""
        items, prefix = schema.get("items"), schema.get("prefixItems")
        used = {"type", "items", "prefixItems", "minItems", "maxItems"}
        if isinstance(prefix, list) and "items" in schema and items is not False:
            raise UnsupportedSchemaError("items", path, "items after prefixItems are not supported")
        tuple_items = items if isinstance(items, list) else prefix if isinstance(prefix, list) else None
        if isinstance(items, list) and schema.get("additionalItems", False) is False:
            used.add("additionalItems")
        self._check(schema, path, used, "array")
        if tuple_items is not None:
            key = "items" if isinstance(items, list) else "prefixItems"
            sub = f"{name}-" if name else ""
            parts = [self.visit(item, f"{sub}tuple-{i}", _join_path(path, key, i))
                     for i, item in enumerate(tuple_items)]
            return self.add_rule(rule_name, '"[" space ' + ' "," space '.join(parts) + ' space "]"')
        item_schema, key = (items, "items") if "items" in schema else (prefix, "prefixItems")
        min_items = _count(schema, "minItems", path, 0) or 0
        max_items = _count(schema, "maxItems", path, None)
        if item_schema is False:
            raise UnsupportedSchemaError("items", path, "false items (empty array only) are not supported")
        if (item_schema is None or _is_any(item_schema)) and min_items == 0 and max_items is None:
            return self._visit_primitive(rule_name, "array")
        item_rule = self.visit(True if item_schema is None else item_schema, f"{name}-item" if name else "item",
                               _join_path(path, key))
        body = build_repetition(item_rule, min_items, max_items, '"," space')
        return self.add_rule(rule_name, f'"[" space {body} space "]"')

    def _visit_string(self, schema: dict, name: str, rule_name: str, path: str) -> str:
        """A string: pattern, format, or length bounds."""
        fmt = schema.get("format")
        known_format = _known_format(schema)
        if fmt is not None and not known_format and (self.strict or not isinstance(fmt, str)):
            raise UnsupportedSchemaError("format", path, f"unknown format {fmt!r}")
        if "pattern" in schema:
            self._check(schema, path, {"type", "pattern"} | ({"format"} if not known_format else set()), "string")
            pattern = schema["pattern"]
            if not isinstance(pattern, str):
                raise UnsupportedSchemaError("pattern", path, "must be a string")
            try:
                return pattern_to_rule(pattern, rule_name, self.add_rule)
            except PatternError as err:
                raise UnsupportedSchemaError("pattern", path, f"{pattern!r}: {err}") from err
        if known_format:
            self._check(schema, path, {"type", "format"}, "string")
            prim = _FORMATS[fmt]
            if prim == "uuid":
                return self._visit_primitive(rule_name, "uuid")
            return self.add_rule(rule_name, self.add_primitive(prim, STRING_FORMAT_RULES[prim]))
        self._check(schema, path, {"type", "format", "minLength", "maxLength"}, "string")
        min_len = _count(schema, "minLength", path, 0) or 0
        max_len = _count(schema, "maxLength", path, None)
        if min_len > 0 or max_len is not None:
            char_rule = self.add_primitive("char", PRIMITIVE_RULES["char"])
            return self.add_rule(rule_name, f'"\\"" {build_repetition(char_rule, min_len, max_len)} "\\""')
        return self._visit_primitive(rule_name, "string")

    def _visit_integer(self, schema: dict, name: str, rule_name: str, path: str) -> str:
        """An integer, with digit-range rules for bounds."""
        self._check(schema, path, {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}, "integer")
        low, high = _integer_bounds(schema, path)
        if low is None and high is None:
            return self._visit_primitive(rule_name, "integer")
        for bound in (low, high):
            if bound is not None and abs(bound) > _MAX_INT64:
                raise UnsupportedSchemaError("minimum" if bound is low else "maximum", path, "beyond 64-bit integers")
        writer = _IntRangeWriter()
        writer.write(low, high)
        return self.add_rule(rule_name, f"({writer.text()})")

    def _visit_number(self, schema: dict, name: str, rule_name: str, path: str) -> str:
        """A number; of the bounds only ``minimum: 0`` (non-negative) is expressible."""
        if schema.get("minimum", None) == 0 and not isinstance(schema["minimum"], bool):
            self._check(schema, path, {"type", "minimum"}, "number")
            self.add_primitive("integral-part", PRIMITIVE_RULES["integral-part"])
            self.add_primitive("decimal-part", PRIMITIVE_RULES["decimal-part"])
            return self.add_rule(rule_name, '(integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)?')
        self._check(schema, path, {"type"}, "number")
        return self._visit_primitive(rule_name, "number")


def schema_to_gbnf(schema: dict, *, strict: bool = False) -> str:
    """The GBNF grammar (llama.cpp dialect, start rule ``root``) for JSON values valid under ``schema``."""
    converter = _Converter(schema, strict)
    converter.visit(schema, "", "#")
    return converter.format_grammar()


def json_object_grammar() -> str:
    """The grammar for any JSON object (OpenAI's ``response_format: {"type": "json_object"}``)."""
    return schema_to_gbnf({"type": "object"})


def requested_schema_gbnf(schema: dict | None, *, strict: bool = False) -> str:
    """The grammar for a schema a request or a flag asks for, where an empty (or no) schema asks for any JSON
    object, as llama-server reads ``"json_schema": {}``."""
    return schema_to_gbnf(schema, strict=strict) if schema else json_object_grammar()
