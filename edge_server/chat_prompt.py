"""The prompt of a chat request, as llama-server builds it: the tools rendered through the model's template, and
``add_generation_prompt`` / ``continue_final_message`` with its assistant prefill (a conversation ending in an
assistant message is continued from inside that message)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emberllm.chat.tool_calls import detect_format
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.requests import get_bool
from emberllm.edge_server.tools import ToolRequest, check_history, tool_request
from emberllm.runtime.model import Model


@dataclass
class ChatPrompt:
    """How a request's messages become prompt text."""

    tools: ToolRequest
    fmt_name: str
    add_generation_prompt: bool = True
    continue_final_message: bool = False

    def render(self, model: Model, messages: list[dict[str, Any]]) -> str:
        """The prompt text of ``messages`` (400 when the template cannot render them)."""
        try:
            return model.chat_template.render_prompt(
                self.tools.messages(messages, self.fmt_name), tools=self.tools.offered if self.tools.active else None,
                add_generation_prompt=self.add_generation_prompt, continue_final_message=self.continue_final_message)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"messages: {exc}") from exc


def chat_prompt(model: Model, data: dict[str, Any], messages: list[dict[str, Any]]) -> ChatPrompt:
    """The body's tool fields and llama-server's prefill rules, checked (400 naming what is wrong)."""
    tools = tool_request(data)
    check_history(messages)
    add_generation_prompt = get_bool(data, "add_generation_prompt", True)
    continue_final = _continuation(data.get("continue_final_message"))
    if not continue_final and messages[-1].get("role") == "assistant":
        if len(messages) >= 2 and messages[-2].get("role") == "assistant":
            raise ApiError(400, "messages: Cannot have 2 or more assistant messages at the end of the list.")
        continue_final, add_generation_prompt = True, False
    if continue_final and add_generation_prompt:
        raise ApiError(400, "continue_final_message: Cannot set both add_generation_prompt and "
                            "continue_final_message to true.")
    if continue_final and messages[-1].get("tool_calls"):
        raise ApiError(400, "continue_final_message: Cannot continue an assistant message that contains tool calls.")
    return ChatPrompt(tools, detect_format(model.chat_template.template), add_generation_prompt, continue_final)


def _continuation(value: Any) -> bool:
    """llama-server's ``continue_final_message``: true or ``"content"`` continue the last message's content."""
    if value is None or value is False:
        return False
    if value is True or value == "content":
        return True
    if value == "reasoning_content":
        raise ApiError(400, "continue_final_message: \"reasoning_content\" is not supported (no reasoning parser)")
    raise ApiError(400, f"continue_final_message: expected a boolean or \"content\", got {value!r}")
