"""``emberllm perplexity``: llama-perplexity's method over a text file."""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

from emberllm.cli.common import USER_ERRORS, add_model_flags, fail, load_model


@dataclass
class PerplexityResult:
    """PPL, its standard error, tokens scored and chunks evaluated."""

    ppl: float
    stderr: float
    n_scored: int
    n_chunks: int
    running: list[float]


def perplexity(model: object, text: str, n_ctx: int, max_chunks: int | None = None) -> PerplexityResult:
    """llama-perplexity's estimate: the text is tokenized once with BOS and cut into ``n_ctx``-token chunks;
    each chunk starts with BOS in place of its first token, and only its second half is scored.
    """
    tokens = model.tokenize(text, add_special=True, parse_special=False)  # type: ignore[attr-defined]
    n_chunks = len(tokens) // n_ctx
    if max_chunks is not None:
        n_chunks = min(n_chunks, max_chunks)
    if n_chunks < 1:
        raise ValueError(f"need at least {n_ctx} tokens, the text has {len(tokens)}")
    bos = model.tokenizer.bos_id  # type: ignore[attr-defined]
    first = n_ctx // 2
    seq = model.sequence  # type: ignore[attr-defined]
    nll = nll2 = 0.0
    count = 0
    running = []
    for c in range(n_chunks):
        chunk = tokens[c * n_ctx : (c + 1) * n_ctx]
        if bos is not None:
            chunk = [bos] + chunk[1:]
        seq.clear()
        rows = model.decode([(seq, chunk, range(first, n_ctx - 1))])  # type: ignore[attr-defined]
        for i, row in enumerate(range(first, n_ctx - 1)):
            lp = rows.log_prob(i, chunk[row + 1])
            nll -= lp
            nll2 += lp * lp
            count += 1
        running.append(math.exp(nll / count))
    mean = nll / count
    var = nll2 / count - mean * mean
    err = math.sqrt(var / (count - 1)) * math.exp(mean) if var > 0 and count > 1 else 0.0
    return PerplexityResult(math.exp(mean), err, count, n_chunks, running)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``perplexity``."""
    p = sub.add_parser("perplexity", help="perplexity of a text file (llama-perplexity's method)")
    add_model_flags(p)
    p.add_argument("-f", "--file", required=True, help="text file")
    p.add_argument("--chunks", type=int, default=None, help="evaluate at most this many chunks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute and print PPL ± stderr."""
    try:
        text = open(args.file, encoding="utf-8").read()
        model = load_model(args)
    except USER_ERRORS as exc:
        return fail(str(exc))
    try:
        t0 = time.perf_counter()
        res = perplexity(model, text, model.n_ctx, args.chunks)
        for i, value in enumerate(res.running):
            print(f"[{i + 1}]{value:.4f}", end=",", file=sys.stderr)
        print(file=sys.stderr)
        print(f"Final estimate: PPL = {res.ppl:.4f} +/- {res.stderr:.5f}")
        print(f"{res.n_chunks} chunks of {model.n_ctx}, {res.n_scored} tokens scored, "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    except USER_ERRORS as exc:
        return fail(str(exc))
    finally:
        model.close()
    return 0
