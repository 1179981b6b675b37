"""OpenAI's Responses API as llama-server serves it: ``POST /v1/responses`` and ``/v1/responses/input_tokens``.

A body becomes a chat completion body (``responses_request.to_chat``) and runs through ``/v1/chat/completions``'
steps; the reply is a ``response`` object whose ``output`` holds a ``reasoning`` item (when the template thinks), a
``message`` item with one ``output_text`` part, and one ``function_call`` item per tool call.  Streams are the named
events llama-server sends (``response.created``, ``response.in_progress`` (also for ``return_progress``, with
``prompt_progress``), ``response.output_item.added``, ``response.content_part.added``, ``response.output_text.delta``,
``response.reasoning_text.delta``, ``response.function_call_arguments.delta``, then the ``.done`` events and
``response.completed`` with ``usage`` and llama-server's ``timings``); ``timings_per_token`` puts the timings so far
on each step's last event.  Nothing is stored: ``previous_response_id`` is refused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emberllm.edge_server.errors import error_body
from emberllm.edge_server.events import GenResult, ProgressEvent
from emberllm.edge_server.generation import (
    StreamFormat,
    collect,
    progress_fields,
    start,
    stream_sse,
    timings_dict,
    timings_of,
)
from emberllm.edge_server.openai_api import ChatStream, chat_generation, chat_prompt, chat_reply, chat_stream
from emberllm.edge_server.requests import get_bool, read_json
from emberllm.edge_server.responses_request import to_chat
from emberllm.edge_server.sse import SSEResponse, named_events
from emberllm.edge_server.state import check_ready, server_of, use_model
from emberllm.edge_server.worker import Job
from emberllm.runtime.model import Step


def new_id(prefix: str) -> str:
    """An id such as ``resp_...``, ``msg_...``, ``rs_...``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def usage(n_prompt: int, n_cached: int, n_predicted: int) -> dict[str, Any]:
    """The Responses API's ``usage``."""
    return {"input_tokens": n_prompt, "output_tokens": n_predicted, "total_tokens": n_prompt + n_predicted,
            "input_tokens_details": {"cached_tokens": n_cached}, "output_tokens_details": {"reasoning_tokens": 0}}


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """A ``reasoning`` output item."""
    return {"id": item_id, "type": "reasoning", "summary": [], "status": status, "encrypted_content": "",
            "content": [{"type": "reasoning_text", "text": text}] if text else []}


def text_part(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """A ``message`` output item with one text part."""
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [text_part(text)] if status == "completed" else []}


def call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """A ``function_call`` output item of an OpenAI chat tool call."""
    fn = call.get("function") or {}
    return {"id": f"fc_{call['id']}", "type": "function_call", "status": status, "call_id": call["id"],
            "name": fn.get("name", ""), "arguments": fn.get("arguments", "") if status == "completed" else ""}


def output_items(message: dict[str, Any], msg_id: str, rs_id: str) -> list[dict[str, Any]]:
    """The ``output`` of a finished reply: reasoning, text, tool calls."""
    out = []
    if message.get("reasoning_content"):
        out.append(reasoning_item(rs_id, message["reasoning_content"]))
    if message.get("content"):
        out.append(message_item(msg_id, message["content"]))
    out += [call_item(call) for call in message.get("tool_calls") or []]
    return out


def response_object(resp_id: str, name: str, output: list[dict[str, Any]], status: str,
                    use: dict[str, Any] | None, created: int) -> dict[str, Any]:
    """A ``response`` object."""
    body: dict[str, Any] = {"id": resp_id, "object": "response", "created_at": created, "status": status,
                            "model": name, "output": output}
    if status == "completed":
        body["completed_at"] = int(time.time())
    if use is not None:
        body["usage"] = use
    return body


