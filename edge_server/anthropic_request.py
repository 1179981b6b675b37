"""Anthropic Messages bodies -> OpenAI chat bodies, as llama-server's ``server_chat_convert_anthropic_to_oai``,
with every field checked (400s naming it in Anthropic's terms).

- ``system``: a string or an array of ``text`` blocks (joined), the first message; ``messages``: ``user`` /
  ``assistant`` turns whose ``content`` is a string or blocks: ``text`` -> text parts, ``thinking`` ->
  ``reasoning_content``, ``tool_use`` (assistant) -> ``tool_calls``, ``tool_result`` (user) -> ``tool`` messages
  after the turn (its ``is_error`` is accepted and, as in llama-server, not rendered), ``image`` -> llama-server's
  500 for a model without vision.  ``cache_control`` is accepted anywhere (the prompt cache is automatic).
- ``tools``: ``{name, description, input_schema}`` -> function tools; ``tool_choice``: ``auto``, ``any`` (a call
  of some tool), ``tool`` (a call of the named one), ``none``; ``disable_parallel_tool_use`` ->
  ``parallel_tool_calls`` (unset: one call, llama-server's default).
- ``max_tokens`` (llama-server's default when absent: 4096), ``stop_sequences``, ``temperature``, ``top_p``,
  ``top_k``, ``stream``, ``metadata.user_id``; ``thinking`` is accepted as llama-server does (no reasoning is
  parsed yet, so replies hold no thinking blocks).  Any other field: 400.
- ``x-anthropic-billing-header`` system prompts get their per-request ``cch=`` stamp blanked, as llama-server,
  so that the prompt cache reaches past them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from emberllm.edge_server.errors import ApiError

#: What llama-server answers for image input on a model without a vision projector (a 500, as its tests expect).
NO_VISION = "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj"

#: The fields of ``POST /v1/messages`` (``count_tokens`` takes the same body: the generation fields are checked but
#: do not change the prompt).
MESSAGE_FIELDS = frozenset({"model", "messages", "system", "max_tokens", "stop_sequences", "stream", "temperature",
                            "top_p", "top_k", "tools", "tool_choice", "metadata", "thinking", "cache_control"})

#: The keys each content block may have.
BLOCK_KEYS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
}
REQUIRED_STRINGS = {"text": ("text",), "image": (), "thinking": ("thinking",), "tool_use": ("id", "name"),
                    "tool_result": ("tool_use_id",)}
ROLE_BLOCKS = {"user": ("text", "image", "tool_result"), "assistant": ("text", "thinking", "tool_use")}
TOOL_KEYS = {"type", "name", "description", "input_schema", "cache_control"}
DEFAULT_MAX_TOKENS = 4096

_CCH = re.compile(r"(cch=)[^;]{5}(?=;)")


def to_openai(body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat body of an Anthropic Messages body."""
    for key in body:
        if key not in MESSAGE_FIELDS:
            raise ApiError(400, f"{key}: unknown or unsupported field")
    out: dict[str, Any] = {"messages": _system(body.get("system")) + _messages(body)}
    if "model" in body:
        out["model"] = body["model"]
    if body.get("tools") is not None:
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        out.update(_tool_choice(body["tool_choice"]))
    _thinking(body.get("thinking"))
    out["max_tokens"] = body["max_tokens"] if body.get("max_tokens") is not None else DEFAULT_MAX_TOKENS
    if body.get("stop_sequences") is not None:
        out["stop"] = stop_sequences(body)
    for key in ("temperature", "top_p", "top_k", "stream"):
        if key in body:
            out[key] = body[key]
    _metadata(body.get("metadata"))
    return out


def stop_sequences(body: dict[str, Any]) -> list[str]:
    """``stop_sequences``: an array of strings (absent: none)."""
    value = body.get("stop_sequences")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ApiError(400, "stop_sequences: expected an array of strings")
    return value


def _billing_header(text: str) -> str:
    """llama-server's ``normalize_anthropic_billing_header``: the ``cch=`` stamp as ``fffff``."""
    if not text.startswith("x-anthropic-billing-header:"):
        return text
    return _CCH.sub(r"\g<1>fffff", text, count=1)


def _system(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "system", "content": _billing_header(value)}]
    if not isinstance(value, list):
        raise ApiError(400, f"system: expected a string or an array of text blocks, got {type(value).__name__}")
    texts = []
    for i, block in enumerate(value):
        _check_block(block, f"system[{i}]", ("text",))
        texts.append(_billing_header(block["text"]))
    return [{"role": "system", "content": "".join(texts)}]


def _check_block(block: Any, where: str, kinds: tuple[str, ...]) -> str:
    """A content block's type, checked against ``kinds`` and its keys."""
    if not isinstance(block, Mapping):
        raise ApiError(400, f"{where}: expected a content block object")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise ApiError(400, f"{where}.type: expected one of {', '.join(kinds)}, got {kind!r}")
    if kind == "image":
        raise ApiError(500, NO_VISION)
    if kind not in kinds:
        raise ApiError(400, f"{where}.type: expected one of {', '.join(kinds)}, got {kind!r}")
    for key in block:
        if key not in BLOCK_KEYS[kind]:
            raise ApiError(400, f"{where}.{key}: unknown or unsupported field of a {kind} block")
    for key in REQUIRED_STRINGS[kind]:
        if not isinstance(block.get(key), str):
            raise ApiError(400, f"{where}.{key}: expected a string")
    citations = block.get("citations")
    if citations not in (None, []):
        raise ApiError(400, f"{where}.citations: citations are not supported")
    return kind


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "messages" not in body:
        raise ApiError(400, "messages: required field is missing")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise ApiError(400, "messages: expected an array of messages")
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            raise ApiError(400, f"{where}: expected an object with \"role\" and \"content\"")
        for key in msg:
            if key not in ("role", "content"):
                raise ApiError(400, f"{where}.{key}: unknown field of a message")
        role = msg.get("role")
        if not isinstance(role, str) or role not in ROLE_BLOCKS:
            raise ApiError(400, f"{where}.role: expected \"user\" or \"assistant\", got {role!r}")
        if role == "assistant" and i == len(messages) - 1:
            raise ApiError(400, f"{where}: a final assistant message (a prefill to continue) is not supported")
        content = msg.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif isinstance(content, list):
            out += _turn(role, content, where)
        else:
            raise ApiError(400, f"{where}.content: expected a string or an array of content blocks")
    return out


