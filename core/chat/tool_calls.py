"""Tool calling: which format a chat template's model writes tool calls in, the prompt additions and history
rewriting each format needs, the GBNF grammar that forces a call, and parsing calls out of generated text.

Formats (llama.cpp's names and facts):

* ``hermes`` -- Hermes 2 Pro / Qwen 2.5+: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``, one
  block per call; text outside the blocks is content. Chosen for templates that mention ``<tool_call>``.
* ``llama3`` -- Llama 3.1+ JSON tool calls: the reply is ``{"name": ..., "parameters": {...}}`` (``arguments``
  accepted too), optionally after ``<|python_tag|>``, several separated by ``;``. Chosen for Llama 3 templates
  that handle tools (``<|start_header_id|>`` with ``ipython`` or ``tools``).
* ``mistral`` -- Mistral Nemo / Small: ``[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...]`` (and
  the newer ``[TOOL_CALLS]name[ARGS]{...}``). Chosen for templates that mention ``[TOOL_CALLS]``.
* ``generic`` -- llama.cpp's generic handler for templates without a native format: the tools and the answer's
  shape are given in a system message, and the model answers one JSON object: ``{"tool_call": {"name": ...,
  "arguments": {...}}}`` (``{"tool_calls": [...]}`` with parallel calls) or ``{"response": "..."}``.  History
  messages are rewritten the same way (assistant calls as that JSON, ``tool`` results as user messages holding
  ``{"tool_response": {...}}``), since such a template knows neither.

Pure Python (json and re only): runs under Pyodide.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FORMATS",
    "ToolCall",
    "call_schema",
    "content_prefix_len",
    "streamable_content",
    "detect_format",
    "new_call_id",
    "parse_tool_calls",
    "prepare_messages",
    "tool_call_grammar",
]

Format = Literal["hermes", "llama3", "mistral", "generic"]
FORMATS: tuple[str, ...] = ("hermes", "llama3", "mistral", "generic")

GENERIC_INSTRUCTION = ("Respond in JSON format, either with `tool_call` (a request to call tools) or with `response` "
                       "reply to the user's request")
GENERIC_INSTRUCTION_REQUIRED = "Respond in JSON format with `tool_call` (a request to call tools)"


@dataclass
class ToolCall:
    """One parsed call: the function's name and its arguments as a JSON string (``id``: the model's own, if any)."""

    name: str
    arguments: str
    id: str | None = None

    def to_openai(self, call_id: str | None = None) -> dict[str, Any]:
        """OpenAI's ``tool_calls`` entry."""
        return {"id": call_id or self.id or new_call_id(), "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


_ID_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    """``call_`` and 24 random letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


# ---------------------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------------------


def detect_format(template: str | None) -> Format:
    """The tool-call format of the model a chat template (its Jinja text) belongs to; ``generic`` when the template
    has no native one."""
    t = template or ""
    if "<tool_call>" in t:
        return "hermes"
    if "[TOOL_CALLS]" in t:
        return "mistral"
    if "<|start_header_id|>" in t and ("<|python_tag|>" in t or "ipython" in t
                                       or re.search(r"\btools\b", t) is not None):
        return "llama3"
    return "generic"


# ---------------------------------------------------------------------------------------------------------
# Prompt side
# ---------------------------------------------------------------------------------------------------------


def _function(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    fn = tool.get("function", tool)
    return fn if isinstance(fn, Mapping) else {}


def _parameters(tool: Mapping[str, Any]) -> dict[str, Any]:
    params = _function(tool).get("parameters")
    return dict(params) if isinstance(params, Mapping) and params else {"type": "object"}


def _arguments_object(arguments: Any) -> Any:
    """A call's arguments as an object for a template (OpenAI sends a JSON string; templates want the value)."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def _plain_calls(tool_calls: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for call in tool_calls:
        if not isinstance(call, Mapping):
            continue
        fn = call.get("function") if isinstance(call.get("function"), Mapping) else call
        entry = {"name": fn.get("name"), "arguments": _arguments_object(fn.get("arguments"))}
        if call.get("id"):
            entry["id"] = call["id"]
        out.append(entry)
    return out


def prepare_messages(messages: Sequence[Mapping[str, Any]], fmt: str,
                     tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: str = "auto") -> list[dict]:
    """The conversation to give the chat template for ``fmt``.

    Native formats: assistant ``tool_calls`` keep their place with each call's ``arguments`` parsed into a value
    (what Hermes, Qwen, Llama and Mistral templates expect); ``tool`` messages pass as they are.  ``generic``:
    assistant calls become the JSON answer the model is asked for, ``tool`` results become user messages holding
    ``{"tool_response": {"tool": name, "content": ...}}``, and with ``tools`` (and a choice other than ``none``) a
    system message lists them and the answer's shape (merged into the first system message if there is one).
    """
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        msg = dict(message)
        calls = msg.get("tool_calls")
        if msg.get("role") == "assistant" and isinstance(calls, Sequence) and calls:
            for call in calls:
                if isinstance(call, Mapping) and call.get("id") and isinstance(call.get("function"), Mapping):
                    names[str(call["id"])] = str(call["function"].get("name", ""))
            if fmt == "generic":
                plain = _plain_calls(calls)
                body: dict[str, Any] = ({"tool_call": plain[0]} if len(plain) == 1 else {"tool_calls": plain})
                text = msg.get("content") or ""
                if isinstance(text, list):
                    text = "\n".join(str(p.get("text", "")) for p in text if isinstance(p, Mapping))
                msg.pop("tool_calls", None)
                msg["content"] = (text + "\n" if isinstance(text, str) and text else "") + json.dumps(body)
            else:
                msg["tool_calls"] = [{**dict(c), "function": {**dict(c["function"]),
                                                              "arguments": _arguments_object(
                                                                  c["function"].get("arguments"))}}
                                     if isinstance(c, Mapping) and isinstance(c.get("function"), Mapping) else c
                                     for c in calls]
        elif msg.get("role") == "tool" and fmt == "generic":
            response: dict[str, Any] = {"tool": msg.get("name") or names.get(str(msg.get("tool_call_id")), ""),
                                        "content": msg.get("content")}
            if msg.get("tool_call_id"):
                response["tool_call_id"] = msg["tool_call_id"]
            msg = {"role": "user", "content": json.dumps({"tool_response": response})}
        out.append(msg)
    if fmt == "generic" and tools and tool_choice != "none":
        listing = json.dumps([_function(t) for t in tools], indent=2)
        instruction = GENERIC_INSTRUCTION_REQUIRED if tool_choice != "auto" else GENERIC_INSTRUCTION
        schema = json.dumps(call_schema(tools, fmt, tool_choice != "auto", False), indent=2)
        system = (f"You can call any of the following tools to satisfy the user's requests: {listing}\n\n"
                  f"{instruction}. Your answer must match this JSON schema:\n{schema}")
        if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + system}
        else:
            out.insert(0, {"role": "system", "content": system})
    return out


