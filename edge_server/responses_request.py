"""OpenAI Responses API bodies as chat completion bodies (llama-server's conversion, ``/v1/responses``).

``input`` (a string, or items: input messages with ``input_text`` parts, earlier assistant ``message`` items,
``function_call`` and ``function_call_output`` items, ``reasoning`` items) becomes ``messages``, ``instructions`` a
leading system message, ``max_output_tokens`` ``max_tokens``, ``reasoning.effort`` ``reasoning_effort``, function
``tools`` chat tools and ``text.format`` a ``response_format``; every other field passes through to the chat
completion's checks.  What has no counterpart here is a 400 naming it (``previous_response_id``: nothing is stored;
images and files: no multimodal input; tools of other types than ``function``).
"""

from __future__ import annotations

from typing import Any

from emberllm.edge_server.errors import ApiError

#: Roles of an input message item.
INPUT_ROLES = ("user", "system", "developer")


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion body of a Responses body (``ApiError`` 400 naming what cannot be converted)."""
    if "input" not in body:
        raise ApiError(400, "input: required")
    if body.get("previous_response_id"):
        raise ApiError(400, "previous_response_id: not supported (responses are not stored); send the whole "
                            "conversation in input")
    data = {k: v for k, v in body.items() if k not in ("input", "instructions", "max_output_tokens", "reasoning",
                                                      "tools", "text")}
    messages: list[dict[str, Any]] = []
    if "instructions" in body and body["instructions"] is not None:
        if not isinstance(body["instructions"], str):
            raise ApiError(400, "instructions: expected a string")
        messages.append({"role": "system", "content": body["instructions"]})
    value = body["input"]
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ApiError(400, f"input[{i}]: expected an object")
            _add_item(messages, item, f"input[{i}]")
    else:
        raise ApiError(400, "input: expected a string or an array of items")
    data["messages"] = messages
    if body.get("max_output_tokens") is not None:
        data["max_tokens"] = body["max_output_tokens"]
    if body.get("reasoning") is not None:
        data.update(_reasoning(body["reasoning"]))
    if body.get("tools") is not None:
        tools = _tools(body["tools"])
        if tools:
            data["tools"] = tools
    if body.get("text") is not None:
        data.update(_text_format(body["text"]))
    return data


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any], where: str) -> None:
    """Append one input item to ``messages`` (assistant parts merge into a preceding assistant message)."""
    role, kind = item.get("role"), item.get("type")
    after_assistant = bool(messages) and messages[-1].get("role") == "assistant"
    if role in INPUT_ROLES and (isinstance(item.get("content"), str | list)):
        messages.append({"role": role, "content": _input_parts(item["content"], f"{where}.content")})
    elif role == "assistant" and kind in ("message", None):
        parts = _output_parts(item.get("content", ""), f"{where}.content")
        if after_assistant and kind == "message":
            prev = messages[-1]
            prev["content"] = _as_parts(prev.get("content")) + parts
        else:
            messages.append({"role": "assistant", "content": parts})
    elif kind == "function_call":
        for key in ("arguments", "call_id", "name"):
            if not isinstance(item.get(key), str):
                raise ApiError(400, f"{where}.{key}: expected a string")
        call = {"id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]}}
        if after_assistant:
            messages[-1].setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise ApiError(400, f"{where}.call_id: expected a string")
        output = item.get("output")
        if not isinstance(output, str | list):
            raise ApiError(400, f"{where}.output: expected a string or an array of input_text parts")
        messages.append({"role": "tool", "tool_call_id": item["call_id"],
                         "content": output if isinstance(output, str) else _input_parts(output, f"{where}.output")})
    elif kind == "reasoning":
        content = item.get("content")
        if not (isinstance(content, list) and content and isinstance(content[0], dict)
                and isinstance(content[0].get("text"), str)):
            raise ApiError(400, f"{where}.content: a reasoning item needs [{{\"type\": \"reasoning_text\", "
                                "\"text\": ...}]")
        if after_assistant:
            messages[-1]["reasoning_content"] = content[0]["text"]
        else:
            messages.append({"role": "assistant", "content": "", "reasoning_content": content[0]["text"]})
    else:
        raise ApiError(400, f"{where}: cannot determine the item's type (an input message with role user, system or "
                            "developer, an assistant message, function_call, function_call_output or reasoning)")


def _input_parts(content: str | list[Any], where: str) -> str | list[dict[str, Any]]:
    """An input message's content: a string as it is, ``input_text`` parts as chat text parts."""
    if isinstance(content, str):
        return content
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind in ("input_image", "input_file", "input_audio"):
            raise ApiError(400, f"{where}[{i}].type: {kind} is not supported (no multimodal input)")
        else:
            raise ApiError(400, f"{where}[{i}]: expected an input_text part with a string text")
    return parts


def _output_parts(content: Any, where: str) -> list[dict[str, Any]]:
    """An earlier assistant message's content as chat text parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ApiError(400, f"{where}: expected a string or an array of output_text parts")
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("output_text", "input_text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        else:
            raise ApiError(400, f"{where}[{i}]: expected an output_text or refusal part")
    return parts


def _as_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []


def _reasoning(value: Any) -> dict[str, Any]:
    """``reasoning``: only ``effort`` (``summary`` and the rest have no counterpart)."""
    if not isinstance(value, dict):
        raise ApiError(400, "reasoning: expected an object")
    extra = sorted(k for k, v in value.items() if k != "effort" and v is not None)
    if extra:
        raise ApiError(400, f"reasoning.{extra[0]}: not supported (only reasoning.effort)")
    return {"reasoning_effort": value["effort"]} if value.get("effort") is not None else {}


def _tools(value: Any) -> list[dict[str, Any]]:
    """Function tools in the chat shape (``{"type": "function", "function": {...}}``)."""
    if not isinstance(value, list):
        raise ApiError(400, "tools: expected an array of tool objects")
    out = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise ApiError(400, f"tools[{i}].type: only function tools are supported, got {kind!r}")
        function = {k: v for k, v in tool.items() if k != "type"}
        function.setdefault("strict", True)
        out.append({"type": "function", "function": function})
    return out


def _text_format(value: Any) -> dict[str, Any]:
    """``text.format`` as ``response_format`` (``text``: none)."""
    if not isinstance(value, dict):
        raise ApiError(400, "text: expected an object")
    extra = sorted(k for k, v in value.items() if k not in ("format", "verbosity") and v is not None)
    if extra:
        raise ApiError(400, f"text.{extra[0]}: not supported")
    if value.get("verbosity") not in (None, "medium"):
        raise ApiError(400, "text.verbosity: not supported (only medium)")
    fmt = value.get("format")
    if fmt is None:
        return {}
    if not isinstance(fmt, dict):
        raise ApiError(400, "text.format: expected an object")
    kind = fmt.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise ApiError(400, f"text.format.type: expected text, json_object or json_schema, got {kind!r}")
