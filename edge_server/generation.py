"""Shared by the native and OpenAI endpoints: request -> ``GenRequest``, events -> results (collected, or
streamed as SSE through a per-endpoint ``StreamFormat``), token probabilities."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from emberllm.chat.fit import fit_messages, reply_reserve
from emberllm.edge_server.errors import ApiError, context_exceeded
from emberllm.edge_server.events import DoneEvent, ErrorEvent, Event, GenResult, ProgressEvent, StepEvent
from emberllm.edge_server.scheduler import KVPoolExceededError
from emberllm.edge_server.sse import sse
from emberllm.edge_server.worker import EngineWorker, GenRequest, Job, QueueFullError
from emberllm.models.decoder import ContextFullError
from emberllm.runtime.decoding import Timings, truncate_prompt
from emberllm.runtime.model import Model, Step
from emberllm.sampling import SamplingParams


def sampling_from(data: dict[str, Any], model: Model, defaults: SamplingParams | None = None) -> SamplingParams:
    """llama-server's sampling fields of a body (``SamplingParams.from_dict``; ``defaults``: the server command
    line's, for the fields the body does not set), as 400s on bad values."""
    try:
        return SamplingParams.from_dict(data, n_vocab=model.hp.n_vocab, defaults=defaults,
                                        tokenize=lambda s: model.tokenize(s, add_special=False))
    except (ValueError, TypeError) as exc:
        raise ApiError(400, str(exc)) from exc


def prompt_tokens(model: Model, prompt: str | list[Any]) -> list[int]:
    """llama-server's mixed tokenization: text with BOS, or a sequence of token ids and text pieces (special tokens
    parsed; BOS only before a leading text piece)."""
    if isinstance(prompt, str):
        return model.tokenize(prompt)
    tokens: list[int] = []
    for i, piece in enumerate(prompt):
        tokens += model.tokenize(piece, add_special=i == 0) if isinstance(piece, str) else [piece]
    return tokens


def prepare_prompt(model: Model, req: GenRequest, truncate: bool) -> int:
    """Tokenize ``req.prompt`` into ``req.tokens`` (the only place a request's prompt is tokenized); a prompt
    that does not fit in a slot's context is a 400, or with ``truncate`` is cut the way llama-server does
    (``req.truncated``).  Returns the prompt's token count."""
    tokens = prompt_tokens(model, req.prompt)
    if not tokens:
        raise ApiError(400, "the prompt is empty")
    if len(tokens) >= model.n_ctx:
        if not truncate:
            raise context_exceeded(len(tokens), model.n_ctx)
        tokens = truncate_prompt(tokens, model.n_ctx, req.n_keep)
        req.truncated = True
    req.tokens = tokens
    return len(tokens)


def fit_chat(model: Model, render: Callable[[list[Any]], str], messages: list[Any], n_predict: int) -> tuple[str, int]:
    """The prompt of ``messages`` with their oldest turns left out until it leaves room for the reply in a slot's
    context (``chat.fit``; system messages and the latest user message stay), and how many messages went.  When
    even those do not fit, the whole conversation's prompt (``prepare_prompt`` then refuses it)."""
    def count(kept: list[Any]) -> int:
        return len(model.tokenize(render(kept)))

    for reserve in (reply_reserve(n_predict, model.n_ctx), 1):
        try:
            fit = fit_messages(count, messages, model.n_ctx, reserve)
        except ValueError:
            continue
        return render(list(fit.messages)), fit.dropped
    return render(messages), 0


def engine_error(exc: BaseException) -> ApiError:
    """An exception from the engine thread as an HTTP error."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValueError | ContextFullError):  # incl. a request's grammar that hits a dead end
        return ApiError(400, str(exc))
    if isinstance(exc, KVPoolExceededError):
        return ApiError(500, str(exc))
    return ApiError(500, f"generation failed: {type(exc).__name__}: {exc}")


@dataclass
class Outcome:
    """A finished (collected) generation."""

    steps: list[Step] = field(default_factory=list)
    result: GenResult | None = None

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.steps)

    @property
    def n_predicted(self) -> int:
        return sum(1 for s in self.steps if s.token >= 0)

    @property
    def last(self) -> Step:
        return self.steps[-1] if self.steps else Step(-1, "", "stop")


async def start(worker: EngineWorker, req: GenRequest) -> tuple[Job, AsyncIterator[Event]]:
    """Submit ``req`` and wait for its first event; engine errors raised before any token become ApiErrors.

    Returns the job and its event iterator with the first event put back in front.
    """
    try:
        job: Job = worker.submit(req)
    except QueueFullError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from exc
    events = job.events()
    try:
        first = await events.__anext__()
    except BaseException:
        job.cancel.set()
        await events.aclose()
        raise
    if isinstance(first, ErrorEvent):
        await events.aclose()
        raise engine_error(first.error)

    async def chained() -> AsyncIterator[Event]:
        try:
            yield first
            async for ev in events:
                yield ev
        finally:
            job.cancel.set()
            await events.aclose()

    return job, chained()


async def collect(events: AsyncIterator[Event], request: Request | None = None, job: Job | None = None) -> Outcome:
    """All events of a non-streamed generation; with ``request`` and ``job``, a client that disconnects cancels
    the job (as llama-server stops a slot whose client is gone), instead of generating for nobody."""
    out = Outcome()
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job)) if request and job else None
    try:
        async for event in events:
            match event:
                case StepEvent(step=step):
                    out.steps.append(step)
                case DoneEvent(result=result):
                    out.result = result
                case ErrorEvent(error=error):
                    raise engine_error(error)
    finally:
        if watcher is not None:
            watcher.cancel()
    return out


async def _cancel_on_disconnect(request: Request, job: Job) -> None:
    """Wait for the client's disconnect (the body is already read, so ``receive`` has nothing else to say)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    job.cancel.set()


