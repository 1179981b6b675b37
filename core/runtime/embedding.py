"""Embeddings from a decoder, computed as llama.cpp does with ``--embedding``.

Every token's hidden state after the final norm (llama.cpp's ``t_embd``, the output norm's result before the output
projection), pooled per text and normalised like ``common_embd_normalize``.  Attention stays causal, as llama.cpp
keeps it for decoder models; text is tokenized as for generation (BOS, and EOS/SEP when the vocabulary asks for
them).  Pooling: ``none`` (one vector per token), ``mean`` (over every token, BOS included), ``cls`` (the first
token's), ``last`` (the last token's).  A model's default is its GGUF ``<arch>.pooling_type``, else ``none`` (as
llama.cpp's ``LLAMA_POOLING_TYPE_UNSPECIFIED`` falls back to).  Texts are packed into shared micro-batches, each its
own sequence with its own small KV cache; a text longer than a micro-batch runs alone, piece by piece.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from emberllm.backends.kv_cache import KVCache
from emberllm.runtime.context_size import MIN_CTX

#: The pooling types emberllm computes (llama.cpp's ``--pooling``, without ``rank``).
POOLING_TYPES = ("none", "mean", "cls", "last")
#: llama.cpp's ``enum llama_pooling_type`` as stored in ``<arch>.pooling_type``.
GGUF_POOLING = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
#: A step's result: per text, one vector (pooled) or one vector per token (``none``).
Embeddings = list[Any]


def model_pooling(metadata: Mapping[str, Any]) -> str:
    """The pooling a GGUF file states (``<arch>.pooling_type``), ``none`` when it states none."""
    arch = metadata.get("general.architecture", "")
    value = metadata.get(f"{arch}.pooling_type")
    if value is None or int(value) < 0:
        return "none"
    return GGUF_POOLING.get(int(value), f"type {int(value)}")


def check_pooling(pooling: str) -> str:
    """``pooling`` when emberllm computes it, else ``ValueError`` naming the ones it does."""
    if pooling not in POOLING_TYPES:
        what = "rerankers' 'rank' pooling" if pooling == "rank" else f"pooling {pooling!r}"
        raise ValueError(f"{what} is not supported (use one of {', '.join(POOLING_TYPES)})")
    return pooling


def normalize(vec: Sequence[float], mode: int) -> list[float]:
    """llama.cpp's ``common_embd_normalize``: -1 none, 0 max absolute scaled to int16, 1 taxicab, 2 euclidean (L2),
    more: p-norm."""
    if mode < 0:
        return list(vec)
    if mode == 0:
        total = max((abs(v) for v in vec), default=0.0) / 32760.0
    elif mode == 2:
        total = math.sqrt(math.fsum(v * v for v in vec))
    else:
        total = math.fsum(abs(v) ** mode for v in vec) ** (1.0 / mode)
    scale = 1.0 / total if total > 0.0 else 0.0
    return [v * scale for v in vec]


def rows_wanted(pooling: str, n: int) -> list[int]:
    """The token rows a pooling reads out of ``n``."""
    if pooling == "cls":
        return [0]
    if pooling == "last":
        return [n - 1]
    return list(range(n))


class _Pool:
    """One text's pooled state while its pieces are evaluated."""

    def __init__(self, pooling: str, n_tokens: int) -> None:
        self.pooling = pooling
        self.n_tokens = n_tokens
        self.rows: list[list[float]] = []
        self.sum: list[float] | None = None

    def add(self, row: memoryview) -> None:
        """Fold in one wanted row's hidden state."""
        if self.pooling == "mean":
            self.sum = list(row) if self.sum is None else [a + b for a, b in zip(self.sum, row, strict=True)]
        else:
            self.rows.append(list(row))

    def result(self, mode: int) -> Any:
        """The text's embedding (a vector, or per-token vectors for ``none``), normalised by ``mode``."""
        if self.pooling == "mean":
            assert self.sum is not None
            return normalize([v / self.n_tokens for v in self.sum], mode)
        if self.pooling == "none":
            return [normalize(r, mode) for r in self.rows]
        return normalize(self.rows[0], mode)


def check_inputs(inputs: Sequence[Sequence[int]], n_ctx: int) -> None:
    """``ValueError`` for an empty input or one longer than the context (as llama-server refuses them)."""
    for i, toks in enumerate(inputs):
        if not toks:
            raise ValueError(f"input {i} is empty: nothing to embed")
        if len(toks) > n_ctx:
            raise ValueError(f"input {i} ({len(toks)} tokens) is larger than the max context size ({n_ctx} tokens)")


def pack(inputs: Sequence[Sequence[int]], n_batch: int) -> list[list[int]]:
    """Indices of ``inputs`` grouped, in order, into micro-batches of at most ``n_batch`` tokens (a longer input
    alone)."""
    groups: list[list[int]] = []
    used = n_batch
    for i, toks in enumerate(inputs):
        if used + len(toks) > n_batch:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += len(toks)
    return groups


def embedding_steps(model: Any, inputs: Sequence[Sequence[int]], pooling: str,
                    mode: int) -> Generator[int, None, Embeddings]:
    """Embed token lists with ``model`` one micro-batch per step (each step yields the tokens it evaluated, for a
    scheduler to interleave); returns per input its embedding (see ``_Pool.result``)."""
    check_pooling(pooling)
    check_inputs(inputs, model.n_ctx)
    pools = [_Pool(pooling, len(toks)) for toks in inputs]
    for group in pack(inputs, model.n_batch):
        caches = [model.new_sequence(max(len(inputs[i]), MIN_CTX)) for i in group]
        if len(group) == 1:
            yield from _long_steps(model, caches[0], list(inputs[group[0]]), pools[group[0]])
            continue
        wanted = [rows_wanted(pooling, len(inputs[i])) for i in group]
        rows = model.decode_hidden([(kv, list(inputs[i]), w) for kv, i, w in zip(caches, group, wanted, strict=True)])
        r = 0
        for i, w in zip(group, wanted, strict=True):
            for _ in w:
                pools[i].add(rows[r])
                r += 1
        yield sum(len(inputs[i]) for i in group)
    return [p.result(mode) for p in pools]


def _long_steps(model: Any, kv: KVCache, tokens: list[int], pool: _Pool) -> Generator[int, None, None]:
    """One input alone, a micro-batch per step."""
    wanted = rows_wanted(pool.pooling, len(tokens))
    for start in range(0, len(tokens), model.n_batch):
        chunk = tokens[start : start + model.n_batch]
        rows_here = [r - start for r in wanted if start <= r < start + len(chunk)]
        rows = model.decode_hidden([(kv, chunk, rows_here)])
        for j in range(len(rows)):
            pool.add(rows[j])
        yield len(chunk)


def finish(steps: Generator[int, None, Embeddings]) -> Embeddings:
    """Run ``embedding_steps`` to the end; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def split_inputs(texts: str | Sequence[Any]) -> tuple[list[str | list[int]], bool]:
    """``Model.embed``'s input as a list of texts or token-id lists, and whether it was a single one (a string or
    one list of ids)."""
    if isinstance(texts, str):
        return [texts], True
    items = list(texts)
    if items and all(isinstance(t, int) and not isinstance(t, bool) for t in items):
        return [items], True
    out: list[str | list[int]] = []
    for i, t in enumerate(items):
        if isinstance(t, str):
            out.append(t)
        elif isinstance(t, Sequence) and all(isinstance(x, int) and not isinstance(x, bool) for x in t):
            out.append(list(t))
        else:
            raise TypeError(f"input {i} must be a string or a list of token ids, not {type(t).__name__}")
    return out, False
