"""Tool calling on ``/v1/chat/completions``: a body's ``tools`` / ``tool_choice`` / ``parallel_tool_calls`` checked
(400s naming the bad field), the prompt (tools through the model's chat template, the history's calls and tool
results kept), the grammar that forces a call, and the calls parsed out of the reply
(:mod:`emberllm.chat.tool_calls` does the format work).

- ``tools``: OpenAI function tools ``{"type": "function", "function": {"name", "description", "parameters",
  "strict"}}``; names are ``[A-Za-z0-9_-]{1,64}`` and unique; ``parameters`` a JSON schema the grammar can
  express (else 400 naming ``tools[i].function.parameters`` and the keyword).
- ``tool_choice``: ``auto`` (the default with tools), ``none`` (the tools are not offered), ``required`` (the
  reply is a call: grammar-constrained), or ``{"type": "function", "function": {"name": ...}}`` naming an offered
  tool (a call of that one: grammar-constrained).
- ``parallel_tool_calls``: whether one reply may hold several calls (default false, as llama-server).
- ``auto`` with the generic format is constrained too (a call or a ``response``), as llama.cpp's generic handler;
  with a native format the reply is free and parsed afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emberllm.chat.tool_calls import prepare_messages, tool_call_grammar
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.requests import get_bool
from emberllm.grammar.json_schema import UnsupportedSchemaError, schema_to_gbnf

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class ToolRequest:
    """What a body asks of tool calling. ``choice``: ``auto``, ``none``, ``required`` or ``function`` (then
    ``name``)."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    choice: str = "none"
    name: str | None = None
    parallel: bool = False

    @property
    def active(self) -> bool:
        """Whether tools are offered to the model (some given and the choice is not ``none``)."""
        return bool(self.tools) and self.choice != "none"

    @property
    def offered(self) -> list[dict[str, Any]]:
        """The tools the model may call (only the named one for a named choice)."""
        if self.choice == "function":
            return [t for t in self.tools if t["function"]["name"] == self.name]
        return self.tools

    def grammar(self, fmt: str) -> str:
        """The GBNF grammar of the reply in ``fmt`` (empty: unconstrained)."""
        if not self.active:
            return ""
        return tool_call_grammar(self.offered, fmt, required=self.choice in ("required", "function"),
                                 parallel=self.parallel)

    def messages(self, messages: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
        """The conversation to render for ``fmt``."""
        return prepare_messages(messages, fmt, self.offered if self.active else None,
                                "required" if self.choice == "function" else self.choice)


def tool_request(data: dict[str, Any]) -> ToolRequest:
    """The body's tool fields, checked."""
    tools = _tools(data.get("tools"))
    req = ToolRequest(tools=tools, choice="auto" if tools else "none",
                      parallel=get_bool(data, "parallel_tool_calls", False))
    choice = data.get("tool_choice")
    if choice is None:
        return req
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise ApiError(400, f"tool_choice: must be \"auto\", \"none\", \"required\" or "
                                f"{{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got {choice!r}")
        if choice == "required" and not tools:
            raise ApiError(400, "tool_choice: \"required\" needs tools, and none were given")
        req.choice = choice
        return req
    if not isinstance(choice, Mapping):
        raise ApiError(400, f"tool_choice: expected a string or an object, got {type(choice).__name__}")
    if choice.get("type") != "function":
        raise ApiError(400, f"tool_choice.type: must be \"function\", got {choice.get('type')!r}")
    fn = choice.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(name, str):
        raise ApiError(400, "tool_choice.function.name: expected the name of one of the tools")
    if name not in {t["function"]["name"] for t in tools}:
        raise ApiError(400, f"tool_choice.function.name: function {name!r} is not among the tools offered")
    req.choice, req.name = "function", name
    return req


def _tools(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(400, f"tools: expected an array of tools, got {type(value).__name__}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping):
            raise ApiError(400, f"{where}: expected an object {{\"type\": \"function\", \"function\": {{...}}}}")
        if tool.get("type") != "function":
            raise ApiError(400, f"{where}.type: must be \"function\", got {tool.get('type')!r}")
        fn = tool.get("function")
        if not isinstance(fn, Mapping):
            raise ApiError(400, f"{where}.function: expected an object with \"name\" and \"parameters\"")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ApiError(400, f"{where}.function.name: expected 1 to 64 letters, digits, '_' or '-', got {name!r}")
        if name in seen:
            raise ApiError(400, f"{where}.function.name: {name!r} is given twice")
        seen.add(name)
        desc = fn.get("description")
        if desc is not None and not isinstance(desc, str):
            raise ApiError(400, f"{where}.function.description: expected a string")
        strict = fn.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise ApiError(400, f"{where}.function.strict: expected a boolean")
        params = fn.get("parameters")
        if params is not None:
            if not isinstance(params, Mapping):
                raise ApiError(400, f"{where}.function.parameters: expected a JSON schema object, "
                                    f"got {type(params).__name__}")
            try:
                schema_to_gbnf(dict(params) or {"type": "object"}, strict=bool(strict))
            except UnsupportedSchemaError as exc:
                raise ApiError(400, f"{where}.function.parameters: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - any schema the converter chokes on is the client's error
                raise ApiError(400, f"{where}.function.parameters: invalid JSON schema: {exc}") from exc
        clean = {"name": name, **({"description": desc} if desc is not None else {}),
                 "parameters": dict(params) if params else {"type": "object", "properties": {}}}
        out.append({"type": "function", "function": clean})
    return out


def check_history(messages: list[dict[str, Any]]) -> None:
    """400 for an assistant ``tool_calls`` or a ``tool`` message of the wrong shape."""
    for i, msg in enumerate(messages):
        calls = msg.get("tool_calls")
        if calls is not None:
            if msg.get("role") != "assistant":
                raise ApiError(400, f"messages[{i}].tool_calls: only assistant messages hold tool calls")
            if not isinstance(calls, list):
                raise ApiError(400, f"messages[{i}].tool_calls: expected an array")
            for j, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, Mapping) else None
                if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                    raise ApiError(400, f"messages[{i}].tool_calls[{j}].function.name: expected a string")
                args = fn.get("arguments")
                if args is not None and not isinstance(args, str | Mapping):
                    raise ApiError(400, f"messages[{i}].tool_calls[{j}].function.arguments: expected a JSON string")
        if msg.get("role") == "tool":
            tcid = msg.get("tool_call_id")
            if tcid is not None and not isinstance(tcid, str):
                raise ApiError(400, f"messages[{i}].tool_call_id: expected a string")
