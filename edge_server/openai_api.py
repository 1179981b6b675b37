"""OpenAI's endpoints: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``.

Bodies take OpenAI's fields (``max_tokens``, ``stop``, ``seed``, ``temperature``, ``top_p``, penalties,
``logprobs``/``top_logprobs``, ``stream``, ``stream_options.include_usage``, ``response_format``; ``n`` must be 1)
plus llama.cpp's extra sampling fields (``top_k``, ``min_p``, ...), which go through ``SamplingParams.from_dict``,
and its ``grammar`` / ``json_schema`` (``structured.grammar_from``).  The chat endpoint does tool calling
(``tools``, ``tool_choice``, ``parallel_tool_calls``: ``edge_server.tools``): calls come back as
``message.tool_calls`` (streamed as ``delta.tool_calls`` chunks) with ``finish_reason: "tool_calls"``.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emberllm.chat.reasoning import ReasoningSplitter
from emberllm.chat.tool_calls import parse_tool_calls, streamable_content
from emberllm.edge_server.chat_prompt import PromptPlan, plan_prompt
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.events import Event
from emberllm.edge_server.generation import (
    Outcome,
    StreamFormat,
    collect,
    fit_chat,
    openai_finish_reason,
    prepare_prompt,
    sampling_from,
    start,
    stream_sse,
    timings_dict,
    token_piece,
)
from emberllm.edge_server.native import verbose_result
from emberllm.edge_server.requests import (
    get_bool,
    get_int,
    get_messages,
    get_prompt,
    get_stop,
    read_json,
    refuse_unsupported,
)
from emberllm.edge_server.sse import SSEResponse
from emberllm.edge_server.state import ServerState, check_ready, server_of, use_model
from emberllm.edge_server.structured import grammar_from, with_grammar
from emberllm.edge_server.tools import ToolRequest
from emberllm.edge_server.worker import GenRequest, GenResult
from emberllm.grammar.json_schema import UnsupportedSchemaError
from emberllm.runtime.model import Model, Step


async def models(request: Request) -> Response:
    """``GET /v1/models``: the model (503 while it loads), or with several models every one with its ``status``
    (``{"value": "loaded" | "loading" | "unloaded"}``, as llama-server's router mode)."""
    server = server_of(request)
    registry = server.registry
    check_ready(request)
    data = []
    for name, path in registry.names().items():
        entry = registry.entries.get(name)
        model = entry.worker.model if entry is not None and entry.worker is not None else None
        item: dict[str, Any] = {"id": name, "object": "model", "created": server.started, "owned_by": "emberllm",
                                "status": {"value": registry.status(name)}}
        if model is not None:
            item["meta"] = {"n_vocab": model.hp.n_vocab, "n_ctx_train": model.hp.n_ctx_train, "n_ctx": model.n_ctx}
        if registry.multi:
            item["path"] = str(path)
        else:  # llama-server's: every --alias name, and --tags
            item.update(aliases=server.config.aliases or [name], tags=server.config.tags)
        data.append(item)
    return JSONResponse({"object": "list", "data": data})


def _logprob(p: float) -> float:
    return math.log(p) if p > 0 else -9999.0


def _lp_entry(model: Model, tok: int, p: float) -> dict[str, Any]:
    text, raw = token_piece(model, tok)
    return {"token": text, "logprob": _logprob(p), "bytes": raw}


def _chat_logprobs(model: Model, steps: list[Step], n_top: int) -> dict[str, Any]:
    content = []
    for s in steps:
        if s.token < 0 or not s.extra:
            continue
        entry = _lp_entry(model, s.token, s.extra.get("prob") or 0.0)
        entry["top_logprobs"] = [_lp_entry(model, t, p) for t, p in (s.extra.get("probs") or [])[:n_top]]
        content.append(entry)
    return {"content": content}


def _text_logprobs(model: Model, steps: list[Step], n_top: int, offset: int = 0) -> dict[str, Any]:
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for s in steps:
        if s.token < 0 or not s.extra:
            continue
        text, _ = token_piece(model, s.token)
        out["tokens"].append(text)
        out["token_logprobs"].append(_logprob(s.extra.get("prob") or 0.0))
        out["top_logprobs"].append({token_piece(model, t)[0]: _logprob(p)
                                    for t, p in (s.extra.get("probs") or [])[:n_top]})
        out["text_offset"].append(offset)
        offset += len(s.text)
    return out


def _usage(n_prompt: int, n_predicted: int) -> dict[str, int]:
    return {"prompt_tokens": n_prompt, "completion_tokens": n_predicted, "total_tokens": n_prompt + n_predicted}


#: The most choices (``n``) one chat completion may ask for.
MAX_CHOICES = 16


def _gen_request(server: ServerState, model: Model, data: dict[str, Any], prompt: str | list[int],
                 n_top: int | None, extra_stop: list[str], chat: bool = False, grammar: str = "") -> GenRequest:
    """Shared OpenAI field handling; ``n_top`` is the number of top log-probabilities asked for (None: off);
    ``grammar``: a tool call's grammar, used instead of the body's (which must then ask for none)."""
    refuse_unsupported(data, chat=chat)
    if get_int(data, "n", 1, 1, MAX_CHOICES) > 1 and not chat:
        raise ApiError(400, "n: several choices are answered by /v1/chat/completions only; send n: 1")
    n_predict = -1
    for key in ("max_completion_tokens", "max_tokens", "n_predict"):
        if data.get(key) is not None:
            n_predict = get_int(data, key, -1, -1, 2**31 - 1)
            break
    fields = with_grammar(data)
    if grammar:
        fields["grammar"] = grammar
    if n_top is not None:
        fields["n_probs"] = max(n_top, 1)
    fields.pop("logprobs", None)
    params = sampling_from(fields, model, server.config.sampling)
    return GenRequest(prompt=prompt, params=params, n_predict=n_predict, stop=get_stop(data) + extra_stop,
                      cache_prompt=get_bool(data, "cache_prompt", True), timeout_s=server.config.timeout_s,
                      n_keep=get_int(data, "n_keep", 0, -1, 2**31 - 1),
                      n_discard=get_int(data, "n_discard", 0, 0, 2**31 - 1))


@dataclass
class _OpenAIStream(StreamFormat):
    """What OpenAI's two streams share: the chunk envelope, the finish chunk, the optional usage chunk (with
    llama-server's ``timings``) and ``[DONE]``."""

    model: Model
    cid: str
    created: int
    name: str
    n_prompt: int
    n_top: int | None
    include_usage: bool

    object: str = ""
    #: the choice this stream is (``n`` > 1: one stream per choice, merged by ``choices_sse``)
    index: int = 0
    #: whether its tail ends the response (usage, ``[DONE]``); false for the choices ``choices_sse`` merges
    final: bool = True
    #: what the tail saw: the tokens generated and the generation's result
    n_predicted: int = field(default=0, init=False)
    result: GenResult | None = field(default=None, init=False)

    def envelope(self, choice: dict[str, Any]) -> dict[str, Any]:
        """One chunk holding ``choice`` (as this stream's choice ``index``)."""
        return {"id": self.cid, "object": self.object, "created": self.created, "model": self.name,
                "system_fingerprint": "emberllm", "choices": [{**choice, "index": self.index}]}

    def usage_chunk(self, n_predicted: int, result: GenResult | None) -> dict[str, Any]:
        """The chunk with ``usage`` (and llama-server's ``timings``) that ``stream_options.include_usage`` asks."""
        return {"id": self.cid, "object": self.object, "created": self.created, "model": self.name,
                "choices": [], "usage": _usage(self.n_prompt, n_predicted),
                "timings": timings_dict(result, n_predicted)}

    def finish_choice(self, finish: str) -> dict[str, Any]:
        """The choice of the chunk that carries the finish reason."""
        raise NotImplementedError

    def tail(self, last: Step, result: GenResult | None, n_predicted: int) -> list[Any]:
        """The finish chunk, the usage chunk when asked for, ``[DONE]``."""
        self.n_predicted, self.result = n_predicted, result
        out: list[Any] = [self.envelope(self.finish_choice(openai_finish_reason(last)))]
        if not self.final:
            return out
        if self.include_usage:
            out.append(self.usage_chunk(n_predicted, result))
        out.append("[DONE]")
        return out


async def choices_sse(streams: list[tuple[AsyncIterator[Event], _OpenAIStream]]) -> AsyncIterator[str]:
    """Several choices' streams (``n`` > 1) as one: their chunks as they come, then one usage chunk over all (when
    asked for) and ``[DONE]``."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def pump(events: AsyncIterator[Event], fmt: _OpenAIStream) -> None:
        try:
            async for text in stream_sse(events, fmt):
                await queue.put(text)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(events, fmt)) for events, fmt in streams]
    try:
        left = len(tasks)
        while left:
            item = await queue.get()
            if item is None:
                left -= 1
            else:
                yield item
        first = streams[0][1]
        if first.include_usage:
            yield first.render(first.usage_chunk(sum(f.n_predicted for _, f in streams), first.result))
        yield first.render("[DONE]")
    finally:
        for task in tasks:
            task.cancel()


@dataclass
class ChatStream(_OpenAIStream):
    """``/v1/chat/completions``' chunks: the role, one content delta per step with text."""

    object: str = "chat.completion.chunk"
    #: splits the reply's reasoning into ``delta.reasoning_content`` (None: all text is content)
    splitter: ReasoningSplitter | None = None

    def head(self) -> list[Any]:
        """The assistant role, before any content."""
        return [self.envelope({"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None,
                               "logprobs": None})]

    def parts(self, text: str) -> tuple[str, str]:
        """The reasoning and the content of a piece of the reply."""
        return self.splitter.feed(text) if self.splitter is not None else ("", text)

    def step(self, step: Step, n_predicted: int) -> dict[str, Any] | None:
        """A content (or reasoning) delta (with its log-probabilities when asked for)."""
        if not step.text:
            return None
        reasoning, content = self.parts(step.text)
        delta = _delta(reasoning, content)
        if not delta:
            return None
        lp = _chat_logprobs(self.model, [step], self.n_top) if self.n_top is not None else None
        return self.envelope({"index": 0, "delta": delta, "finish_reason": None, "logprobs": lp})

    def tail(self, last: Step, result: GenResult | None, n_predicted: int) -> list[Any]:
        """What the splitter still holds, then the finish chunk, usage and ``[DONE]``."""
        held = _delta(*self.splitter.flush()) if self.splitter is not None else {}
        head = [self.envelope({"index": 0, "delta": held, "finish_reason": None, "logprobs": None})] if held else []
        return head + super().tail(last, result, n_predicted)

    def finish_choice(self, finish: str) -> dict[str, Any]:
        """An empty delta with the finish reason."""
        return {"index": 0, "delta": {}, "finish_reason": finish, "logprobs": None}


def _delta(reasoning: str, content: str) -> dict[str, str]:
    """A chat delta with llama-server's ``reasoning_content`` and/or ``content``."""
    delta = {"reasoning_content": reasoning} if reasoning else {}
    return {**delta, "content": content} if content else delta


@dataclass
class ToolChatStream(ChatStream):
    """``/v1/chat/completions``' chunks when tools are offered.  What surely is content streams as it comes (text
    before any call marker of a native format, the decoded ``response`` string of the generic format:
    ``streamable_content``); the rest is held until the reply ends, then parsed: the remaining content as one
    delta, each call as a ``delta.tool_calls`` chunk with its index, id, type, name and empty arguments, then
    argument fragments, then the finish chunk (``tool_calls`` when there are calls)."""

    fmt: str = "generic"
    fragment: int = 16  # characters of arguments per chunk
    pieces: list[str] = field(default_factory=list, init=False)  # the reply's content so far
    sent: str = field(default="", init=False)  # the content already sent

    def step(self, step: Step, n_predicted: int) -> dict[str, Any] | None:
        """A reasoning delta, and a content delta of the text now known to be content, if any."""
        if not step.text:
            return None
        reasoning, text = self.parts(step.text)
        self.pieces.append(text)
        known = streamable_content("".join(self.pieces), self.fmt)
        piece = ""
        if len(known) > len(self.sent) and known.startswith(self.sent):
            piece, self.sent = known[len(self.sent):], known
        delta = _delta(reasoning, piece)
        return self.envelope({"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}) if delta else None

    def tail(self, last: Step, result: GenResult | None, n_predicted: int) -> list[Any]:
        """Reasoning still held, content, calls, then the finish chunk, usage and ``[DONE]``."""
        reasoning, text = self.splitter.flush() if self.splitter is not None else ("", "")
        self.pieces.append(text)
        self.splitter = None  # flushed: the base tail has nothing left to send
        content, calls = parse_tool_calls("".join(self.pieces), self.fmt)
        content = content[len(self.sent):] if content.startswith(self.sent) else ""
        out: list[Any] = []
        if reasoning or content:
            out.append(self.envelope({"index": 0, "delta": _delta(reasoning, content), "finish_reason": None,
                                      "logprobs": None}))
        for i, call in enumerate(calls):
            entry = call.to_openai()
            entry["function"]["arguments"] = ""
            out.append(self.envelope({"index": 0, "delta": {"tool_calls": [{"index": i, **entry}]},
                                      "finish_reason": None, "logprobs": None}))
            for at in range(0, len(call.arguments), self.fragment):
                piece = call.arguments[at:at + self.fragment]
                out.append(self.envelope({"index": 0, "delta": {"tool_calls": [
                    {"index": i, "function": {"arguments": piece}}]}, "finish_reason": None, "logprobs": None}))
        rest = super().tail(last, result, n_predicted)
        if calls:
            rest[0]["choices"][0]["finish_reason"] = "tool_calls"
        return out + rest


@dataclass
class TextStream(_OpenAIStream):
    """``/v1/completions``' chunks: one text piece per step with text."""

    object: str = "text_completion"
    offset: int = field(default=0, init=False)  # characters of text sent so far (logprobs' text_offset)

    def step(self, step: Step, n_predicted: int) -> dict[str, Any] | None:
        """A text piece (with its log-probabilities when asked for)."""
        if not step.text:
            return None
        lps = _text_logprobs(self.model, [step], self.n_top, self.offset) if self.n_top is not None else None
        self.offset += len(step.text)
        return self.envelope({"text": step.text, "index": 0, "finish_reason": None, "logprobs": lps})

    def finish_choice(self, finish: str) -> dict[str, Any]:
        """Empty text with the finish reason."""
        return {"text": "", "index": 0, "finish_reason": finish, "logprobs": None}


def _include_usage(data: dict[str, Any]) -> bool:
    opts = data.get("stream_options")
    if opts is None:
        return False
    if not isinstance(opts, dict):
        raise ApiError(400, "stream_options: expected an object")
    return get_bool(opts, "include_usage", False)


@dataclass
class ChatPrompt:
    """A chat body's rendered prompt and what reading its reply needs (how it was built: tools, call format,
    reasoning; the tool grammar)."""

    messages: list[dict[str, Any]]
    plan: PromptPlan
    grammar: str
    text: str

    @property
    def tools(self) -> ToolRequest:
        """The request's tools."""
        return self.plan.tools

    @property
    def fmt(self) -> str:
        """The template's tool-call format."""
        return self.plan.fmt_name


async def chat_prompt(server: ServerState, model: Model, data: dict[str, Any],
                      messages: list[dict[str, Any]]) -> ChatPrompt:
    """The prompt of a chat body whose ``messages`` are read: its tool, prefill and reasoning fields checked, the
    template rendered."""
    plan = plan_prompt(model, data, messages, server.config)
    grammar = _tool_grammar(plan.tools, plan.fmt_name, data)
    text = await asyncio.to_thread(plan.render, model, messages)
    return ChatPrompt(messages, plan, grammar, text)


async def chat_generation(server: ServerState, model: Model, data: dict[str, Any], chat: ChatPrompt,
                          n_top: int | None) -> tuple[GenRequest, int, dict[str, str]]:
    """A chat body's tokenized ``GenRequest`` (its oldest turns left out to fit with --context-shift), the prompt's
    token count and the response headers."""
    req = _gen_request(server, model, data, chat.text, n_top, [s for s in model.chat_template.stop_strings if s],
                       chat=True, grammar=chat.grammar)
    headers: dict[str, str] = {}
    if server.config.context_shift:
        req.prompt, dropped = await asyncio.to_thread(fit_chat, model, lambda kept: chat.plan.render(model, kept),
                                                      chat.messages, req.n_predict)
        if dropped:
            headers["X-Messages-Dropped"] = str(dropped)
    truncate = get_bool(data, "truncate", server.config.truncate_prompts)
    n_prompt = await asyncio.to_thread(prepare_prompt, model, req, truncate)
    return req, n_prompt, headers


def chat_reply(out: Outcome, chat: ChatPrompt) -> tuple[dict[str, Any], str]:
    """A finished chat generation's assistant message (its reasoning and tool calls parsed out) and OpenAI finish
    reason."""
    reasoning, text = chat.plan.split(out.text)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    finish = openai_finish_reason(out.last)
    if chat.tools.active:
        content, calls = parse_tool_calls(text, chat.fmt)
        message["content"] = content or (None if calls else "")
        if calls:
            message["tool_calls"] = [c.to_openai() for c in calls]
            finish = "tool_calls"
    return message, finish


def chat_stream(model: Model, chat: ChatPrompt, cid: str, created: int, name: str, n_prompt: int,
                n_top: int | None, include_usage: bool) -> ChatStream:
    """The chunks of a streamed chat reply (``ToolChatStream`` when tools are offered)."""
    if chat.tools.active:
        return ToolChatStream(model, cid, created, name, n_prompt, n_top, include_usage,
                              splitter=chat.plan.splitter(), fmt=chat.fmt)
    return ChatStream(model, cid, created, name, n_prompt, n_top, include_usage, splitter=chat.plan.splitter())


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``."""
    server = server_of(request)
    check_ready(request)
    data = await read_json(request, server.config.max_body_bytes)
    lease = await use_model(request, data)
    model = lease.model
    messages = get_messages(data)
    want_lp = get_bool(data, "logprobs", False)
    n_top = get_int(data, "top_logprobs", 0, 0, 20) if want_lp else None
    stream = get_bool(data, "stream", False)
    verbose = _verbose(data, stream, server.config.verbose)
    include_usage = _include_usage(data) if stream else False
    chat = await chat_prompt(server, model, data, messages)
    req, n_prompt, headers = await chat_generation(server, model, data, chat, n_top)
    name = lease.name
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    job, events = await start(lease.worker, req)
    # n > 1: the other choices are generations of the same request beside the first (in the free slots)
    others = [await start(lease.worker, replace(req)) for _ in range(get_int(data, "n", 1) - 1)]
    if not stream:
        try:
            outs: list[Outcome] = await asyncio.gather(collect(events, request, job),
                                                       *(collect(ev) for _, ev in others))
        finally:
            for other, _ in others:
                other.cancel.set()
        choices = []
        for i, out in enumerate(outs):
            message, finish = chat_reply(out, chat)
            choice: dict[str, Any] = {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
            if n_top is not None:
                choice["logprobs"] = _chat_logprobs(model, out.steps, n_top)
            choices.append(choice)
        out = outs[0]
        body = {"id": cid, "object": "chat.completion", "created": created, "model": name,
                "system_fingerprint": "emberllm", "choices": choices,
                "usage": _usage(n_prompt, sum(o.n_predicted for o in outs)),
                "timings": timings_dict(out.result, out.n_predicted)}
        if verbose:
            body["__verbose"] = verbose_result(model, name, req, out, n_prompt)
        return JSONResponse(body, headers=headers)

    if not others:
        fmt = chat_stream(model, chat, cid, created, name, n_prompt, n_top, include_usage)
        return SSEResponse(stream_sse(events, fmt), on_close=job.cancel.set, headers=headers)
    jobs = [job, *(other for other, _ in others)]
    streams: list[tuple[AsyncIterator[Event], _OpenAIStream]] = [
        (choice_events, replace(chat_stream(model, chat, cid, created, name, n_prompt, n_top, include_usage),
                                index=i, final=False))
        for i, choice_events in enumerate([events, *(ev for _, ev in others)])]

    def cancel_all() -> None:
        for j in jobs:
            j.cancel.set()

    return SSEResponse(choices_sse(streams), on_close=cancel_all, headers=headers)


def _verbose(data: dict[str, Any], stream: bool, default: bool) -> bool:
    """llama-server's ``verbose`` (or ``serve -v``): a non-streamed response carries ``__verbose``."""
    if stream and data.get("verbose") is True:
        raise ApiError(400, "verbose: only non-streamed responses carry __verbose here")
    return get_bool(data, "verbose", default) and not stream


def _tool_grammar(tools: ToolRequest, fmt_name: str, data: dict[str, Any]) -> str:
    """The grammar tool calling needs (empty: none); 400 when the body also asks for structured output."""
    if not tools.active:
        return ""
    if grammar_from(data):
        raise ApiError(400, "tools: tool calling cannot be combined with grammar, json_schema or response_format")
    try:
        return tools.grammar(fmt_name)
    except (UnsupportedSchemaError, ValueError, TypeError, RecursionError) as exc:
        raise ApiError(400, f"tools: {exc}") from exc


async def chat_input_tokens(request: Request) -> Response:
    """``POST /v1/chat/completions/input_tokens``: how many tokens the conversation's prompt takes (llama-server's;
    the body is a chat request, checked the same way, and nothing is generated)."""
    server = server_of(request)
    check_ready(request)
    data = await read_json(request, server.config.max_body_bytes)
    model = (await use_model(request, data)).model
    messages = get_messages(data)
    chat = await chat_prompt(server, model, data, messages)
    return JSONResponse({"input_tokens": len(await asyncio.to_thread(model.tokenize, chat.text))})


async def completions(request: Request) -> Response:
    """``POST /v1/completions``."""
    server = server_of(request)
    check_ready(request)
    data = await read_json(request, server.config.max_body_bytes)
    lease = await use_model(request, data)
    model = lease.model
    prompt = get_prompt(data, model.hp.n_vocab)
    lp = data.get("logprobs")
    n_top = None if lp is None or lp is False else get_int(data, "logprobs", 0, 0, 20)
    stream = get_bool(data, "stream", False)
    verbose = _verbose(data, stream, server_of(request).config.verbose)
    include_usage = _include_usage(data) if stream else False
    if get_bool(data, "echo", False):
        raise ApiError(400, "echo: not supported")
    req = _gen_request(server, model, data, prompt, n_top, [])
    truncate = get_bool(data, "truncate", server.config.truncate_prompts)
    n_prompt = await asyncio.to_thread(prepare_prompt, model, req, truncate)
    name = lease.name
    cid = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    job, events = await start(lease.worker, req)
    if not stream:
        out = await collect(events, request, job)
        choice: dict[str, Any] = {"text": out.text, "index": 0, "finish_reason": openai_finish_reason(out.last),
                                  "logprobs": _text_logprobs(model, out.steps, n_top) if n_top is not None else None}
        body = {"id": cid, "object": "text_completion", "created": created, "model": name,
                "system_fingerprint": "emberllm", "choices": [choice], "usage": _usage(n_prompt, out.n_predicted),
                "timings": timings_dict(out.result, out.n_predicted)}
        if verbose:
            body["__verbose"] = verbose_result(model, name, req, out, n_prompt)
        return JSONResponse(body)

    fmt = TextStream(model, cid, created, name, n_prompt, n_top, include_usage)
    return SSEResponse(stream_sse(events, fmt), on_close=job.cancel.set)
