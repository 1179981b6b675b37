"""Embeddings endpoints: OpenAI's ``POST /v1/embeddings`` and llama-server's ``POST /embedding`` (``/embeddings``).

As llama-server: they answer 501 unless the server runs with ``--embedding``; the pooling is the server's
(``--pooling``, else the model's GGUF ``pooling_type``, else ``none``); pooled vectors are normalised with
``--embd-normalize`` (default 2, L2; a request may send ``embd_normalize``); ``/v1/embeddings`` refuses pooling
``none`` (400) while ``/embedding`` then returns one unnormalised vector per token.  Inputs are a string, an array
of token ids (used as given, no BOS added), or an array of those; ``/v1/embeddings`` given ``content`` instead of
``input`` answers in ``/embedding``'s shape, as llama-server does.  A field this server does not honour is a 400
naming it.  The forward passes run on the engine thread (``Scheduler.submit_work``), one micro-batch per loop turn
between the generations' steps.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import struct
import threading
import time
from collections.abc import Generator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.generation import engine_error
from emberllm.edge_server.models import Lease
from emberllm.edge_server.requests import get_int, read_json
from emberllm.edge_server.scheduler import QueueFullError
from emberllm.edge_server.state import ServerState, check_ready, server_of, use_model
from emberllm.edge_server.worker import EngineWorker
from emberllm.runtime.embedding import POOLING_TYPES
from emberllm.runtime.model import Model

#: The fields each endpoint honours (``user`` is accepted and not used, as OpenAI's is for abuse tracking).
#: ``keep_alive`` is Ollama's, honoured by every endpoint (``state.use_model``).
OPENAI_FIELDS = frozenset({"input", "content", "model", "encoding_format", "dimensions", "user", "embd_normalize",
                           "keep_alive"})
NATIVE_FIELDS = frozenset({"content", "input", "model", "encoding_format", "embd_normalize", "keep_alive"})


def add_embedding_flags(p: argparse.ArgumentParser) -> None:
    """llama-server's ``--embedding``, ``--pooling`` and ``--embd-normalize``."""
    g = p.add_argument_group("embeddings (llama-server's flags)")
    g.add_argument("--embedding", "--embeddings", dest="embedding", action="store_true",
                   help="serve /v1/embeddings and /embedding (generation keeps working, as in llama-server)")
    g.add_argument("--pooling", choices=[*POOLING_TYPES, "rank"], default=None,
                   help="pooling for embeddings (default: the model's, else none: one vector per token, which "
                        "/v1/embeddings refuses); 'rank' is --rerank")
    g.add_argument("--rerank", "--reranking", dest="rerank", action="store_true",
                   help="serve /rerank (llama-server's): documents scored by llama.cpp's rank pooling; a model "
                        "without a classification head (all emberllm loads) scores by the last token's first "
                        "hidden component, as llama-server does with the same file")
    g.add_argument("--embd-normalize", type=int, default=2, metavar="N",
                   help="normalisation of pooled embeddings (default: 2) (-1=none, 0=max absolute int16, "
                        "1=taxicab, 2=euclidean, >2=p-norm)")


def check_embedding_flags(args: argparse.Namespace) -> None:
    """``ValueError`` for a pooling emberllm does not compute."""
    if args.pooling == "rank":  # llama-server's --pooling rank is its --rerank
        args.rerank, args.pooling = True, None


def server_pooling(server: ServerState, model: Model) -> str:
    """The pooling requests get: ``--pooling``, else the model's; 501 for one emberllm does not compute."""
    pooling = server.config.pooling or model.pooling
    if pooling not in POOLING_TYPES:
        raise ApiError(501, f"the model's pooling type ({pooling}) is not supported: start the server with --pooling "
                            f"{'|'.join(POOLING_TYPES)}")
    return pooling


