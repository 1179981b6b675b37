"""llama-server's native endpoints: /health, /completion, /tokenize, /detokenize, /apply-template, /props,
/slots, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from emberllm.edge_server.chat_prompt import plan_prompt
from emberllm.edge_server.errors import ApiError, error_response
from emberllm.edge_server.events import Event, ProgressEvent
from emberllm.edge_server.generation import (
    Outcome,
    StreamFormat,
    collect,
    native_probs,
    prepare_prompt,
    progress_fields,
    sampling_from,
    start,
    stream_sse,
    timings_dict,
    timings_of,
)
from emberllm.edge_server.requests import (
    Prompt,
    get_bool,
    get_int,
    get_messages,
    get_prompts,
    get_stop,
    get_token_ids,
    read_json,
    refuse_unsupported,
)
from emberllm.edge_server.sse import SSEResponse
from emberllm.edge_server.state import check_ready, requested_name, served, server_of, use_model
from emberllm.edge_server.structured import with_grammar
from emberllm.edge_server.worker import GenRequest, GenResult, Job
from emberllm.runtime.context_size import resolve_context
from emberllm.runtime.model import Model, Step
from emberllm.sampling import SamplingParams

STOP_TYPES = {"stop": "eos", "length": "limit", "context": "limit", "cancelled": "none"}


async def health(request: Request) -> Response:
    """200 ``{"status": "ok", "slots_idle", "slots_processing"}`` once the model is loaded (llama-server's older
    body, for routers), 503 while loading; with ``?fail_on_no_slot=1``, 503 when no slot is idle.  With several
    models 200 at once, with the names of those loaded (``models_loaded``, most recently used first) and the slots of
    those."""
    registry = server_of(request).registry
    if not registry.multi:
        try:
            check_ready(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message, headers=exc.headers)
    loaded = registry.loaded()
    slots = [s for e in loaded if e.worker is not None for s in e.worker.slots]
    busy = sum(1 for s in slots if s.busy)
    body: dict[str, Any] = {"status": "ok", "slots_idle": len(slots) - busy, "slots_processing": busy}
    if registry.multi:
        body["models_loaded"] = [e.name for e in loaded]
    if body["slots_idle"] == 0 and request.query_params.get("fail_on_no_slot", "") not in ("", "0", "false"):
        return JSONResponse({**body, "status": "no slot available"}, status_code=503)
    return JSONResponse(body)


def _stop_type(step: Step) -> str:
    if step.finish_reason == "stop" and step.stop_word is not None:
        return "word"
    return STOP_TYPES.get(step.finish_reason or "", "none")


def _final_fields(model: Model, name: str, params: SamplingParams, req: GenRequest, last: Step,
                  result: GenResult | None, n_predicted: int, n_prompt: int) -> dict[str, Any]:
    settings = params.to_dict()
    settings.update(n_predict=req.n_predict, stop=req.stop, n_keep=req.n_keep, model=name)
    if params.ignore_eos:  # llama-server lists the end-of-generation tokens it bans, as -inf (null) biases
        banned = {b["token"] for b in settings["logit_bias"]}
        settings["logit_bias"] += [{"bias": None, "token": t} for t in model.sampler_vocab().eog_ids if t not in banned]
    return {
        "id_slot": result.id_slot if result else -1,
        "stop": True,
        "model": name,
        "tokens_predicted": n_predicted,
        "tokens_evaluated": n_prompt,
        "generation_settings": settings,
        "prompt": req.prompt if isinstance(req.prompt, str) else model.detokenize(req.tokens or [], special=True),
        # llama-server's: the prompt was cut, the context was shifted, or generation stopped at the context's end
        "truncated": req.truncated or last.finish_reason == "context" or bool(result and result.shifted),
        "stop_type": _stop_type(last),
        "stopping_word": last.stop_word or "",
        "tokens_cached": result.timings.cached_tokens if result else 0,
        "timings": timings_dict(result, n_predicted),
    }


def verbose_result(model: Model, name: str, req: GenRequest, out: Outcome, n_prompt: int) -> dict[str, Any]:
    """llama-server's ``__verbose`` of an OpenAI response: the request's native ``/completion`` result, its
    ``prompt`` the detokenized prompt tokens (BOS included)."""
    body: dict[str, Any] = {"index": 0, "content": out.text}
    body.update(_final_fields(model, name, req.params, req, out.last, out.result, out.n_predicted, n_prompt))
    body["prompt"] = model.detokenize(req.tokens or [], special=True)
    return body


@dataclass
class CompletionStream(StreamFormat):
    """``/completion``'s (and ``/infill``'s) SSE chunks: one per token with text, then the final fields."""

    model: Model
    name: str
    params: SamplingParams
    req: GenRequest
    job: Job
    n_prompt: int
    has_new_line: bool = False
    #: llama-server's ``timings_per_token``: every chunk carries the timings so far
    per_token_timings: bool = False

    def progress(self, event: ProgressEvent) -> dict[str, Any]:
        """A ``return_progress`` chunk: no text, the prompt's progress and the timings so far."""
        return {"index": 0, "content": "", "tokens": [], "stop": False, "id_slot": self.job.slot_id,
                "tokens_predicted": 0, "tokens_evaluated": self.n_prompt, **progress_fields(event)}

    def step(self, step: Step, n_predicted: int) -> dict[str, Any] | None:
        """A token's chunk (the last step of a stop without text sends none)."""
        self.has_new_line = self.has_new_line or "\n" in step.text
        if not (step.text or (step.token >= 0 and step.finish_reason is None)):
            return None
        chunk: dict[str, Any] = {"index": 0, "content": step.text, "tokens": [step.token], "stop": False,
                                 "id_slot": self.job.slot_id, "tokens_predicted": n_predicted,
                                 "tokens_evaluated": self.n_prompt}
        if self.params.n_probs > 0 and (p := native_probs(self.model, step, self.params.post_sampling_probs)):
            chunk["completion_probabilities"] = [p]
        if self.per_token_timings and self.job.timings is not None:
            chunk["timings"] = timings_of(self.job.timings, n_predicted)
        return chunk

    def tail(self, last: Step, result: GenResult | None, n_predicted: int) -> list[dict[str, Any]]:
        """The final chunk: ``stop: true`` with the timings and the settings."""
        final: dict[str, Any] = {"index": 0, "content": "", "tokens": []}
        final.update(_final_fields(self.model, self.name, self.params, self.req, last, result, n_predicted,
                                   self.n_prompt))
        final["has_new_line"] = self.has_new_line or "\n" in last.text
        return [final]