def _turn(role: str, blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """One turn of blocks -> its message (text parts, tool calls, reasoning) and then its tool results."""
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    reasoning = ""
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind = _check_block(block, at, ROLE_BLOCKS[role])
        if kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "thinking":
            reasoning += block["thinking"]
        elif kind == "tool_use":
            args = block.get("input", {})
            if not isinstance(args, Mapping):
                raise ApiError(400, f"{at}.input: expected an object")
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"],
                                       "arguments": json.dumps(args, ensure_ascii=False, separators=(",", ":"))}})
        else:
            results.append({"role": "tool", "tool_call_id": block["tool_use_id"],
                            "content": _result_content(block.get("content"), at)})
            if block.get("is_error") is not None and not isinstance(block["is_error"], bool):
                raise ApiError(400, f"{at}.is_error: expected a boolean")
    out: list[dict[str, Any]] = []
    if parts or calls or reasoning:
        msg: dict[str, Any] = {"role": role, "content": parts or ""}
        if calls:
            msg["tool_calls"] = calls
        if reasoning:
            msg["reasoning_content"] = reasoning
        out.append(msg)
    return out + results


def _result_content(value: Any, where: str) -> str:
    """A ``tool_result``'s content as one string (text blocks joined, as llama-server)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ApiError(400, f"{where}.content: expected a string or an array of text blocks")
    texts = []
    for k, block in enumerate(value):
        _check_block(block, f"{where}.content[{k}]", ("text",))
        texts.append(block["text"])
    return "".join(texts)


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ApiError(400, f"tools: expected an array of tools, got {type(value).__name__}")
    out = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping):
            raise ApiError(400, f"{where}: expected an object with \"name\" and \"input_schema\"")
        if tool.get("type", "custom") != "custom":
            raise ApiError(400, f"{where}.type: only client tools (\"custom\") are supported, got {tool['type']!r}")
        for key in tool:
            if key not in TOOL_KEYS:
                raise ApiError(400, f"{where}.{key}: unknown or unsupported field of a tool")
        fn: dict[str, Any] = {"name": tool.get("name")}
        if tool.get("description") is not None:
            fn["description"] = tool["description"]
        if "input_schema" not in tool:
            raise ApiError(400, f"{where}.input_schema: required field is missing")
        fn["parameters"] = tool["input_schema"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ApiError(400, f"tool_choice: expected an object such as {{\"type\": \"auto\"}}, got {value!r}")
    kind = value.get("type")
    allowed = {"type", "disable_parallel_tool_use"} | ({"name"} if kind == "tool" else set())
    for key in value:
        if key not in allowed:
            raise ApiError(400, f"tool_choice.{key}: unknown field for tool_choice type {kind!r}")
    out: dict[str, Any] = {}
    disable = value.get("disable_parallel_tool_use")
    if disable is not None:
        if not isinstance(disable, bool):
            raise ApiError(400, "tool_choice.disable_parallel_tool_use: expected a boolean")
        out["parallel_tool_calls"] = not disable
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        if not isinstance(value.get("name"), str):
            raise ApiError(400, "tool_choice.name: expected the name of one of the tools")
        out["tool_choice"] = {"type": "function", "function": {"name": value["name"]}}
    else:
        raise ApiError(400, f"tool_choice.type: expected \"auto\", \"any\", \"tool\" or \"none\", got {kind!r}")
    return out


def _thinking(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or value.get("type") not in ("enabled", "disabled"):
        raise ApiError(400, "thinking: expected {\"type\": \"enabled\", \"budget_tokens\": N} or "
                            "{\"type\": \"disabled\"}")
    for key in value:
        if key not in ("type", "budget_tokens"):
            raise ApiError(400, f"thinking.{key}: unknown field")
    budget = value.get("budget_tokens")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise ApiError(400, f"thinking.budget_tokens: expected a positive integer, got {budget!r}")


def _metadata(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ApiError(400, "metadata: expected an object such as {\"user_id\": \"...\"}")
    for key, item in value.items():
        if key != "user_id":
            raise ApiError(400, f"metadata.{key}: unknown field (only user_id)")
        if item is not None and not isinstance(item, str):
            raise ApiError(400, "metadata.user_id: expected a string")


#: OpenAI tool-field paths (``tools.py``'s 400s) -> the Anthropic body's names.
_RENAMES = ((re.compile(r"^(tools\[\d+\])\.function\.parameters"), r"\1.input_schema"),
            (re.compile(r"^(tools\[\d+\])\.function\."), r"\1."),
            (re.compile(r"^tool_choice\.function\.name"), "tool_choice.name"),
            (re.compile(r"^tool_choice: \"required\""), "tool_choice: {\"type\": \"any\"}"))


def renamed(exc: ApiError) -> ApiError:
    """``exc`` with OpenAI field names in its message spelled as the Anthropic body's."""
    message = exc.message
    for pattern, repl in _RENAMES:
        message = pattern.sub(repl, message)
    if message == exc.message:
        return exc
    return ApiError(exc.status, message, exc.headers, exc.error_type, exc.fields)
