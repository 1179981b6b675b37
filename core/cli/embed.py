"""``emberllm embed``: embeddings of prompts as llama.cpp's ``llama-embedding`` computes and prints them."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from emberllm.cli.common import USER_ERRORS, add_model_flags, fail, load_model
from emberllm.runtime.embedding import POOLING_TYPES

#: ``--embd-output-format`` values (llama-embedding's): "" prints a summary and the cosine similarity matrix.
OUTPUT_FORMATS = ("", "array", "json", "json+", "raw")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``embed``."""
    p = sub.add_parser("embed", help="embeddings of prompts (llama-embedding's flags and output)")
    add_model_flags(p)
    p.add_argument("-p", "--prompt", action="append", default=[], metavar="TEXT",
                   help="text to embed, split into one prompt per --embd-separator; repeatable")
    p.add_argument("-f", "--file", default=None, help="read the prompts from a file (one per line)")
    p.add_argument("--pooling", choices=POOLING_TYPES, default=None,
                   help="pooling type (default: the model's, else none = one embedding per token)")
    p.add_argument("--embd-normalize", type=int, default=2, metavar="N",
                   help="normalisation (default: 2) (-1=none, 0=max absolute int16, 1=taxicab, 2=euclidean, >2=p-norm)")
    p.add_argument("--embd-output-format", choices=OUTPUT_FORMATS, default="", metavar="FORMAT",
                   help='empty = default, "array" = [[],[]...], "json" = openai style, "json+" = "json" + cosine '
                        'similarity matrix, "raw" = one whitespace-delimited embedding per line')
    p.add_argument("--embd-separator", default="\n", metavar="STRING",
                   help="separator of the prompts (default: \\n)")
    p.add_argument("--verbose-prompt", action="store_true", help="print each prompt's tokens to stderr")
    p.set_defaults(func=run)


def prompts_from_args(args: argparse.Namespace) -> list[str]:
    """The prompts: each ``-p`` (or the file, its final newline dropped as llama.cpp does) split by the separator."""
    texts = list(args.prompt)
    if args.file is not None:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
        texts.append(text[:-1] if text.endswith("\n") else text)
    if not texts:
        raise ValueError("give the text to embed with -p TEXT or -f FILE")
    if not args.embd_separator:
        raise ValueError("--embd-separator must not be empty")
    return [part for t in texts for part in t.split(args.embd_separator)]


def run(args: argparse.Namespace) -> int:
    """Load, embed every prompt, print them in the chosen format, timings to stderr."""
    try:
        prompts = prompts_from_args(args)
        model = load_model(args)
    except USER_ERRORS as exc:
        return fail(str(exc))
    try:
        pooling = args.pooling or model.pooling
        inputs = [model.tokenize(p) for p in prompts]
        if args.verbose_prompt:
            for i, (p, ids) in enumerate(zip(prompts, inputs, strict=True)):
                print(f"prompt {i}: {p!r}: {len(ids)} tokens: {ids}", file=sys.stderr)
        t0 = time.perf_counter()
        results = model.embed(inputs, pooling=pooling, normalize=args.embd_normalize)
        ms = (time.perf_counter() - t0) * 1000.0
    except USER_ERRORS as exc:
        return fail(str(exc))
    finally:
        model.close()
    rows = [v for r in results for v in r] if pooling == "none" else results
    print_embeddings(rows, prompts, pooling, args.embd_normalize, args.embd_output_format)
    n_tok = sum(len(i) for i in inputs)
    print(f"embed: {len(prompts)} prompts, {n_tok} tokens in {ms:.2f} ms ({n_tok / max(ms, 1e-9) * 1000:.2f} tokens "
          f"per second), pooling {pooling}", file=sys.stderr)
    return 0


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """llama.cpp's ``common_embd_similarity_cos`` (two zero vectors are similar)."""
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    s1, s2 = math.fsum(x * x for x in a), math.fsum(y * y for y in b)
    if s1 == 0.0 or s2 == 0.0:
        return 1.0 if s1 == s2 else 0.0
    return dot / (math.sqrt(s1) * math.sqrt(s2))


def print_embeddings(rows: list[list[float]], prompts: list[str], pooling: str, norm: int, fmt: str,
                     out: Any = None) -> None:
    """Print ``rows`` as llama-embedding does for ``--embd-output-format fmt``."""
    w = (out or sys.stdout).write
    num = "%1.0f" if norm == 0 else "%1.7f"
    if fmt == "":
        _print_summary(w, rows, prompts, pooling, norm)
    elif fmt == "raw":
        for r in rows:
            w(" ".join(num % v for v in r) + "\n")
    else:
        vectors = ["[" + ",".join(num % v for v in r) + "]" for r in rows]
        if fmt == "array":
            w("[" + ",".join(vectors) + "]\n")
        else:
            items = [f'    {{\n      "object": "embedding",\n      "index": {j},\n      "embedding": {v}\n    }}'
                     for j, v in enumerate(vectors)]
            w('{\n  "object": "list",\n  "data": [\n' + ",\n".join(items) + "\n  ]")
            if fmt == "json+" and len(prompts) > 1:
                sims = ["    [" + ", ".join(f"{cosine(a, b):6.2f}" for b in rows) + " ]" for a in rows]
                w(',\n  "cosineSimilarity": [\n' + ",\n".join(sims) + "\n  ]")
            w("\n}\n")
    w("\n")


def _print_summary(w: Any, rows: list[list[float]], prompts: list[str], pooling: str, norm: int) -> None:
    """llama-embedding's default output: the vectors' first values, then the cosine similarity matrix."""
    num = "%6.0f " if norm == 0 else "%9.6f "
    w("\n")
    for j, r in enumerate(rows):
        if pooling == "none":
            shown = "".join(num % v for v in r[:3]) + " ... " + "".join(num % v for v in r[-3:])
        else:
            shown = "".join(num % v for v in (r[:16] if len(prompts) > 1 else r))
        w(f"embedding {j}: {shown}\n")
    if pooling != "none" and len(prompts) > 1:
        w("\ncosine similarity matrix:\n\n")
        w("".join(f"{p:6.6s} " for p in prompts) + "\n")
        for a, p in zip(rows, prompts, strict=True):
            w("".join(f"{cosine(a, b):6.2f} " for b in rows) + f"{p:.10s}\n")

