"""The prompt of a chat request, as llama-server builds it: the tools rendered through the model's template,
``add_generation_prompt`` / ``continue_final_message`` with its assistant prefill (a conversation ending in an
assistant message is continued from inside that message), the template's keyword arguments (``enable_thinking``
from ``--reasoning`` or the request, ``chat_template_kwargs``, ``reasoning_effort``), and how the reply's reasoning
is split out (``reasoning_format``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emberllm.chat.reasoning import ReasoningSplitter, split_reasoning, think_tags
from emberllm.chat.tool_calls import detect_format
from emberllm.edge_server.config import ServerConfig
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.requests import get_bool
from emberllm.edge_server.tools import ToolRequest, check_history, tool_request
from emberllm.runtime.model import Model


@dataclass
class PromptPlan:
    """How a request's messages become prompt text."""

    tools: ToolRequest
    fmt_name: str
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    #: the template's reasoning tags, when the reply's reasoning is split out (None: left in the content)
    think: tuple[str, str] | None = None
    #: llama.cpp's deepseek-legacy: reasoning_content is set and the content keeps the tags
    legacy: bool = False
    opened: bool = False  # the last rendered prompt ends inside the reasoning (with the start tag)

    def render(self, model: Model, messages: list[dict[str, Any]]) -> str:
        """The prompt text of ``messages`` (400 when the template cannot render them)."""
        if self.continue_final_message and messages and isinstance(messages[-1].get("content"), list):
            messages = [*messages[:-1], {**messages[-1], "content": continued_text(messages[-1]["content"])}]
        try:
            text = model.chat_template.render_prompt(
                self.tools.messages(messages, self.fmt_name), tools=self.tools.offered if self.tools.active else None,
                add_generation_prompt=self.add_generation_prompt, continue_final_message=self.continue_final_message,
                **self.template_kwargs)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"messages: {exc}") from exc
        self.opened = self.think is not None and text.rstrip().endswith(self.think[0])
        return text

    def split(self, text: str) -> tuple[str | None, str]:
        """A whole reply's ``reasoning_content`` (None: none) and ``content``."""
        if self.think is None:
            return None, text
        reasoning, content = split_reasoning(text, self.think, self.opened)
        return reasoning, (text if self.legacy else content)

    def splitter(self) -> ReasoningSplitter | None:
        """The streamed reply's splitter (None: everything is content)."""
        return None if self.think is None or self.legacy else ReasoningSplitter(*self.think, opened=self.opened)


def plan_prompt(model: Model, data: dict[str, Any], messages: list[dict[str, Any]],
                config: ServerConfig | None = None) -> PromptPlan:
    """The body's tool, prefill and reasoning fields over the server's defaults, checked (400 naming what is
    wrong)."""
    tools = tool_request(data)
    check_history(messages)
    add_generation_prompt = get_bool(data, "add_generation_prompt", True)
    continue_final = _continuation(data.get("continue_final_message"))
    if not continue_final and messages and messages[-1].get("role") == "assistant":
        if len(messages) >= 2 and messages[-2].get("role") == "assistant":
            raise ApiError(400, "messages: Cannot have 2 or more assistant messages at the end of the list.")
        continue_final, add_generation_prompt = True, False
    if continue_final and add_generation_prompt:
        raise ApiError(400, "continue_final_message: Cannot set both add_generation_prompt and "
                            "continue_final_message to true.")
    if continue_final and messages and messages[-1].get("tool_calls"):
        raise ApiError(400, "continue_final_message: Cannot continue an assistant message that contains tool calls.")
    config = config or ServerConfig(model_path=Path())
    kwargs, enable_thinking = _template_kwargs(data, config)
    fmt = _reasoning_format(data, config)
    source = model.chat_template.template
    think = think_tags(source) if fmt != "none" and enable_thinking else None
    return PromptPlan(tools, detect_format(source), add_generation_prompt, continue_final,
                      {**kwargs, "enable_thinking": enable_thinking}, think, fmt == "deepseek-legacy")


#: llama.cpp's ``reasoning_format`` values (``auto`` and ``deepseek`` split the reasoning into reasoning_content).
REASONING_FORMATS = ("none", "auto", "deepseek", "deepseek-legacy")


def _template_kwargs(data: dict[str, Any], config: ServerConfig) -> tuple[dict[str, Any], bool]:
    """``--chat-template-kwargs`` with the request's ``chat_template_kwargs`` over them, and ``enable_thinking``
    (``--reasoning``; the kwargs' own; ``reasoning_effort: "none"`` turns it off)."""
    extra = data.get("chat_template_kwargs")
    if extra is not None and not isinstance(extra, dict):
        raise ApiError(400, "chat_template_kwargs: expected an object")
    kwargs = {**config.chat_template_kwargs, **(extra or {})}
    enable = kwargs.pop("enable_thinking", config.reasoning != "off")
    if not isinstance(enable, bool):
        raise ApiError(400, f"chat_template_kwargs.enable_thinking: expected a boolean, got {enable!r}")
    effort = data.get("reasoning_effort")
    if effort is not None:
        if not isinstance(effort, str):
            raise ApiError(400, "reasoning_effort: expected a string")
        if effort == "none":
            enable = False
        else:
            kwargs["reasoning_effort"] = effort
    return kwargs, enable


def _reasoning_format(data: dict[str, Any], config: ServerConfig) -> str:
    fmt = data.get("reasoning_format", config.reasoning_format)
    if fmt not in REASONING_FORMATS:
        raise ApiError(400, f"reasoning_format: expected one of {', '.join(REASONING_FORMATS)}, got {fmt!r}")
    return fmt


def _continuation(value: Any) -> bool:
    """llama-server's ``continue_final_message``: true or ``"content"`` continue the last message's content."""
    if value is None or value is False:
        return False
    if value is True or value == "content":
        return True
    if value == "reasoning_content":
        raise ApiError(400, "continue_final_message: \"reasoning_content\" (continuing inside the reasoning) is not "
                            "supported; send true or \"content\"")
    raise ApiError(400, f"continue_final_message: expected a boolean or \"content\", got {value!r}")


def continued_text(parts: list[Any]) -> str:
    """The text a continued assistant message's content parts continue from: their text parts joined by a blank
    line (llama.cpp's ``render_content``)."""
    return "\n\n".join(p["text"] for p in parts if isinstance(p, dict) and p.get("type") == "text"
                        and isinstance(p.get("text"), str))