# ---------------------------------------------------------------------------------------------------------
# Grammar side
# ---------------------------------------------------------------------------------------------------------


def _one_call(tool: Mapping[str, Any], args_key: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"name": {"const": _function(tool).get("name")},
                                             args_key: _parameters(tool)},
            "required": ["name", args_key]}


def _any_call(tools: Sequence[Mapping[str, Any]], args_key: str) -> dict[str, Any]:
    options = [_one_call(t, args_key) for t in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def call_schema(tools: Sequence[Mapping[str, Any]], fmt: str, required: bool, parallel: bool) -> dict[str, Any]:
    """The JSON schema of what the model writes (inside any wrapper) to call one of ``tools`` in ``fmt``; for
    ``generic`` without ``required``, a ``{"response": ...}`` answer is allowed too."""
    if fmt == "llama3":
        return _any_call(tools, "parameters")
    if fmt == "mistral":
        return {"type": "array", "items": _any_call(tools, "arguments"), "minItems": 1,
                **({} if parallel else {"maxItems": 1})}
    if fmt == "hermes":
        return _any_call(tools, "arguments")
    call = _any_call(tools, "arguments")
    if parallel:
        shape = {"type": "object", "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1}},
                 "required": ["tool_calls"]}
    else:
        shape = {"type": "object", "properties": {"tool_call": call}, "required": ["tool_call"]}
    if required:
        return shape
    return {"anyOf": [shape, {"type": "object", "properties": {"response": {"type": "string"}},
                              "required": ["response"]}]}


_ROOT_RULE = re.compile(r"^root ::=", re.MULTILINE)


def tool_call_grammar(tools: Sequence[Mapping[str, Any]], fmt: str, required: bool, parallel: bool) -> str:
    """The GBNF grammar for ``fmt``'s answer (empty: unconstrained).

    ``required`` (``tool_choice`` required or one named function: pass only that tool): the output must be a call
    in the format, its arguments valid under the function's schema.  Without it, only ``generic`` is constrained
    (a call or a response, as llama.cpp's generic handler); native formats are parsed afterwards.
    Raises ``UnsupportedSchemaError`` / ``ValueError`` for parameters the grammar cannot express.
    """
    from emberllm.grammar.json_schema import schema_to_gbnf

    if not tools or (not required and fmt != "generic"):
        return ""
    schema = call_schema(tools, fmt, required, parallel)
    gbnf = schema_to_gbnf(schema)
    if fmt == "generic" or fmt == "llama3":
        return gbnf
    body = _ROOT_RULE.sub("tool-call-json ::=", gbnf)
    if fmt == "mistral":
        return body + '\nroot ::= "[TOOL_CALLS]" tool-call-json\n'
    block = '"<tool_call>\\n" tool-call-json "\\n</tool_call>"'
    root = f"root ::= {block} (\"\\n\" {block})*\n" if parallel else f"root ::= {block}\n"
    return body + "\n" + root


# ---------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------

_DECODER = json.JSONDecoder()


def _to_call(obj: Any, args_keys: tuple[str, ...] = ("arguments", "parameters")) -> ToolCall | None:
    if isinstance(obj, Mapping) and isinstance(obj.get("function"), Mapping):  # OpenAI-shaped
        obj = {**obj["function"], "id": obj.get("id")}
    if not isinstance(obj, Mapping) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args: Any = {}
    for key in args_keys:
        if key in obj:
            args = obj[key]
            break
    if isinstance(args, str):
        try:
            json.loads(args)
            text = args
        except json.JSONDecodeError:
            text = json.dumps(args, ensure_ascii=False)
    else:
        text = json.dumps(args, ensure_ascii=False)
    call_id = obj.get("id")
    return ToolCall(obj["name"], text, call_id if isinstance(call_id, str) and call_id else None)


def _decode_at(text: str, pos: int) -> tuple[Any, int] | None:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError:
        return None


def _parse_hermes(text: str) -> tuple[str, list[ToolCall]]:
    content: list[str] = []
    calls: list[ToolCall] = []
    pos = 0
    while True:
        start = text.find("<tool_call>", pos)
        if start < 0:
            content.append(text[pos:])
            break
        decoded = _decode_at(text, start + len("<tool_call>"))
        call = _to_call(decoded[0]) if decoded else None
        if call is None:
            content.append(text[pos:])
            break
        content.append(text[pos:start])
        calls.append(call)
        end = decoded[1]
        rest = text[end:]
        stripped = rest.lstrip()
        pos = end + (len(rest) - len(stripped)) + len("</tool_call>") if stripped.startswith("</tool_call>") else end
    return "".join(content), calls


def _parse_llama3(text: str) -> tuple[str, list[ToolCall]]:
    body = text.lstrip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>"):]
    if not body.lstrip().startswith("{"):
        return text, []
    calls: list[ToolCall] = []
    pos = 0
    while True:
        decoded = _decode_at(body, pos)
        call = _to_call(decoded[0], ("parameters", "arguments")) if decoded else None
        if call is None:
            break
        calls.append(call)
        pos = decoded[1]
        rest = body[pos:].lstrip()
        if not rest.startswith(";"):
            break
        pos = len(body) - len(rest) + 1
    if not calls:
        return text, []
    return body[pos:].strip(), calls


def _parse_mistral(text: str) -> tuple[str, list[ToolCall]]:
    start = text.find("[TOOL_CALLS]")
    if start < 0:
        return text, []
    after = start + len("[TOOL_CALLS]")
    decoded = _decode_at(text, after)
    calls: list[ToolCall] = []
    if decoded and isinstance(decoded[0], list):
        calls = [c for c in (_to_call(o) for o in decoded[0]) if c is not None]
        if len(calls) != len(decoded[0]):
            return text, []
        return (text[:start] + text[decoded[1]:]).rstrip(), calls
    # the newer spelling: [TOOL_CALLS]name[ARGS]{...}, repeated
    pattern = re.compile(r"\[TOOL_CALLS\]\s*([A-Za-z0-9_.-]+)\s*\[ARGS\]")
    pos, content = 0, []
    while (m := pattern.search(text, pos)) is not None:
        args = _decode_at(text, m.end())
        if args is None:
            break
        content.append(text[pos:m.start()])
        calls.append(ToolCall(m.group(1), json.dumps(args[0], ensure_ascii=False)))
        pos = args[1]
    if not calls:
        return text, []
    content.append(text[pos:])
    return "".join(content).rstrip(), calls


def _parse_generic(text: str) -> tuple[str, list[ToolCall]]:
    decoded = _decode_at(text, 0)
    if decoded is None:
        m = _RESPONSE_OPEN.match(text)  # a response cut short (length): the part of its text so far
        return (_partial_json_string(text[m.end():]), []) if m else (text, [])
    if text[decoded[1]:].strip() or not isinstance(decoded[0], Mapping):
        return text, []
    obj = decoded[0]
    if "tool_call" in obj:
        call = _to_call(obj["tool_call"])
        return ("", [call]) if call is not None else (text, [])
    if isinstance(obj.get("tool_calls"), list):
        calls = [_to_call(o) for o in obj["tool_calls"]]
        if calls and all(c is not None for c in calls):
            return "", [c for c in calls if c is not None]
        return text, []
    if "response" in obj:
        response = obj["response"]
        return (response if isinstance(response, str) else json.dumps(response, ensure_ascii=False)), []
    return text, []


_PARSERS = {"hermes": _parse_hermes, "llama3": _parse_llama3, "mistral": _parse_mistral, "generic": _parse_generic}


def parse_tool_calls(text: str, fmt: str) -> tuple[str, list[ToolCall]]:
    """``(content, calls)`` of a generated reply in ``fmt``: the calls it makes, and the text outside them (for
    ``generic``, the ``response``, or the part of it there is when the reply was cut short).  Text that holds no
    well-formed call is all content."""
    if fmt not in _PARSERS:
        raise ValueError(f"unknown tool-call format {fmt!r}; formats: {', '.join(FORMATS)}")
    return _PARSERS[fmt](text)


_MARKERS = {"hermes": "<tool_call>", "mistral": "[TOOL_CALLS]"}
_PYTHON_TAG = "<|python_tag|>"


def content_prefix_len(text: str, fmt: str) -> int:
    """How many leading characters of a reply being generated are surely content, whatever follows (for streaming
    content before the reply is complete): up to a call marker or a tail that may begin one (``hermes``,
    ``mistral``); all of it once the reply does not open with a call (``llama3``); nothing for ``generic`` (the
    reply is JSON: see :func:`streamable_content`).  Never decreases as ``text`` grows."""
    marker = _MARKERS.get(fmt)
    if marker is not None:
        at = text.find(marker)
        if at >= 0:
            return at
        for k in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:k]):
                return len(text) - k
        return len(text)
    if fmt == "llama3":
        body = text.lstrip()
        if not body or body.startswith("{") or body.startswith(_PYTHON_TAG) or _PYTHON_TAG.startswith(body):
            return 0
        return len(text)
    return 0