async def completion(request: Request) -> Response:
    """``POST /completion``: llama-server's completion, whole or streamed as SSE."""
    check_ready(request)
    data = await read_json(request, server_of(request).config.max_body_bytes)
    model = (await use_model(request, data)).model
    prompts = get_prompts(data, model.hp.n_vocab, "prompt" if "prompt" in data else "content")
    if len(prompts) == 1:
        return await _complete(request, model, data, prompts[0])
    if get_bool(data, "stream", False):
        raise ApiError(400, "stream: a batch of prompts is answered whole here; send stream: false or one prompt")
    # llama-server's batch: one result per prompt, in order, generated side by side in the slots
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_completion_body(request, model, data, p, i)) for i, p in enumerate(prompts)]
    return JSONResponse([t.result() for t in tasks])


#: FIM token ids in GGUF metadata (current and older key names), and vocabulary spellings to fall back on.
FIM_KEYS = {
    "pre": ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"),
    "suf": ("tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"),
    "mid": ("tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"),
}
FIM_TEXTS = {
    "pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "▁<PRE>"),
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "▁<SUF>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "▁<MID>"),
}


def fim_tokens(model: Model) -> dict[str, int] | None:
    """The model's FIM prefix / suffix / middle token ids, or None when it has none."""
    out: dict[str, int] = {}
    for part, keys in FIM_KEYS.items():
        found = next((model.gguf.metadata[k] for k in keys if isinstance(model.gguf.metadata.get(k), int)), None)
        if found is None:
            found = next((t for text in FIM_TEXTS[part] if (t := model.tokenizer.vocab_lookup(text)) is not None),
                         None)
        if found is None:
            return None
        out[part] = int(found)
    return out


