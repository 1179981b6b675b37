"""Ollama's generation endpoints: ``POST /api/chat`` and ``POST /api/generate``.

Streamed as NDJSON by default (``stream`` defaults to true, as Ollama's): one object per token with text, then a last
one with ``done: true``, ``done_reason`` (``stop`` or ``length``) and the durations in nanoseconds
(``total_duration``, ``load_duration``: waiting for the model to load, ``prompt_eval_count`` /
``prompt_eval_duration``: prompt tokens evaluated (those reused from a slot's cache are not), ``eval_count`` /
``eval_duration``).  ``options`` and ``format`` are ``ollama_options``'s business.

- ``/api/chat``: ``messages`` (``role``, ``content``, an assistant's ``tool_calls`` and a tool's ``tool_name``),
  ``tools`` (the chat template's tool calling, as ``/v1/chat/completions``; calls come back as
  ``message.tool_calls`` with the arguments as an object), ``logprobs`` / ``top_logprobs``.
- ``/api/generate``: ``prompt`` through the chat template as a user turn after ``system``, or as is with ``raw``;
  ``context`` (token ids a previous reply returned) continues that conversation, and the reply's ``context`` is
  returned (not for ``raw``).
- An empty ``prompt`` / ``messages`` loads the model (``done_reason: "load"``), or with ``keep_alive: 0`` unloads it
  (``"unload"``), as Ollama does.
- Refused with 400: ``images`` (text models only), ``suffix`` (no fill-in-the-middle here), ``template`` (a custom
  prompt template: use ``raw`` with a prompt already formatted), ``think`` other than false (no thinking models),
  ``system`` with ``raw``, and any field Ollama does not define.
- ``keep_alive`` (``model_catalog.parse_keep_alive``) applies with several models; a one-model server (``-m`` once)
  keeps its model loaded whatever a request says.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from emberllm.chat.tool_calls import detect_format, parse_tool_calls
from emberllm.edge_server.errors import ApiError, context_exceeded
from emberllm.edge_server.events import DoneEvent, ErrorEvent, Event, GenResult, StepEvent
from emberllm.edge_server.generation import collect, prepare_prompt, sampling_from, start, token_piece
from emberllm.edge_server.models import Lease
from emberllm.edge_server.ollama_options import format_grammar, parse_options
from emberllm.edge_server.requests import get_bool, get_int, read_json
from emberllm.edge_server.state import keep_alive_of, server_of, use_model
from emberllm.edge_server.tools import ToolRequest, check_history, tool_request
from emberllm.edge_server.worker import GenRequest
from emberllm.grammar.json_schema import UnsupportedSchemaError
from emberllm.runtime.model import Model, Step

CHAT_FIELDS = frozenset({"model", "messages", "tools", "format", "options", "stream", "keep_alive", "think",
                         "logprobs", "top_logprobs"})
GENERATE_FIELDS = frozenset({"model", "prompt", "suffix", "system", "template", "context", "stream", "raw", "format",
                             "images", "options", "keep_alive", "think", "logprobs", "top_logprobs"})
MESSAGE_FIELDS = frozenset({"role", "content", "images", "tool_calls", "tool_name", "thinking"})


def now_iso() -> str:
    """Ollama's ``created_at``: UTC with microseconds and ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_fields(data: dict[str, Any], allowed: frozenset[str], endpoint: str) -> None:
    """400 naming the first field Ollama's ``endpoint`` does not define."""
    for name in data:
        if name not in allowed:
            raise ApiError(400, f"{name}: not a field of {endpoint} (fields: {', '.join(sorted(allowed))})")


def model_field(data: dict[str, Any]) -> str:
    """``model``: required, a non-empty string (as Ollama: "model is required")."""
    name = data.get("model")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "model is required")
    return name


def _refuse(data: dict[str, Any]) -> None:
    """400 for what this server cannot do (see the module doc)."""
    if data.get("images"):
        raise ApiError(400, "images: this server runs text models only")
    think = data.get("think")
    if think is not None and think is not False:
        raise ApiError(400, f"think: the model does not support thinking (got {think!r})")
    if data.get("suffix"):
        raise ApiError(400, "suffix: fill-in-the-middle is not supported on /api/generate (use /infill)")
    if data.get("template"):
        raise ApiError(400, "template: a custom prompt template is not supported: send the formatted prompt with "
                            "\"raw\": true")