_RESPONSE_OPEN = re.compile(r'\s*\{\s*"response"\s*:\s*"')
_HEX = frozenset("0123456789abcdefABCDEF")


def _partial_json_string(body: str) -> str:
    """The decoded text of a JSON string's body that is complete so far (stops before an unfinished escape, a lone
    high surrogate escape, or the closing quote)."""
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == '"':
            break
        if c != "\\":
            i += 1
            continue
        if i + 1 >= n:
            break
        if body[i + 1] != "u":
            i += 2
            continue
        code = body[i + 2:i + 6]
        if len(code) < 4 or not set(code) <= _HEX:
            break
        if 0xD800 <= int(code, 16) <= 0xDBFF:  # needs its low half
            low = body[i + 6:i + 12]
            if len(low) < 6 or low[:2] != "\\u" or not set(low[2:]) <= _HEX:
                break
            i += 12
            continue
        i += 6
    try:
        return json.loads('"' + body[:i] + '"')
    except json.JSONDecodeError:
        return ""


def streamable_content(text: str, fmt: str) -> str:
    """The content a reply being generated surely starts with, whatever follows: the text before any call marker
    for native formats (:func:`content_prefix_len`), and for ``generic`` the decoded part of a ``{"response":
    "..."}`` string so far.  Each value extends the previous one as ``text`` grows."""
    if fmt != "generic":
        return text[:content_prefix_len(text, fmt)]
    m = _RESPONSE_OPEN.match(text)
    return _partial_json_string(text[m.end():]) if m else ""
