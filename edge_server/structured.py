"""Structured output: a body's ``grammar`` / ``json_schema`` / ``response_format`` -> the GBNF text of
``SamplingParams.grammar``, with llama-server's field handling and 400s naming the field.

- ``grammar``: GBNF text (a malformed one: 400 with the parser's message and position).
- ``json_schema``: a JSON schema (``{}``: any object), converted with ``requested_schema_gbnf``; a keyword the grammar
  cannot express: 400 naming the keyword and its path.  ``grammar`` and ``json_schema`` together: 400.
- ``response_format``: ``{"type": "text"}`` asks for nothing; ``{"type": "json_object"}`` any JSON object (or, as
  llama-server accepts, its ``schema`` key's schema, else a top-level ``json_schema``);
  ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` that schema (strict: unknown string
  formats are refused instead of loosened).  Together with ``grammar``, or a ``json_schema`` type together with a
  top-level ``json_schema``: 400 (never one silently dropped).
"""

from __future__ import annotations

from typing import Any

from emberllm.edge_server.errors import ApiError
from emberllm.grammar import GrammarError, parse
from emberllm.grammar.json_schema import UnsupportedSchemaError, json_object_grammar, requested_schema_gbnf

RESPONSE_TYPES = ("text", "json_object", "json_schema")


def grammar_from(data: dict[str, Any]) -> str:
    """The GBNF grammar the body asks for (empty: none); ApiError 400 for bad or conflicting fields."""
    grammar = _grammar_field(data)
    schema = data.get("json_schema")
    if grammar and schema is not None:
        raise ApiError(400, "grammar, json_schema: give one of them, not both")
    fmt = _response_format(data)
    if fmt is not None:
        if grammar:
            raise ApiError(400, "grammar, response_format: give one of them, not both")
        kind, fmt_schema, strict = fmt
        if kind == "json_object" and fmt_schema is None and schema is None:
            return json_object_grammar()
        if kind == "json_schema" and schema is not None:
            raise ApiError(400, "json_schema, response_format: give the schema in one of them, not both")
        if fmt_schema is not None:
            return _convert(fmt_schema, "response_format", strict)
    if schema is not None:
        return _convert(schema, "json_schema", False)
    return grammar


def _grammar_field(data: dict[str, Any]) -> str:
    """``grammar``: a string, checked with the GBNF parser (empty or null: none)."""
    grammar = data.get("grammar")
    if grammar is None or grammar == "":
        return ""
    if not isinstance(grammar, str):
        raise ApiError(400, f"grammar: expected a string of GBNF, got {type(grammar).__name__}")
    try:
        parse(grammar)
    except GrammarError as exc:
        raise ApiError(400, f"grammar: {exc}") from exc
    return grammar


def _response_format(data: dict[str, Any]) -> tuple[str, Any, bool] | None:
    """``(type, schema or None, strict)`` of a structured ``response_format``; None for absent or ``text``."""
    fmt = data.get("response_format")
    if fmt is None or fmt == {}:
        return None
    if not isinstance(fmt, dict):
        raise ApiError(400, "response_format: expected an object such as {\"type\": \"json_object\"}")
    kind = fmt.get("type", "text")
    if kind not in RESPONSE_TYPES:
        raise ApiError(400, f"response_format.type: must be one of {', '.join(map(repr, RESPONSE_TYPES))}, "
                            f"got {kind!r}")
    if kind == "text":
        return None
    if kind == "json_object":
        return kind, fmt.get("schema"), False
    wrapper = fmt.get("json_schema", {})
    if not isinstance(wrapper, dict):
        raise ApiError(400, "response_format.json_schema: expected an object with \"name\" and \"schema\"")
    strict = wrapper.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise ApiError(400, f"response_format.json_schema.strict: expected a boolean, got {strict!r}")
    return kind, wrapper.get("schema", {}), bool(strict)


def _convert(schema: Any, field: str, strict: bool) -> str:
    """``schema`` as GBNF (``{}``: any object, as llama-server); 400 naming ``field`` when it cannot be."""
    if not isinstance(schema, dict):
        raise ApiError(400, f"{field}: expected a JSON schema object, got {type(schema).__name__}")
    try:
        return requested_schema_gbnf(schema, strict=strict)
    except UnsupportedSchemaError as exc:
        raise ApiError(400, f"{field}: {exc}") from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise ApiError(400, f"{field}: invalid JSON schema: {exc}") from exc


def with_grammar(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` whose ``grammar`` is the one :func:`grammar_from` derives (for ``sampling_from``)."""
    fields = dict(data)
    fields["grammar"] = grammar_from(data)
    return fields
