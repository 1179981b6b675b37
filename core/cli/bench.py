"""``emberllm bench``: llama-bench's interface and table for our engine, run in-process.

Tests: ``ppN`` (a prompt of N random tokens decoded as one batch, logits of the last only), ``tgN``
(N single-token decodes from an empty cache, logits every step, no sampling) and ``ppN+tgM``.
Each test is warmed up once, then repeated ``-r`` times from an empty cache; t/s is mean ± sd.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emberllm.cli.common import USER_ERRORS, fail, resolve_model_path


@dataclass
class BenchResult:
    """One row of the table (llama-bench's JSON field names where they exist)."""

    model: str
    size: int
    params: int
    backend: str
    n_threads: int
    n_prompt: int
    n_gen: int
    avg_ts: float
    stddev_ts: float
    samples_ts: list[float]

    @property
    def test(self) -> str:
        """llama-bench's test label."""
        if self.n_prompt and self.n_gen:
            return f"pp{self.n_prompt}+tg{self.n_gen}"
        return f"pp{self.n_prompt}" if self.n_prompt else f"tg{self.n_gen}"


def int_list(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def pair_list(text: str) -> list[tuple[int, int]]:
    """``"256,64"`` -> ``[(256, 64)]`` (llama-bench's -pg)."""
    values = int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"-pg takes PROMPT,GEN, got {text!r}")
    return [(values[0], values[1])]


def run_once(model: Any, n_prompt: int, n_gen: int, rng: random.Random) -> float:
    """Seconds for one test from an empty cache."""
    n_vocab = model.hp.n_vocab
    bos = model.tokenizer.bos_id
    model.kv.clear()
    t0 = time.perf_counter()
    if n_prompt:
        tokens = [rng.randrange(n_vocab) for _ in range(n_prompt)]
        if bos is not None:
            tokens[0] = bos
        model.arch.decode(tokens, model.kv)
    token = bos if bos is not None else rng.randrange(n_vocab)
    for _ in range(n_gen):
        model.arch.decode([token], model.kv)
        token = rng.randrange(n_vocab)
    return time.perf_counter() - t0


def bench_model(path: Path, tests: list[tuple[int, int]], threads: list[int], reps: int) -> list[BenchResult]:
    """Run every (test, threads) pair and return the rows."""
    from emberllm.engine import Model

    results = []
    for n_threads in threads:
        need = max(p + g for p, g in tests)
        model = Model(path, n_ctx=max(need, 16), n_threads=n_threads)
        try:
            size = sum(t.nbytes for t in model.gguf.tensors.values())
            params = sum(t.n_elements for t in model.gguf.tensors.values())
            backend = f"CPU ({model.kernels.level_name(model.kernel_level)})"
            rng = random.Random(1234)
            for n_prompt, n_gen in tests:
                run_once(model, n_prompt, n_gen, rng)  # warm-up
                samples = [(n_prompt + n_gen) / run_once(model, n_prompt, n_gen, rng) for _ in range(reps)]
                results.append(BenchResult(
                    model=str(model.gguf.metadata.get("general.name", path.name)), size=size, params=params,
                    backend=backend, n_threads=n_threads, n_prompt=n_prompt, n_gen=n_gen,
                    avg_ts=statistics.fmean(samples),
                    stddev_ts=statistics.stdev(samples) if len(samples) > 1 else 0.0, samples_ts=samples))
        finally:
            model.close()
    return results


def format_markdown(rows: list[BenchResult]) -> str:
    """llama-bench's markdown table."""
    out = ["| model | size | params | backend | threads | test | t/s |",
           "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r.model} | {r.size / 2**20:.2f} MiB | {r.params / 1e6:.2f} M | {r.backend} | "
                   f"{r.n_threads} | {r.test} | {r.avg_ts:.2f} ± {r.stddev_ts:.2f} |")
    return "\n".join(out)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``bench``."""
    p = sub.add_parser("bench", help="llama-bench style throughput benchmark")
    p.add_argument("-m", "--model", help="GGUF model (default: the Gemma 3 270M package's model)")
    p.add_argument("-p", "--n-prompt", type=int_list, default=[512], help="prompt sizes (default: 512)")
    p.add_argument("-n", "--n-gen", type=int_list, default=[128], help="generation lengths (default: 128)")
    p.add_argument("-pg", type=pair_list, action="extend", default=[], help="prompt,gen pairs")
    p.add_argument("-t", "--threads", type=int_list, default=None, help="thread counts (default: cores)")
    p.add_argument("-r", "--repetitions", type=int, default=5, help="repetitions (default: 5)")
    p.add_argument("-o", "--output", choices=["md", "json"], default="md")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Benchmark and print the table."""
    from emberllm.engine import default_threads

    tests = [(p, 0) for p in args.n_prompt if p > 0] + [(0, g) for g in args.n_gen if g > 0] + list(args.pg)
    try:
        if not tests:
            raise ValueError("nothing to run: give -p, -n or -pg")
        if args.repetitions < 1:
            raise ValueError("-r must be at least 1")
        rows = bench_model(resolve_model_path(args.model), tests, args.threads or [default_threads()],
                           args.repetitions)
    except USER_ERRORS as exc:
        return fail(str(exc))
    if args.output == "json":
        print(json.dumps([asdict(r) | {"test": r.test} for r in rows], indent=2))
    else:
        print(format_markdown(rows))
    sys.stdout.flush()
    return 0
