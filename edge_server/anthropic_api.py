"""Anthropic's Messages API, as llama-server serves it: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

A body becomes an OpenAI chat body (``anthropic_request.to_openai``) and runs through ``/v1/chat/completions``' own
steps (``openai_api.chat_prompt``, ``chat_generation``, ``chat_reply``, ``chat_stream``); the reply is translated
back: content blocks (``text``, then ``tool_use`` with the parsed ``input``), ``stop_reason`` (``end_turn``,
``max_tokens``, ``stop_sequence`` with ``stop_sequence`` set, ``tool_use``) and ``usage`` (``input_tokens`` not read
from the prompt cache, ``cache_read_input_tokens``, ``output_tokens``).  Streams are Anthropic's named SSE events
(``message_start``, ``content_block_start``/``_delta``/``_stop`` with ``text_delta`` and ``input_json_delta``,
``message_delta``, ``message_stop``), made by translating the OpenAI stream's chunks as llama-server does.
Errors carry llama-server's body plus Anthropic's ``"type": "error"``:
``{"type": "error", "error": {"type", "message", "code"}}``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emberllm.edge_server.anthropic_request import renamed, stop_sequences, to_openai
from emberllm.edge_server.errors import ApiError, error_body
from emberllm.edge_server.events import GenResult
from emberllm.edge_server.generation import StreamFormat, collect, sampling_from, start, stream_sse
from emberllm.edge_server.openai_api import (
    ChatPrompt,
    ChatStream,
    chat_generation,
    chat_prompt,
    chat_reply,
    chat_stream,
)
from emberllm.edge_server.requests import get_bool, get_int, read_json
from emberllm.edge_server.sse import SSEResponse, named_events
from emberllm.edge_server.state import ServerState, check_ready, server_of, use_model
from emberllm.runtime.model import Model, Step


def anthropic_error(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """llama-server's error body with Anthropic's top-level ``"type": "error"``."""
    return {"type": "error", **error_body(status, message, error_type)}


def anthropic_errors(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` with its ApiErrors answered in Anthropic's error shape."""
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return JSONResponse(anthropic_error(exc.status, exc.message, exc.error_type), status_code=exc.status,
                                headers=exc.headers)
    return wrapped


async def _chat(server: ServerState, model: Model, body: dict[str, Any]) -> tuple[dict[str, Any], ChatPrompt]:
    """The OpenAI body of an Anthropic one and its rendered prompt."""
    data = to_openai(body)
    try:
        return data, await chat_prompt(server, model, data, data["messages"])
    except ApiError as exc:
        raise renamed(exc) from exc