async def infill(request: Request) -> Response:
    """``POST /infill``: fill in the middle (``input_prefix``, ``input_suffix``, optional ``prompt``) for models
    with FIM tokens; 400 for the others.  ``input_extra`` (repository context) is not supported yet."""
    check_ready(request)
    data = await read_json(request, server_of(request).config.max_body_bytes)
    model = (await use_model(request, data)).model
    fim = fim_tokens(model)
    if fim is None:
        raise ApiError(400, "infill: this model has no fill-in-the-middle (FIM) tokens")
    prefix, suffix, extra = data.get("input_prefix", ""), data.get("input_suffix", ""), data.get("prompt", "")
    for name, value in (("input_prefix", prefix), ("input_suffix", suffix), ("prompt", extra)):
        if not isinstance(value, str):
            raise ApiError(400, f"{name}: expected a string")
    if data.get("input_extra"):
        raise ApiError(400, "input_extra: not supported yet")

    def encode(text: str) -> list[int]:
        return model.tokenize(text, add_special=False) if text else []

    bos = [model.tokenizer.bos_id] if model.tokenizer.add_bos and model.tokenizer.bos_id is not None else []
    tokens = bos + [fim["pre"]] + encode(prefix) + [fim["suf"]] + encode(suffix) + [fim["mid"]] + encode(extra)
    return await _complete(request, model, data, tokens)


async def _start_completion(request: Request, model: Model, data: dict[str, Any],
                            prompt: Prompt) -> tuple[GenRequest, int, Job, AsyncIterator[Event]]:
    """Check a ``/completion`` body, tokenize its prompt and start the generation."""
    server = server_of(request)
    refuse_unsupported(data)
    params = sampling_from(with_grammar(data), model, server.config.sampling)
    req = GenRequest(prompt=prompt, params=params, n_predict=get_int(data, "n_predict", -1, -1, 2**31 - 1),
                     stop=get_stop(data), n_keep=get_int(data, "n_keep", 0, -1, 2**31 - 1),
                     n_discard=get_int(data, "n_discard", 0, 0, 2**31 - 1),
                     cache_prompt=get_bool(data, "cache_prompt", True), timeout_s=server.config.timeout_s,
                     id_slot=get_int(data, "id_slot", -1, -1, server.config.n_parallel - 1),
                     return_progress=get_bool(data, "return_progress", False))
    truncate = get_bool(data, "truncate", server.config.truncate_prompts)
    n_prompt = await asyncio.to_thread(prepare_prompt, model, req, truncate)
    job, events = await start(served(request).worker, req)
    return req, n_prompt, job, events


async def _complete(request: Request, model: Model, data: dict[str, Any], prompt: Prompt) -> Response:
    """The generation behind ``/completion`` and ``/infill``, whole or streamed."""
    if not get_bool(data, "stream", False):
        return JSONResponse(await _completion_body(request, model, data, prompt))
    req, n_prompt, job, events = await _start_completion(request, model, data, prompt)
    fmt = CompletionStream(model, served(request).name, req.params, req, job, n_prompt,
                           per_token_timings=get_bool(data, "timings_per_token", False))
    return SSEResponse(stream_sse(events, fmt), on_close=job.cancel.set)


