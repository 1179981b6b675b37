"""Ollama's embedding endpoints: ``POST /api/embed`` and the older ``POST /api/embeddings``, computed by the same
engine work as ``/v1/embeddings`` (``embeddings.compute``; 501 unless the server runs with ``--embedding``).

- ``/api/embed``: ``input`` (a string or an array of strings) -> ``embeddings``, pooled with the server's pooling and
  L2-normalised (``--embd-normalize``); ``truncate`` (default true, as Ollama) cuts an input longer than the context
  per slot to its first tokens, false makes it a 400; ``dimensions`` other than the model's size is a 400.
- ``/api/embeddings``: ``prompt`` -> one ``embedding``, not normalised (as Ollama's legacy endpoint).
- ``options``: only ``ollama_options.ACCEPTED_NO_EFFECT``; ``keep_alive`` as the generation endpoints.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emberllm.edge_server.embeddings import compute, server_pooling
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.models import Lease
from emberllm.edge_server.ollama_api import check_fields, model_field
from emberllm.edge_server.ollama_options import embedding_options
from emberllm.edge_server.requests import get_bool, read_json
from emberllm.edge_server.state import ServerState, server_of, use_model

EMBED_FIELDS = frozenset({"model", "input", "truncate", "options", "keep_alive", "dimensions"})
EMBEDDINGS_FIELDS = frozenset({"model", "prompt", "options", "keep_alive"})


async def _start(request: Request, allowed: frozenset[str], endpoint: str) -> tuple[ServerState, dict[str, Any]]:
    server = server_of(request)
    data = await read_json(request, server.config.max_body_bytes)
    check_fields(data, allowed, endpoint)
    model_field(data)
    if not server.config.embeddings:
        raise ApiError(501, "This server does not support embeddings. Start it with `--embeddings`")
    embedding_options(data.get("options"))
    return server, data


def _pooling(server: ServerState, lease: Lease) -> str:
    pooling = server_pooling(server, lease.model)
    if pooling == "none":
        raise ApiError(400, "the server's pooling is 'none' (one vector per token): start it with --pooling "
                            "mean|cls|last for /api/embed")
    return pooling


async def embed(request: Request) -> Response:
    """``POST /api/embed``."""
    t0 = time.perf_counter_ns()
    server, data = await _start(request, EMBED_FIELDS, "/api/embed")
    raw = data.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, "input: expected a string or a non-empty array of strings")
    truncate = get_bool(data, "truncate", True)
    lease = await use_model(request, data)
    model = lease.model
    dims = data.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or dims != model.hp.n_embd):
        raise ApiError(400, f"dimensions: only the model's own size ({model.hp.n_embd}) is supported, got {dims!r}")
    pooling = _pooling(server, lease)
    inputs = []
    for i, text in enumerate(texts):
        toks = await asyncio.to_thread(model.tokenize, text)
        if not toks:
            raise ApiError(400, f"input[{i}]: input content cannot be empty")
        if len(toks) > model.n_ctx:
            if not truncate:
                raise ApiError(400, f"input[{i}]: input length ({len(toks)} tokens) exceeds the context length "
                                    f"({model.n_ctx}); send \"truncate\": true to cut it")
            toks = toks[: model.n_ctx]
        inputs.append(toks)
    t_eval = time.perf_counter_ns()
    vectors = await compute(server, lease.worker, inputs, pooling, server.config.embd_normalize)
    return JSONResponse({"model": data["model"], "embeddings": vectors,
                         "total_duration": time.perf_counter_ns() - t0, "load_duration": lease.load_ns,
                         "prompt_eval_count": sum(len(t) for t in inputs),
                         "prompt_eval_duration": time.perf_counter_ns() - t_eval})


async def embeddings(request: Request) -> Response:
    """``POST /api/embeddings`` (Ollama's older endpoint)."""
    server, data = await _start(request, EMBEDDINGS_FIELDS, "/api/embeddings")
    prompt = data.get("prompt", "")
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt: expected a string")
    if not prompt:
        return JSONResponse({"embedding": []})
    lease = await use_model(request, data)
    model = lease.model
    pooling = _pooling(server, lease)
    toks = await asyncio.to_thread(model.tokenize, prompt)
    if len(toks) > model.n_ctx:
        raise ApiError(400, f"prompt: input length ({len(toks)} tokens) exceeds the context length ({model.n_ctx})")
    vectors = await compute(server, lease.worker, [toks], pooling, -1)
    return JSONResponse({"embedding": vectors[0]})