class NDJSONResponse(StreamingResponse):
    """An ``application/x-ndjson`` stream that calls ``on_close`` however it ends."""

    def __init__(self, body: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(body, media_type="application/x-ndjson")
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def ndjson(obj: dict[str, Any]) -> str:
    """One NDJSON line."""
    return json.dumps(obj, ensure_ascii=False) + "\n"


@dataclass
class Reply:
    """How one generation is rendered in Ollama's shape: a chat ``message`` or a generate ``response``."""

    model: Model
    name: str
    chat: bool
    tools: ToolRequest | None = None
    fmt: str = "generic"
    n_top: int | None = None
    context: list[int] | None = None  # /api/generate: the prompt's tokens, to return with the reply's
    parts: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    @property
    def holds_text(self) -> bool:
        """Tool calling: text is parsed once the reply ends, not streamed."""
        return self.tools is not None and self.tools.active

    def chunk(self, step: Step) -> dict[str, Any] | None:
        """The object for one step (None when there is nothing to send)."""
        if step.token >= 0:
            self.tokens.append(step.token)
        self.parts.append(step.text)
        if not step.text or self.holds_text:
            return None
        return self._body(step.text, False, [step])

    def _body(self, text: str, done: bool, steps: list[Step]) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.name, "created_at": now_iso()}
        if self.chat:
            out["message"] = {"role": "assistant", "content": text}
        else:
            out["response"] = text
        out["done"] = done
        if self.n_top is not None:
            out["logprobs"] = logprobs(self.model, steps, self.n_top)
        return out

    def final(self, last: Step, result: GenResult | None, n_predicted: int, stream: bool, t0: int,
              load_ns: int) -> list[dict[str, Any]]:
        """The closing object(s): held tool-call text first, then ``done: true`` with the figures."""
        out: list[dict[str, Any]] = []
        text = "" if stream else "".join(self.parts)
        calls: list[dict[str, Any]] = []
        if self.holds_text:
            content, parsed = parse_tool_calls("".join(self.parts), self.fmt)
            text = content if not stream else ""
            calls = [{"function": {"name": c.name, "arguments": _arguments(c.arguments)}} for c in parsed]
            if stream and (content or calls):
                first = self._body(content, False, [])
                if calls:
                    first["message"]["tool_calls"] = calls
                out.append(first)
        body = self._body(text, True, [] if stream else [])
        if not stream and self.n_top is not None:
            body["logprobs"] = []
        if calls and not stream:
            body["message"]["tool_calls"] = calls
        body["done_reason"] = "length" if last.finish_reason in ("length", "context") else "stop"
        tm = result.timings if result is not None else None
        body.update(total_duration=time.perf_counter_ns() - t0, load_duration=load_ns,
                    prompt_eval_count=tm.prompt_tokens if tm else 0,
                    prompt_eval_duration=int(tm.prompt_ms * 1e6) if tm else 0,
                    eval_count=n_predicted, eval_duration=int((tm.eval_ms + tm.sample_ms) * 1e6) if tm else 0)
        if self.context is not None:
            body["context"] = self.context + self.tokens
        out.append(body)
        return out


def _arguments(text: str) -> Any:
    """A call's arguments as the object Ollama sends (the text itself if it is not JSON)."""
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return text


def logprobs(model: Model, steps: list[Step], n_top: int) -> list[dict[str, Any]]:
    """Ollama's ``logprobs`` entries of ``steps``."""
    def lp(p: float) -> float:
        return math.log(p) if p > 0 else -9999.0

    out = []
    for s in steps:
        if s.token < 0 or not s.extra:
            continue
        entry: dict[str, Any] = {"token": token_piece(model, s.token)[0], "logprob": lp(s.extra.get("prob") or 0.0)}
        entry["top_logprobs"] = [{"token": token_piece(model, t)[0], "logprob": lp(p)}
                                 for t, p in (s.extra.get("probs") or [])[:n_top]]
        out.append(entry)
    return out