def _check_fields(data: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in data:
        if name not in allowed:
            raise ApiError(400, f"{name}: not supported by the embeddings endpoints (accepted: "
                                f"{', '.join(sorted(allowed))})")


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


def parse_inputs(model: Model, value: Any, name: str) -> list[list[int]]:
    """``input``/``content`` as token lists: a string, token ids, or an array of those (400 naming the field)."""
    if isinstance(value, str) or _is_ids(value):
        items = [value]
    elif isinstance(value, list):
        items = value
        if not items:
            raise ApiError(400, f"{name}: must not be empty")
    else:
        raise ApiError(400, f"{name}: expected a string, an array of token ids, or an array of those")
    out = []
    n_vocab = model.hp.n_vocab
    for i, item in enumerate(items):
        where = name if len(items) == 1 and item is value else f"{name}[{i}]"
        if isinstance(item, str):
            toks = model.tokenize(item)
        elif _is_ids(item):
            toks = list(item)
            bad = next((t for t in toks if not 0 <= t < n_vocab), None)
            if bad is not None:
                raise ApiError(400, f"{where}: token id {bad} is out of range (vocabulary of {n_vocab})")
        elif isinstance(item, list) and not item:
            toks = []
        else:
            raise ApiError(400, f"{where}: expected a string or an array of token ids")
        if not toks:
            raise ApiError(400, f"{where}: input content cannot be empty")
        if len(toks) > model.n_ctx:
            raise ApiError(400, f"{where}: input ({len(toks)} tokens) is larger than the max context size "
                                f"({model.n_ctx} tokens)")
        out.append(toks)
    return out


async def compute(server: ServerState, worker: EngineWorker, inputs: list[list[int]], pooling: str,
                  normalize: int) -> list[Any]:
    """The embeddings of ``inputs``, computed on ``worker``'s engine thread (503 when its queue is full)."""
    assert worker.model is not None and worker.scheduler is not None
    model = worker.model
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    cancel = threading.Event()
    deadline = time.monotonic() + server.config.timeout_s

    def settle(result: list[Any] | None, exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result or [])

    def report(result: list[Any] | None, exc: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:  # the loop is closed (shutdown)
            pass

    def work() -> Generator[None, None, None]:
        finished = False
        try:
            steps = model.embed_steps(inputs, pooling, normalize)
            while True:
                if cancel.is_set() or time.monotonic() > deadline:
                    report(None, ApiError(503, "the embedding request was cancelled or timed out"))
                    finished = True
                    return
                try:
                    next(steps)
                except StopIteration as stop:
                    report(stop.value, None)
                    finished = True
                    return
                yield
        except Exception as exc:  # noqa: BLE001 - handed to the request
            err = engine_error(exc)
            if err.status == 500:
                err = ApiError(500, f"embedding failed: {type(exc).__name__}: {exc}")
            report(None, err)
            finished = True
        finally:
            if not finished:
                report(None, ApiError(503, "the server is shutting down"))

    try:
        worker.scheduler.submit_work(work())
    except QueueFullError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from exc
    try:
        return await done
    finally:
        cancel.set()


async def _request(request: Request, allowed: frozenset[str]) -> tuple[ServerState, Lease, dict[str, Any]]:
    server = server_of(request)
    if not server.config.embeddings:
        raise ApiError(501, "This server does not support embeddings. Start it with `--embeddings`")
    check_ready(request)
    data = await read_json(request, server.config.max_body_bytes)
    _check_fields(data, allowed)
    return server, await use_model(request, data), data


def _normalize(server: ServerState, data: dict[str, Any]) -> int:
    return get_int(data, "embd_normalize", server.config.embd_normalize, -1, 2**31 - 1)


def _native_items(results: list[Any], pooling: str) -> list[dict[str, Any]]:
    """llama-server's non-OpenAI shape: per input, ``embedding`` holds one vector (pooled) or one per token."""
    return [{"index": i, "embedding": r if pooling == "none" else [r]} for i, r in enumerate(results)]


async def native_embedding(request: Request) -> Response:
    """``POST /embedding`` (and ``/embeddings``): llama-server's embeddings of ``content``."""
    server, lease, data = await _request(request, NATIVE_FIELDS)
    model = lease.model
    if "content" not in data and "input" not in data:
        raise ApiError(400, "content: required field is missing (\"input\" or \"content\" must be provided)")
    name = "input" if "input" in data else "content"
    _encoding(data)
    pooling = server_pooling(server, model)
    inputs = parse_inputs(model, data[name], name)
    normalize = -1 if pooling == "none" else _normalize(server, data)
    results = await compute(server, lease.worker, inputs, pooling, normalize)
    return JSONResponse(_native_items(results, pooling))


def _encoding(data: dict[str, Any]) -> bool:
    """Whether ``encoding_format`` asks for base64 (400 for anything but float or base64)."""
    value = data.get("encoding_format")
    if value is None or value == "float":
        return False
    if value == "base64":
        return True
    raise ApiError(400, "encoding_format: The format to return the embeddings in. Can be either float or base64")


def _b64(vec: list[float]) -> str:
    """A vector as base64 of little-endian float32 values (OpenAI's ``encoding_format: base64``)."""
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")


async def openai_embeddings(request: Request) -> Response:
    """``POST /v1/embeddings``: OpenAI's embeddings of ``input``."""
    server, lease, data = await _request(request, OPENAI_FIELDS)
    model = lease.model
    if "input" not in data and "content" not in data:
        raise ApiError(400, "input: required field is missing")
    use_b64 = _encoding(data)
    dims = data.get("dimensions")
    if dims is not None:
        n_embd = model.hp.n_embd
        if isinstance(dims, bool) or not isinstance(dims, int) or dims != n_embd:
            raise ApiError(400, f"dimensions: only the model's own size ({n_embd}) is supported, got {dims!r} (the "
                                "model was not trained to have its embeddings shortened)")
    if model_name := data.get("model"):
        if not isinstance(model_name, str):
            raise ApiError(400, "model: expected a string")
    if (user := data.get("user")) is not None and not isinstance(user, str):
        raise ApiError(400, "user: expected a string")
    pooling = server_pooling(server, model)
    if "input" not in data:  # llama-server: "content" is not OpenAI's, so is its answer
        inputs = parse_inputs(model, data["content"], "content")
        normalize = -1 if pooling == "none" else _normalize(server, data)
        return JSONResponse(_native_items(await compute(server, lease.worker, inputs, pooling, normalize), pooling))
    if pooling == "none":
        raise ApiError(400, "Pooling type 'none' is not OAI compatible. Please use a different pooling type "
                            "(start the server with --pooling mean|cls|last)")
    inputs = parse_inputs(model, data["input"], "input")
    results = await compute(server, lease.worker, inputs, pooling, _normalize(server, data))
    items: list[dict[str, Any]] = []
    for i, vec in enumerate(results):
        if use_b64:
            items.append({"embedding": _b64(vec), "index": i, "object": "embedding", "encoding_format": "base64"})
        else:
            items.append({"embedding": vec, "index": i, "object": "embedding"})
    n_tokens = sum(len(t) for t in inputs)
    return JSONResponse({"model": model_name or lease.name, "object": "list",
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}, "data": items})