def stop_reason(finish: str, last: Step, stops: list[str]) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` of an OpenAI finish reason and the last step."""
    if finish == "tool_calls":
        return "tool_use", None
    if finish == "length":
        return "max_tokens", None
    if last.stop_word is not None and last.stop_word in stops:
        return "stop_sequence", last.stop_word
    return "end_turn", None


def usage(n_prompt: int, n_cached: int, n_predicted: int) -> dict[str, int]:
    """Anthropic's ``usage``: prompt tokens read from the cache apart, as llama-server."""
    return {"cache_read_input_tokens": n_cached, "input_tokens": n_prompt - n_cached, "output_tokens": n_predicted}


def content_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI assistant message as content blocks: its text, then one ``tool_use`` per call."""
    blocks: list[dict[str, Any]] = []
    if message.get("content"):
        blocks.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        try:
            args = json.loads(call["function"]["arguments"])
        except json.JSONDecodeError:
            args = {}
        blocks.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                       "input": args if isinstance(args, dict) else {}})
    return blocks


@dataclass
class MessageStream(StreamFormat):
    """Anthropic's events, translated from the chunks of the OpenAI chat stream ``inner``: one block open at a
    time, each closed before the next starts."""

    inner: ChatStream
    message: dict[str, Any]  # message_start's message
    stops: list[str]
    n_prompt: int
    n_cached: int
    index: int = field(default=-1, init=False)  # the open block's index (-1: none yet)
    open: bool = field(default=False, init=False)
    kind: str = field(default="", init=False)  # the open block's type
    finish: str = field(default="stop", init=False)

    def head(self) -> list[Any]:
        """``message_start``."""
        return [[{"type": "message_start", "message": self.message}]]

    def step(self, step: Step, n_predicted: int) -> list[dict[str, Any]] | None:
        """The events of the inner stream's chunk for this step."""
        chunk = self.inner.step(step, n_predicted)
        if chunk is None:
            return None
        return self._translate(chunk) or None

    def tail(self, last: Step, result: GenResult | None, n_predicted: int) -> list[Any]:
        """The rest of the blocks, their stop, ``message_delta`` (stop reason, final usage) and ``message_stop``."""
        events: list[dict[str, Any]] = []
        for chunk in self.inner.tail(last, result, n_predicted):
            if isinstance(chunk, dict) and chunk.get("choices"):
                events += self._translate(chunk)
        events += self._close()
        reason, word = stop_reason(self.finish, last, self.stops)
        n_cached = result.timings.cached_tokens if result is not None else self.n_cached
        events.append({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": word},
                       "usage": usage(self.n_prompt, n_cached, n_predicted)})
        events.append({"type": "message_stop"})
        return [events]

    def error(self, error: BaseException) -> Any:
        """An ``error`` event."""
        return [anthropic_error(500, str(error))]

    def render(self, chunk: Any) -> str:
        """Each event as ``event: TYPE`` and its data."""
        return named_events(chunk)

    def _close(self) -> list[dict[str, Any]]:
        if not self.open:
            return []
        self.open = False
        return [{"type": "content_block_stop", "index": self.index}]

    def _start(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self.index += 1
        self.open = True
        return events + [{"type": "content_block_start", "index": self.index, "content_block": block}]

    def _translate(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        choice = chunk["choices"][0]
        delta = choice.get("delta") or {}
        events: list[dict[str, Any]] = []
        if delta.get("content"):
            if not self.open or self.kind != "text":
                events += self._start({"type": "text", "text": ""})
                self.kind = "text"
            events.append({"type": "content_block_delta", "index": self.index,
                           "delta": {"type": "text_delta", "text": delta["content"]}})
        for call in delta.get("tool_calls") or []:
            if "id" in call:
                events += self._start({"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                                       "input": {}})
                self.kind = "tool_use"
            piece = (call.get("function") or {}).get("arguments")
            if piece:
                events.append({"type": "content_block_delta", "index": self.index,
                               "delta": {"type": "input_json_delta", "partial_json": piece}})
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
        return events


@anthropic_errors
async def messages(request: Request) -> Response:
    """``POST /v1/messages``."""
    server = server_of(request)
    check_ready(request)
    body = await read_json(request, server.config.max_body_bytes)
    lease = await use_model(request, body)
    model = lease.model
    stream = get_bool(body, "stream", False)
    data, chat = await _chat(server, model, body)
    stops = stop_sequences(body)
    req, n_prompt, headers = await chat_generation(server, model, data, chat, None)
    name = lease.name
    mid = f"msg_{uuid.uuid4().hex}"
    job, events = await start(lease.worker, req)
    if not stream:
        out = await collect(events)
        message, finish = chat_reply(out, chat)
        reason, word = stop_reason(finish, out.last, stops)
        n_cached = out.result.timings.cached_tokens if out.result is not None else job.n_cached
        return JSONResponse({"id": mid, "type": "message", "role": "assistant", "content": content_blocks(message),
                             "model": name, "stop_reason": reason, "stop_sequence": word,
                             "usage": usage(n_prompt, n_cached, out.n_predicted)}, headers=headers)
    start_message = {"id": mid, "type": "message", "role": "assistant", "content": [], "model": name,
                     "stop_reason": None, "stop_sequence": None, "usage": usage(n_prompt, job.n_cached, 0)}
    inner = chat_stream(model, chat, mid, int(time.time()), name, n_prompt, None, False)
    fmt = MessageStream(inner, start_message, stops, n_prompt, job.n_cached)
    return SSEResponse(stream_sse(events, fmt), on_close=job.cancel.set, headers=headers)


@anthropic_errors
async def count_tokens(request: Request) -> Response:
    """``POST /v1/messages/count_tokens``: the token count of the prompt the same body generates from
    (``{"input_tokens": N}``)."""
    server = server_of(request)
    check_ready(request)
    body = await read_json(request, server.config.max_body_bytes)
    model = (await use_model(request, body)).model
    data, chat = await _chat(server, model, body)
    get_bool(data, "stream", False)  # the generation fields' bad values are 400s here too
    get_int(data, "max_tokens", -1, -1, 2**31 - 1)
    sampling_from(data, model)
    tokens = await asyncio.to_thread(model.tokenize, chat.text)
    return JSONResponse({"input_tokens": len(tokens)})