async def _completion_body(request: Request, model: Model, data: dict[str, Any], prompt: Prompt,
                           index: int = 0) -> dict[str, Any]:
    """A non-streamed ``/completion`` result (``index``: its place in a batch)."""
    req, n_prompt, job, events = await _start_completion(request, model, data, prompt)
    params = req.params
    out = await collect(events, request, job)
    tokens = [s.token for s in out.steps if s.token >= 0 and not model.tokenizer.is_eog(s.token)]
    body: dict[str, Any] = {"index": index, "content": out.text, "tokens": tokens}
    body.update(_final_fields(model, served(request).name, params, req, out.last, out.result,
                              out.n_predicted, n_prompt))
    body["has_new_line"] = "\n" in out.text  # llama-server's: the reply holds a line break
    if params.n_probs > 0:
        post = params.post_sampling_probs
        body["completion_probabilities"] = [p for s in out.steps if (p := native_probs(model, s, post))]
    return body


async def tokenize(request: Request) -> Response:
    """``POST /tokenize``: ``content`` -> ``tokens`` (ids, or ``{id, piece}`` with ``with_pieces``)."""
    check_ready(request)
    data = await read_json(request, server_of(request).config.max_body_bytes)
    model = (await use_model(request, data)).model
    content = data.get("content", "")
    if not isinstance(content, str):
        raise ApiError(400, f"content: expected a string, got {type(content).__name__}")
    add_special = get_bool(data, "add_special", False)
    parse_special = get_bool(data, "parse_special", True)
    with_pieces = get_bool(data, "with_pieces", False)
    ids = await asyncio.to_thread(model.tokenize, content, add_special, parse_special)
    if not with_pieces:
        return JSONResponse({"tokens": ids})
    pieces = []
    for tok in ids:
        raw = model.tokenizer.token_to_piece(tok, special=True)
        try:
            piece: Any = raw.decode("utf-8")
        except UnicodeDecodeError:
            piece = list(raw)
        pieces.append({"id": tok, "piece": piece})
    return JSONResponse({"tokens": pieces})


async def detokenize(request: Request) -> Response:
    """``POST /detokenize``: ``tokens`` -> ``content``."""
    check_ready(request)
    data = await read_json(request, server_of(request).config.max_body_bytes)
    model = (await use_model(request, data)).model
    ids = get_token_ids(data, "tokens", model.hp.n_vocab, required=False)
    return JSONResponse({"content": model.detokenize(ids)})


async def apply_template(request: Request) -> Response:
    """``POST /apply-template``: ``messages`` -> the chat template's ``prompt``."""
    check_ready(request)
    data = await read_json(request, server_of(request).config.max_body_bytes)
    model = (await use_model(request, data)).model
    messages = get_messages(data)
    prompt = plan_prompt(model, data, messages, server_of(request).config).render(model, messages)
    return JSONResponse({"prompt": prompt})


async def props(request: Request) -> Response:
    """``GET /props``: default generation settings, slots, model and template; with several models those of
    ``?model=NAME`` (default: the first model), without loading it, and ``models``: every name and its status."""
    server = server_of(request)
    registry = server.registry
    params = server.config.sampling.to_dict()
    params.update(n_predict=-1, stop=[])
    name = registry.resolve(requested_name(request, None))
    entry = registry.entries.get(name)
    worker = entry.worker if entry is not None else None
    model = worker.model if worker is not None else None
    if not registry.multi and model is None:
        check_ready(request)  # loading or failed (a sleeping model answers from its header)
    if model is not None:
        n_ctx, template = model.n_ctx, model.chat_template.template
    else:
        info = await asyncio.to_thread(registry.info, name)
        n_ctx = resolve_context(server.config.n_ctx, info.hp.n_ctx_train, server.config.n_parallel)
        template = ""
    body: dict[str, Any] = {
        "default_generation_settings": {"id": 0, "n_ctx": n_ctx, "params": params,
                                        "is_processing": worker is not None and worker.busy},
        "total_slots": server.config.n_parallel,
        "model_path": str(registry.names()[name]),
        "model_alias": name,
        "chat_template": template,
        "modalities": {"vision": False, "audio": False},
        "build_info": "emberllm",
        "is_sleeping": registry.sleeping,
    }
    if registry.multi:
        body["models"] = [{"id": n, "status": registry.status(n)} for n in registry.names()]
    return JSONResponse(body)


