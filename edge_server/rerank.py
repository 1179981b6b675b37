"""llama-server's reranking: ``/rerank`` (also ``/reranking``, ``/v1/rerank``, ``/v1/reranking``) with ``--rerank``.

Each document's prompt is llama.cpp's: the GGUF's ``rerank`` chat template with ``{query}`` and ``{document}``
filled in, or else BOS, the query, EOS/SEP as the vocabulary adds them, the document. Its score is llama.cpp's rank
pooling: the last token's hidden state after the output norm (causal models read the last token), through the
model's classification head when the file has one, and the first component of the result. emberllm loads no
classification heads (``cls.*`` tensors), so a model without one — every decoder it runs — scores a document by
that first hidden component, exactly as llama-server does for the same file: a number, not a trained relevance.
Jina's request shape (``documents``, ``results`` with ``relevance_score``) and TEI's (``texts``, a bare list with
``score``, ``return_text``) are both answered, sorted best first and cut to ``top_n``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emberllm.edge_server.embeddings import compute
from emberllm.edge_server.errors import ApiError
from emberllm.edge_server.requests import get_bool, get_int, read_json
from emberllm.edge_server.state import check_ready, server_of, use_model
from emberllm.runtime.model import Model

FIELDS = frozenset({"query", "documents", "texts", "top_n", "return_text", "model", "keep_alive"})


def rerank_prompt(model: Model, query: str, document: str) -> list[int]:
    """llama.cpp's rerank prompt of one document (``format_prompt_rerank``)."""
    template = model.gguf.metadata.get("tokenizer.chat_template.rerank")
    if isinstance(template, str):
        text = template.replace("{query}", query).replace("{document}", document)
        return model.tokenize(text, add_special=False)
    tok = model.tokenizer
    eos = tok.eos_id if tok.eos_id is not None else _sep_id(model)
    tokens = [tok.bos_id] if tok.add_bos and tok.bos_id is not None else []
    tokens += model.tokenize(query, add_special=False, parse_special=False)
    if _flag(model, "add_eos_token") and eos is not None:
        tokens.append(eos)
    sep = _sep_id(model)
    if _flag(model, "add_sep_token") and sep is not None:
        tokens.append(sep)
    tokens += model.tokenize(document, add_special=False, parse_special=False)
    if _flag(model, "add_eos_token") and eos is not None:
        tokens.append(eos)
    return tokens


def _flag(model: Model, key: str) -> bool:
    return bool(model.gguf.metadata.get(f"tokenizer.ggml.{key}", False))


def _sep_id(model: Model) -> int | None:
    sep = model.gguf.metadata.get("tokenizer.ggml.seperator_token_id")
    return int(sep) if isinstance(sep, int) else None


def _documents(data: dict[str, Any]) -> list[str]:
    docs = data.get("documents", data.get("texts"))
    if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
        raise ApiError(400, "\"documents\" must be a non-empty string array")
    return docs


async def rerank(request: Request) -> Response:
    """``POST /rerank``: the documents scored against the query, best first."""
    server = server_of(request)
    if not server.config.rerank:
        raise ApiError(501, "This server does not support reranking. Start it with `--reranking`")
    check_ready(request)
    data = await read_json(request, server.config.max_body_bytes)
    for name in data:
        if name not in FIELDS:
            raise ApiError(400, f"{name}: not a rerank field (query, documents or texts, top_n, return_text, model)")
    query = data.get("query")
    if not isinstance(query, str):
        raise ApiError(400, "\"query\" must be a string" if "query" in data else "\"query\" must be provided")
    tei = "texts" in data
    docs = _documents(data)
    top_n = get_int(data, "top_n", len(docs), 0)
    return_text = get_bool(data, "return_text", False)
    if return_text and not tei:
        raise ApiError(400, "return_text: only the TEI format (\"texts\") returns the texts")
    lease = await use_model(request, data)
    model = lease.model
    prompts = [rerank_prompt(model, query, d) for d in docs]
    hidden = await compute(server, lease.worker, prompts, "last", -1)
    label = "score" if tei else "relevance_score"
    results: list[dict[str, Any]] = []
    for i, vec in enumerate(hidden):
        item: dict[str, Any] = {"index": i, label: float(vec[0])}
        if return_text:
            item["text"] = docs[i]
        results.append(item)
    results.sort(key=lambda r: r[label], reverse=True)
    results = results[:top_n]
    if tei:
        return JSONResponse(results)
    n_tokens = sum(len(p) for p in prompts)
    return JSONResponse({"model": data.get("model", lease.name), "object": "list",
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}, "results": results})