class StreamFormat:
    """How one endpoint spells its SSE chunks; ``stream_sse`` drives it.  Override what the endpoint sends."""

    def head(self) -> list[Any]:
        """Chunks sent before the first step."""
        return []

    def step(self, step: Step, n_predicted: int) -> Any | None:
        """The chunk for one step (``n_predicted``: tokens generated so far, this one included), or None."""
        return None

    def progress(self, event: ProgressEvent) -> Any | None:
        """The chunk for the prompt's progress (``return_progress``), or None."""
        return None

    def tail(self, last: Step, result: GenResult | None, n_predicted: int) -> list[Any]:
        """Chunks sent once the generation has ended (``last``: its last step)."""
        return []

    def error(self, error: BaseException) -> Any:
        """The chunk that ends a stream whose generation failed."""
        return {"error": {"code": 500, "message": str(error), "type": "server_error"}}

    def render(self, chunk: Any) -> str:
        """One chunk as SSE text."""
        return sse(chunk)


async def stream_sse(events: AsyncIterator[Event], fmt: StreamFormat) -> AsyncIterator[str]:
    """The one streaming loop of ``/completion``, ``/v1/completions`` and ``/v1/chat/completions``: events in,
    ``fmt``'s chunks out as SSE lines; an engine error mid-stream ends the stream with an error chunk."""
    for chunk in fmt.head():
        yield fmt.render(chunk)
    n_predicted = 0
    last = Step(-1, "", "stop")
    result: GenResult | None = None
    async for event in events:
        match event:
            case StepEvent(step=step):
                last = step
                if step.token >= 0:
                    n_predicted += 1
                chunk = fmt.step(step, n_predicted)
                if chunk is not None:
                    yield fmt.render(chunk)
            case ProgressEvent():
                chunk = fmt.progress(event)
                if chunk is not None:
                    yield fmt.render(chunk)
            case DoneEvent(result=done):
                result = done
            case ErrorEvent(error=error):
                yield fmt.render(fmt.error(error))
                return
    for chunk in fmt.tail(last, result, n_predicted):
        yield fmt.render(chunk)


def token_piece(model: Model, token: int) -> tuple[str, list[int]]:
    """A token's text (special tokens spelled out) and its bytes."""
    raw = model.tokenizer.token_to_piece(token, special=True)
    return raw.decode("utf-8", "replace"), list(raw)


def native_probs(model: Model, step: Step, post_sampling: bool) -> dict[str, Any] | None:
    """One ``completion_probabilities`` entry (llama-server's current shape) or None without probabilities."""
    if not step.extra or step.token < 0:
        return None
    text, raw = token_piece(model, step.token)
    key_top, key_p = ("top_probs", "prob") if post_sampling else ("top_logprobs", "logprob")
    chosen = step.extra.get("prob_after" if post_sampling else "prob") or 0.0
    top = step.extra.get("probs_after" if post_sampling else "probs") or []

    def value(p: float) -> float:
        return p if post_sampling else (math.log(p) if p > 0 else -1e30)

    entries = []
    for tok, p in top:
        t_text, t_raw = token_piece(model, tok)
        entries.append({"id": tok, "token": t_text, "bytes": t_raw, key_p: value(p)})
    return {"id": step.token, "token": text, "bytes": raw, key_p: value(chosen), key_top: entries}


def timings_dict(result: GenResult | None, n_predicted: int) -> dict[str, float]:
    """llama-server's ``timings`` object of a finished generation."""
    return timings_of(result.timings, n_predicted) if result is not None else {}


def progress_fields(event: ProgressEvent) -> dict[str, Any]:
    """llama-server's ``prompt_progress`` and the ``timings`` so far, for a ``return_progress`` chunk."""
    done = event.processed - event.cache
    return {"prompt_progress": {"total": event.total, "cache": event.cache, "processed": event.processed,
                                "time_ms": int(event.prompt_ms)},
            "timings": timings_of(Timings(prompt_ms=event.prompt_ms, prompt_tokens=done,
                                          cached_tokens=event.cache), 0)}


def timings_of(tm: Timings, n_predicted: int) -> dict[str, float]:
    """llama-server's ``timings`` object for ``tm`` (of a generation done or under way)."""
    predicted_ms = tm.eval_ms + tm.sample_ms
    steps = max(n_predicted - 1, 0)  # as llama-server: the first token is free (the prompt's last logits)
    return {
        "cache_n": tm.cached_tokens,
        "prompt_n": tm.prompt_tokens,
        "prompt_ms": tm.prompt_ms,
        "prompt_per_token_ms": tm.prompt_ms / tm.prompt_tokens if tm.prompt_tokens else 0.0,
        "prompt_per_second": tm.per_second(tm.prompt_ms, tm.prompt_tokens),
        "predicted_n": n_predicted,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / steps if steps else 0.0,
        "predicted_per_second": 1e3 / predicted_ms * steps if steps and predicted_ms > 0 else 0.0,
    }


def openai_finish_reason(step: Step) -> str:
    """``stop`` or ``length`` (context full counts as length)."""
    return "length" if step.finish_reason in ("length", "context") else "stop"