async def slots(request: Request) -> Response:
    """``GET /slots``: one entry per slot: its context, whether it is generating, how many tokens it caches (with
    several models: those of ``?model=NAME`` or the first model; none while it is not loaded)."""
    server = server_of(request)
    if not server.config.slots_endpoint:
        raise ApiError(501, "This server does not support slots endpoint. Start it with `--slots`")
    check_ready(request)
    entry = server.registry.entries.get(server.registry.resolve(requested_name(request, None)))
    worker = entry.worker if entry is not None else None
    return JSONResponse([{"id": s.id, "n_ctx": s.kv.n_ctx, "is_processing": s.busy, "n_past": s.kv.n_past,
                          "next_token": [_next_token(s)]} for s in (worker.slots if worker is not None else [])])


def _next_token(slot: Any) -> dict[str, Any]:
    """llama-server's ``next_token`` of a slot: tokens decoded and left to predict (-1: no limit)."""
    state = slot.state
    produced = state.produced if state else 0
    limit = state.n_predict if state else -1
    return {"has_next_token": bool(state and not state.finished), "n_remain": -1 if limit < 0 else limit - produced,
            "n_decoded": produced}


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text with llama-server's metric names (only with ``--metrics``); with several
    models the sum over all of them, those unloaded since included."""
    server = server_of(request)
    if not server.config.metrics:
        raise ApiError(501, "metrics are disabled: start the server with --metrics")
    st = server.registry.stats()
    prompt_rate, predicted_rate = server.scrape_rates(st)
    counters = [
        ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens", st.prompt_tokens),
        ("prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", st.prompt_cached),
        ("prompt_seconds_total", "Total time spent processing prompts", st.prompt_seconds),
        ("tokens_predicted_total", "Number of generation tokens processed", st.predicted_tokens),
        ("tokens_predicted_seconds_total", "Total time spent generating tokens", st.predicted_seconds),
        ("n_decode_total", "Total number of batched decode steps", st.decode_steps),
        ("n_tokens_max", "Largest observed sequence length (prompt + generation)", st.n_tokens_max),
        ("requests_total", "Number of finished generations", st.requests),
        ("spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated (none here)", 0),
        ("spec_decode_num_accepted_tokens_total", "Speculative: Total draft tokens accepted (none here)", 0),
        ("spec_decode_num_drafts_total", "Speculative: Total verification steps (none here)", 0),
    ]
    gauges = [
        ("prompt_tokens_seconds", "Average prompt throughput in tokens/s since the last scrape", prompt_rate),
        ("predicted_tokens_seconds", "Average generation throughput in tokens/s since the last scrape (decode "
                                     "steps: each request's first token is free)", predicted_rate),
        ("requests_processing", "Number of requests processing", st.processing),
        ("requests_deferred", "Number of requests deferred", max(st.deferred, 0)),
        ("n_busy_slots_per_decode", "Average number of busy slots per decode step",
         st.decode_rows / st.decode_steps if st.decode_steps else 0.0),
    ]
    rows = [(name, "counter", text, value) for name, text, value in counters]
    rows += [(name, "gauge", text, value) for name, text, value in gauges]
    lines = []
    for name, kind, help_text, value in rows:
        lines += [f"# HELP llamacpp:{name} {help_text}", f"# TYPE llamacpp:{name} {kind}", f"llamacpp:{name} {value}"]
    response = PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
    # llama-server's header, spelled as it spells it (clients that read headers as a plain dict match on case)
    response.raw_headers.append((b"Process-Start-Time-Unix", str(server.started).encode()))
    return response