async def _run(request: Request, lease: Lease, data: dict[str, Any], prompt: str | list[int], reply: Reply,
               extra_stop: list[str], grammar: str, t0: int) -> Response:
    """Generate ``prompt`` with the body's options and answer in ``reply``'s shape, whole or as NDJSON."""
    server = server_of(request)
    model = lease.model
    opts = parse_options(data.get("options"), server.config.sampling)
    fmt_grammar = format_grammar(data.get("format"))
    if grammar and fmt_grammar:
        raise ApiError(400, "format: cannot be combined with tools")
    fields: dict[str, Any] = {**opts.sampling, "grammar": grammar or fmt_grammar}
    if reply.n_top is not None:
        fields["n_probs"] = max(reply.n_top, 1)
    params = sampling_from(fields, model, server.config.sampling)
    if opts.num_ctx is not None and opts.num_ctx > model.n_ctx:
        raise ApiError(400, f"options.num_ctx: {opts.num_ctx} is larger than this server's context per slot "
                            f"({model.n_ctx} tokens); restart the server with a larger -c (or fewer -np slots)")
    req = GenRequest(prompt=prompt, params=params, n_predict=opts.n_predict, stop=opts.stop + extra_stop,
                     n_keep=opts.n_keep, timeout_s=server.config.timeout_s)
    n_prompt = await asyncio.to_thread(prepare_prompt, model, req, server.config.truncate_prompts)
    if opts.num_ctx is not None:
        if n_prompt >= opts.num_ctx:
            raise context_exceeded(n_prompt, opts.num_ctx)
        room = opts.num_ctx - n_prompt
        req.n_predict = room if req.n_predict < 0 else min(req.n_predict, room)
    if reply.context is not None:
        reply.context = list(req.tokens or [])
    stream = get_bool(data, "stream", True)
    job, events = await start(lease.worker, req)
    if not stream:
        out = await collect(events, request, job)
        for step in out.steps:
            reply.chunk(step)
        body = reply.final(out.last, out.result, out.n_predicted, False, t0, lease.load_ns)[-1]
        if reply.n_top is not None:
            body["logprobs"] = logprobs(model, out.steps, reply.n_top)
        return JSONResponse(body)
    return NDJSONResponse(_stream(events, reply, t0, lease.load_ns), on_close=job.cancel.set)


async def _stream(events: AsyncIterator[Event], reply: Reply, t0: int, load_ns: int) -> AsyncIterator[str]:
    last = Step(-1, "", "stop")
    result: GenResult | None = None
    n_predicted = 0
    async for event in events:
        match event:
            case StepEvent(step=step):
                last = step
                n_predicted += step.token >= 0
                chunk = reply.chunk(step)
                if chunk is not None:
                    yield ndjson(chunk)
            case DoneEvent(result=done):
                result = done
            case ErrorEvent(error=error):
                yield ndjson({"error": f"generation failed: {error}"})
                return
    for obj in reply.final(last, result, n_predicted, True, t0, load_ns):
        yield ndjson(obj)


async def _load_only(request: Request, data: dict[str, Any], name: str, chat: bool, t0: int) -> Response:
    """An empty prompt: load the model (or with ``keep_alive: 0`` unload it), as Ollama."""
    registry = server_of(request).registry
    keep = keep_alive_of(data)
    if keep == 0:
        await registry.unload_now(name)
        reason = "unload"
    else:
        await registry.preload(name, keep)
        reason = "load"
    body: dict[str, Any] = {"model": name, "created_at": now_iso()}
    if chat:
        body["message"] = {"role": "assistant", "content": ""}
    else:
        body["response"] = ""
    body.update(done=True, done_reason=reason)
    if not get_bool(data, "stream", True):
        return JSONResponse(body)
    return JSONResponse(body, media_type="application/x-ndjson")


def _n_top(data: dict[str, Any]) -> int | None:
    if not get_bool(data, "logprobs", False):
        if data.get("top_logprobs"):
            raise ApiError(400, "top_logprobs: needs \"logprobs\": true")
        return None
    return get_int(data, "top_logprobs", 0, 0, 20)