@dataclass
class ResponseStream(StreamFormat):
    """The Responses events, translated from the chunks of the OpenAI chat stream ``inner``."""

    inner: ChatStream
    job: Job
    resp_id: str
    name: str
    created: int
    n_prompt: int
    per_token_timings: bool = False
    msg_id: str = field(default_factory=lambda: new_id("msg"))
    rs_id: str = field(default_factory=lambda: new_id("rs"))
    text: str = field(default="", init=False)
    reasoning: str = field(default="", init=False)
    calls: list[dict[str, Any]] = field(default_factory=list, init=False)
    text_started: bool = field(default=False, init=False)
    reasoning_started: bool = field(default=False, init=False)

    def _state(self, kind: str) -> dict[str, Any]:
        return {"type": kind, "response": response_object(self.resp_id, self.name, [], "in_progress", None,
                                                          self.created)}

    def head(self) -> list[Any]:
        """``response.created`` and ``response.in_progress``."""
        return [[self._state("response.created"), self._state("response.in_progress")]]

    def progress(self, event: ProgressEvent) -> list[dict[str, Any]]:
        """``response.in_progress`` with the prompt's progress."""
        return [{**self._state("response.in_progress"), **progress_fields(event)}]

    def step(self, step: Step, n_predicted: int) -> list[dict[str, Any]] | None:
        """The events of the inner stream's chunk for this step."""
        chunk = self.inner.step(step, n_predicted)
        events = self._translate(chunk) if isinstance(chunk, dict) else []
        if events and self.per_token_timings and self.job.timings is not None:
            events[-1]["timings"] = timings_of(self.job.timings, n_predicted)
        return events or None

    def tail(self, last: Step, result: GenResult | None, n_predicted: int) -> list[Any]:
        """The rest of the deltas, the ``.done`` events and ``response.completed``."""
        events: list[dict[str, Any]] = []
        for chunk in self.inner.tail(last, result, n_predicted):
            if isinstance(chunk, dict) and chunk.get("choices"):
                events += self._translate(chunk)
        output = []
        if self.reasoning_started:
            item = reasoning_item(self.rs_id, self.reasoning)
            events.append({"type": "response.output_item.done", "item": item})
            output.append(item)
        if self.text_started:
            part = text_part(self.text)
            events += [{"type": "response.output_text.done", "item_id": self.msg_id, "text": self.text},
                       {"type": "response.content_part.done", "item_id": self.msg_id, "part": part}]
            item = message_item(self.msg_id, self.text)
            events.append({"type": "response.output_item.done", "item": item})
            output.append(item)
        for call in self.calls:
            item = call_item(call)
            events.append({"type": "response.output_item.done", "item": item})
            output.append(item)
        n_cached = result.timings.cached_tokens if result is not None else self.job.n_cached
        done = {"type": "response.completed",
                "response": response_object(self.resp_id, self.name, output, "completed",
                                            usage(self.n_prompt, n_cached, n_predicted), self.created)}
        if result is not None:
            done["timings"] = timings_dict(result, n_predicted)
        events.append(done)
        return [events]

    def error(self, error: BaseException) -> Any:
        """An ``error`` event."""
        return [{"type": "error", **error_body(500, str(error))}]

    def render(self, chunk: Any) -> str:
        """Each event as ``event: TYPE`` and its data."""
        return named_events(chunk)

    def _translate(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
        events: list[dict[str, Any]] = []
        if delta.get("reasoning_content"):
            if not self.reasoning_started:
                self.reasoning_started = True
                events.append({"type": "response.output_item.added",
                               "item": reasoning_item(self.rs_id, "", "in_progress")})
            self.reasoning += delta["reasoning_content"]
            events.append({"type": "response.reasoning_text.delta", "item_id": self.rs_id,
                           "delta": delta["reasoning_content"]})
        if delta.get("content"):
            if not self.text_started:
                self.text_started = True
                events += [{"type": "response.output_item.added", "item": message_item(self.msg_id, "", "in_progress")},
                           {"type": "response.content_part.added", "item_id": self.msg_id,
                            "part": {"type": "output_text", "text": ""}}]
            self.text += delta["content"]
            events.append({"type": "response.output_text.delta", "item_id": self.msg_id, "delta": delta["content"]})
        for call in delta.get("tool_calls") or []:
            fn = call.get("function") or {}
            if "id" in call:
                self.calls.append({"id": call["id"], "function": {"name": fn.get("name", ""), "arguments": ""}})
                events.append({"type": "response.output_item.added", "item": call_item(self.calls[-1], "in_progress")})
            if fn.get("arguments") and self.calls:
                self.calls[-1]["function"]["arguments"] += fn["arguments"]
                events.append({"type": "response.function_call_arguments.delta",
                               "item_id": f"fc_{self.calls[-1]['id']}", "delta": fn["arguments"]})
        return events


async def responses(request: Request) -> Response:
    """``POST /v1/responses``."""
    server = server_of(request)
    check_ready(request)
    body = await read_json(request, server.config.max_body_bytes)
    lease = await use_model(request, body)
    model = lease.model
    data = to_chat(body)
    stream = get_bool(data, "stream", False)
    chat = await chat_prompt(server, model, data, data["messages"])
    req, n_prompt, headers = await chat_generation(server, model, data, chat, None)
    req.return_progress = get_bool(data, "return_progress", False) and stream
    per_token_timings = get_bool(data, "timings_per_token", False)
    resp_id, created, name = new_id("resp"), int(time.time()), lease.name
    job, events = await start(lease.worker, req)
    if not stream:
        out = await collect(events, request, job)
        message, _ = chat_reply(out, chat)
        n_cached = out.result.timings.cached_tokens if out.result is not None else job.n_cached
        reply = response_object(resp_id, name, output_items(message, new_id("msg"), new_id("rs")), "completed",
                                usage(n_prompt, n_cached, out.n_predicted), created)
        reply["timings"] = timings_dict(out.result, out.n_predicted)
        return JSONResponse(reply, headers=headers)
    inner = chat_stream(model, chat, resp_id, created, name, n_prompt, None, False)
    fmt = ResponseStream(inner, job, resp_id, name, created, n_prompt, per_token_timings)
    return SSEResponse(stream_sse(events, fmt), on_close=job.cancel.set, headers=headers)


async def input_tokens(request: Request) -> Response:
    """``POST /v1/responses/input_tokens``: the token count of the prompt the same body generates from."""
    server = server_of(request)
    check_ready(request)
    body = await read_json(request, server.config.max_body_bytes)
    model = (await use_model(request, body)).model
    data = to_chat(body)
    chat = await chat_prompt(server, model, data, data["messages"])
    tokens = await asyncio.to_thread(model.tokenize, chat.text)
    return JSONResponse({"object": "response.input_tokens", "input_tokens": len(tokens)})
