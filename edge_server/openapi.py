"""``GET /openapi.json``: an OpenAPI 3.1 description of the JSON endpoints, built from the hand-written tables below.

It lists the main fields each endpoint reads and their JSON types (``requests.py`` and ``SamplingParams.from_dict``
are the source of truth; values out of range are 400s, as are wrong types).  Unknown fields are ignored by the
server, so the request schemas allow additional properties.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
STR: dict[str, Any] = {"type": "string"}
TOKENS: dict[str, Any] = {"type": "array", "items": {"type": "integer", "minimum": 0}}
STOP: dict[str, Any] = {"oneOf": [STR, {"type": "array", "items": STR}, {"type": "null"}]}
N_PREDICT: dict[str, Any] = {"type": "integer", "minimum": -1, "maximum": 2**31 - 1}
PROMPT: dict[str, Any] = {"oneOf": [STR, {**TOKENS, "minItems": 1},
                                    {"type": "array", "minItems": 1, "maxItems": 1, "items": {"oneOf": [STR, TOKENS]}}]}
MESSAGES: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": STR,
            "content": {"oneOf": [STR, {"type": "null"}, {"type": "array", "items": {
                "type": "object", "required": ["type", "text"],
                "properties": {"type": {"const": "text"}, "text": STR}}}]},
        },
    },
}

#: ``/v1/chat/completions``' messages: the above plus assistant ``tool_calls`` and a tool message's ``tool_call_id``.
CHAT_MESSAGES: dict[str, Any] = {**MESSAGES, "items": {**MESSAGES["items"], "properties": {
    **MESSAGES["items"]["properties"],
    "tool_call_id": STR,
    "tool_calls": {"type": "array", "items": {"type": "object", "required": ["function"], "properties": {
        "id": STR, "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"], "properties": {"name": STR, "arguments": STR}}}}},
}}}

#: Tool calling (``tools.py``), read by ``/v1/chat/completions`` only (elsewhere ``tools`` / ``tool_choice`` are
#: 400s).
TOOL_NAME: dict[str, Any] = {**STR, "pattern": "^[A-Za-z0-9_-]{1,64}$"}
TOOLS: dict[str, Any] = {
    "tools": {"type": "array", "items": {"type": "object", "required": ["type", "function"], "properties": {
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"], "properties": {
            "name": TOOL_NAME, "description": STR, "strict": BOOL,
            "parameters": {"type": "object", "description": "JSON schema of the arguments"}}}}}},
    "tool_choice": {"oneOf": [{"const": "auto"}, {"const": "none"}, {"const": "required"},
                              {"type": "object", "required": ["type", "function"], "properties": {
                                  "type": {"const": "function"},
                                  "function": {"type": "object", "required": ["name"],
                                               "properties": {"name": TOOL_NAME}}}}]},
    "parallel_tool_calls": BOOL,
}

#: llama.cpp's sampling fields (``SamplingParams``), read by every generating endpoint.  Numbers must be finite;
#: a value outside a ``minimum``/``maximum`` is a 400, while the fields described as clamped accept any number.
SAMPLING: dict[str, Any] = {
    "temperature": {**NUM, "description": "clamped to >= 0 (0: greedy)"},
    "top_k": {**INT, "description": "clamped to >= 0 (0: off)"},
    "top_p": {**NUM, "description": "clamped to [0, 1]"},
    "min_p": {**NUM, "description": "clamped to [0, 1]"},
    "typical_p": NUM,
    "top_n_sigma": NUM,
    "xtc_probability": {**NUM, "description": "clamped to [0, 1]"},
    "xtc_threshold": {**NUM, "description": "clamped to [0, 1]"},
    "dynatemp_range": NUM,
    "dynatemp_exponent": NUM,
    "repeat_last_n": {**INT, "minimum": -1},
    "repeat_penalty": {**NUM, "exclusiveMinimum": 0},
    "presence_penalty": NUM,
    "frequency_penalty": NUM,
    "dry_multiplier": NUM,
    "dry_base": NUM,
    "dry_allowed_length": {**INT, "minimum": 0},
    "dry_penalty_last_n": {**INT, "minimum": -1},
    "dry_sequence_breakers": {"type": "array", "minItems": 1, "items": STR},
    "mirostat": {**INT, "description": "clamped to 0, 1 or 2"},
    "mirostat_tau": NUM,
    "mirostat_eta": NUM,
    "min_keep": {**INT, "minimum": 0},
    "post_sampling_probs": BOOL,
    "seed": {"oneOf": [{**INT, "minimum": -1, "maximum": 2**32 - 1}, {"type": "null"}]},
    "ignore_eos": BOOL,
    "logit_bias": {"oneOf": [{"type": "object", "additionalProperties": {"oneOf": [NUM, {"const": False}]}},
                             {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2}}]},
    "samplers": {"oneOf": [STR, {"type": "array", "items": STR}]},
    "cache_prompt": BOOL,
    "stream": BOOL,
    "stop": STOP,
}

#: Structured output (``structured.py``), read by every generating endpoint.
STRUCTURED: dict[str, Any] = {
    "grammar": {**STR, "description": "GBNF grammar (llama.cpp's dialect) the output must match"},
    "json_schema": {"type": "object", "description": "JSON schema the output must match ({}: any object)"},
    "response_format": {"type": "object", "required": ["type"], "properties": {
        "type": {"oneOf": [{"const": "text"}, {"const": "json_object"}, {"const": "json_schema"}]},
        "schema": {"type": "object"},
        "json_schema": {"type": "object", "properties": {"name": STR, "schema": {"type": "object"},
                                                         "strict": BOOL}}}},
}

OPENAI: dict[str, Any] = {
    "model": STR,
    "max_tokens": {**N_PREDICT, "type": ["integer", "null"]},
    "max_completion_tokens": {**N_PREDICT, "type": ["integer", "null"]},
    "n": {**INT, "const": 1},
    "stream_options": {"type": "object", "properties": {"include_usage": BOOL}},
}


def _body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": True}


#: path -> (summary, request body schema)
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "/completion": ("llama-server completion (``content`` is accepted in place of ``prompt``)", _body(["prompt"], {
        "prompt": PROMPT, "n_predict": N_PREDICT, "n_keep": {**INT, "minimum": -1}, "n_probs": {**INT, "minimum": 0},
        "id_slot": {**INT, "minimum": -1}, **SAMPLING, **STRUCTURED})),
    "/tokenize": ("text to token ids", _body([], {
        "content": STR, "add_special": BOOL, "parse_special": BOOL, "with_pieces": BOOL})),
    "/detokenize": ("token ids to text", _body([], {"tokens": TOKENS})),
    "/apply-template": ("chat messages to the prompt of the model's chat template",
                        _body(["messages"], {"messages": MESSAGES})),
    "/v1/completions": ("OpenAI text completion (``echo`` is not supported)", _body(["prompt"], {
        "prompt": PROMPT, **OPENAI,
        "logprobs": {"oneOf": [{**INT, "minimum": 0, "maximum": 20}, {"const": False}, {"type": "null"}]},
        "echo": {"const": False}, **SAMPLING, **STRUCTURED})),
    "/v1/chat/completions": ("OpenAI chat completion, with tool calling", _body(["messages"], {
        "messages": CHAT_MESSAGES, **OPENAI, "logprobs": BOOL, "top_logprobs": {**INT, "minimum": 0, "maximum": 20},
        **SAMPLING, **STRUCTURED, **TOOLS})),
}

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "type"],
                             "properties": {"code": INT, "message": STR, "type": STR}}},
}


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI document."""
    error_ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths: dict[str, Any] = {}
    for path, (summary, body) in REQUESTS.items():
        paths[path] = {"post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "the result (``text/event-stream`` when ``stream`` is true)",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"description": "bad input; the message names the field", **error_ref},
                "401": {"description": "missing or wrong API key", **error_ref},
                "403": {"description": "a page of another origin (not allowed by --cors-origins)", **error_ref},
                "413": {"description": "body larger than --max-body-bytes", **error_ref},
                "415": {"description": "a browser sent the body as another type than application/json", **error_ref},
                "503": {"description": "model loading or queue full (Retry-After)", **error_ref},
            },
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "emberllm edge server", "version": "0.1.0",
                 "description": "llama-server's and OpenAI's JSON endpoints (the main fields; grammar, json_schema "
                                "and response_format constrain the output; tools, tool_choice and "
                                "parallel_tool_calls do tool calling on /v1/chat/completions; the deprecated "
                                "functions and function_call are answered 400; other unknown fields are "
                                "ignored)."},
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json``."""
    return JSONResponse(openapi_schema())