def chat_messages(raw: Any) -> list[dict[str, Any]]:
    """Ollama's ``messages`` as the chat template takes them (OpenAI's shape for tool calls and results)."""
    if not isinstance(raw, list):
        raise ApiError(400, "messages: expected an array of message objects")
    out = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            raise ApiError(400, f"messages[{i}]: expected an object")
        for key in msg:
            if key not in MESSAGE_FIELDS:
                raise ApiError(400, f"messages[{i}].{key}: not a field of a message "
                                    f"({', '.join(sorted(MESSAGE_FIELDS))})")
        role, content = msg.get("role"), msg.get("content")
        if not isinstance(role, str):
            raise ApiError(400, f"messages[{i}].role: expected a string")
        if content is not None and not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content: expected a string")
        if msg.get("images"):
            raise ApiError(400, f"messages[{i}].images: this server runs text models only")
        if msg.get("thinking"):
            raise ApiError(400, f"messages[{i}].thinking: the model does not support thinking")
        item: dict[str, Any] = {"role": role, "content": content or ""}
        if msg.get("tool_calls"):
            item["tool_calls"] = _history_calls(msg["tool_calls"], i)
        if msg.get("tool_name") is not None:
            if not isinstance(msg["tool_name"], str):
                raise ApiError(400, f"messages[{i}].tool_name: expected a string")
            item["name"] = msg["tool_name"]
        out.append(item)
    check_history(out)
    return out


def _history_calls(calls: Any, i: int) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise ApiError(400, f"messages[{i}].tool_calls: expected an array")
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ApiError(400, f"messages[{i}].tool_calls[{j}].function.name: expected a string")
        args = fn.get("arguments", {})
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        out.append({"id": f"call_{i}_{j}", "type": "function", "function": {"name": fn["name"], "arguments": text}})
    return out


async def chat(request: Request) -> Response:
    """``POST /api/chat``."""
    t0 = time.perf_counter_ns()
    data = await read_json(request, server_of(request).config.max_body_bytes)
    check_fields(data, CHAT_FIELDS, "/api/chat")
    name = model_field(data)
    _refuse(data)
    messages = chat_messages(data.get("messages") or [])
    n_top = _n_top(data)
    if not messages:
        return await _load_only(request, data, name, True, t0)
    lease = await use_model(request, data)
    model = lease.model
    tools = tool_request({"tools": data.get("tools")})
    fmt = detect_format(model.chat_template.template)
    grammar = ""
    if tools.active:
        try:
            grammar = tools.grammar(fmt)
        except (UnsupportedSchemaError, ValueError, TypeError, RecursionError) as exc:
            raise ApiError(400, f"tools: {exc}") from exc
    try:
        prompt = await asyncio.to_thread(model.chat_template.render_prompt, tools.messages(messages, fmt),
                                         tools=tools.offered if tools.active else None)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, f"messages: {exc}") from exc
    reply = Reply(model, name, chat=True, tools=tools, fmt=fmt, n_top=n_top)
    return await _run(request, lease, data, prompt, reply, [s for s in model.chat_template.stop_strings if s],
                      grammar, t0)


async def generate(request: Request) -> Response:
    """``POST /api/generate``."""
    t0 = time.perf_counter_ns()
    data = await read_json(request, server_of(request).config.max_body_bytes)
    check_fields(data, GENERATE_FIELDS, "/api/generate")
    name = model_field(data)
    _refuse(data)
    prompt, system = data.get("prompt") or "", data.get("system") or ""
    for key, value in (("prompt", prompt), ("system", system)):
        if not isinstance(value, str):
            raise ApiError(400, f"{key}: expected a string")
    raw = get_bool(data, "raw", False)
    if raw and system:
        raise ApiError(400, "system: not used with \"raw\": true (put it in the prompt)")
    context = _context(data.get("context"))
    n_top = _n_top(data)
    if not prompt:
        return await _load_only(request, data, name, False, t0)
    lease = await use_model(request, data)
    model = lease.model
    stops: list[str] = []
    if not raw:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        try:
            text = await asyncio.to_thread(model.chat_template.render_prompt, messages)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"prompt: {exc}") from exc
        stops = [s for s in model.chat_template.stop_strings if s]
    else:
        text = prompt
    tokens: str | list[int] = text
    if context:
        bad = next((t for t in context if not 0 <= t < model.hp.n_vocab), None)
        if bad is not None:
            raise ApiError(400, f"context: token id {bad} is out of range (vocabulary of {model.hp.n_vocab})")
        tokens = context + await asyncio.to_thread(model.tokenize, text, False)
    reply = Reply(model, name, chat=False, n_top=n_top, context=None if raw else [])
    return await _run(request, lease, data, tokens, reply, stops, "", t0)


def _context(value: Any) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise ApiError(400, "context: expected an array of token ids")
    return value
