"""``emberllm bench``: llama-bench's interface and table for our engine, run in-process.

Tests: ``ppN`` (a prompt of N random tokens decoded as one batch, logits of the last only), ``tgN``
(N single-token decodes from an empty cache, logits every step, no sampling) and ``ppN+tgM``.
Each test is warmed up once, then repeated ``-r`` times from an empty cache; t/s is mean ± sd.

``-o json`` / ``-o jsonl`` use llama-bench's field names (``model_type``, ``model_size``,
``model_n_params``, ``n_threads``, ``n_prompt``, ``n_gen``, ``avg_ns``, ``avg_ts``, ``stddev_ts``,
``samples_ts`` …) so one parser reads both; ``load_ms`` (model load time) is our addition.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emberllm.cli.common import USER_ERRORS, add_cache_type_flags, add_gpu_flags, fail, resolve_model_path
from emberllm.gguf.types import FTYPE_NAMES


@dataclass
class BenchResult:
    """One row of the table, with llama-bench's JSON field names."""

    build_commit: str
    cpu_info: str
    backends: str
    model_filename: str
    model_type: str
    model_size: int
    model_n_params: int
    n_batch: int
    n_ubatch: int
    n_threads: int
    n_prompt: int
    n_gen: int
    n_depth: int
    test_time: str
    avg_ns: int
    stddev_ns: int
    avg_ts: float
    stddev_ts: float
    samples_ns: list[int] = field(default_factory=list)
    samples_ts: list[float] = field(default_factory=list)
    kernels: str = ""
    load_ms: float = 0.0
    type_k: str = "f16"
    type_v: str = "f16"

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


def cpu_info() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_type(metadata: dict[str, Any], n_params: int) -> str:
    """llama-bench's model column, e.g. ``gemma3 270M Q4_K - Medium``."""
    arch = metadata.get("general.architecture", "?")
    size = metadata.get("general.size_label") or (
        f"{n_params / 1e9:.1f}B" if n_params >= 1e9 else f"{round(n_params / 1e6)}M")
    ftype = metadata.get("general.file_type")
    return f"{arch} {size} {FTYPE_NAMES.get(ftype, f'ftype {ftype}') if ftype is not None else '?'}"


def run_once(model: Any, n_prompt: int, n_gen: int, rng: random.Random) -> float:
    """Seconds for one test from an empty cache."""
    n_vocab = model.hp.n_vocab
    bos = model.tokenizer.bos_id
    seq = model.sequence
    seq.clear()
    t0 = time.perf_counter()
    if n_prompt:
        tokens = [rng.randrange(n_vocab) for _ in range(n_prompt)]
        if bos is not None:
            tokens[0] = bos
        model.decode([(seq, tokens)])[-1]  # the logits on the host, as llama-bench has them
    token = bos if bos is not None else rng.randrange(n_vocab)
    for _ in range(n_gen):
        model.decode([(seq, [token])])[-1]
        token = rng.randrange(n_vocab)
    return time.perf_counter() - t0


def bench_model(path: Path, tests: list[tuple[int, int]], threads: list[int], reps: int,
                n_batch: int = 512, n_gpu_layers: int | None = None, device: str | None = None,
                cache_type_k: str = "f16", cache_type_v: str = "f16") -> list[BenchResult]:
    """Run every (test, threads) pair and return the rows (KV cache of the given types)."""
    from emberllm import __version__
    from emberllm.runtime.model import Model

    results = []
    cpu = cpu_info()
    for n_threads in threads:
        need = max(p + g for p, g in tests)
        # no warm-up at load: load_ms then compares with llama.cpp's and wllama's (each test warms up below)
        model = Model(path, n_ctx=max(need, 16), n_threads=n_threads, n_batch=n_batch, warmup=False,
                      n_gpu_layers=n_gpu_layers, device=device, cache_type_k=cache_type_k,
                      cache_type_v=cache_type_v)
        try:
            size = sum(t.nbytes for t in model.gguf.tensors.values())
            params = sum(t.n_elements for t in model.gguf.tensors.values())
            mtype = model_type(model.gguf.metadata, params)
            level, backends = model.kernel_level_name, "CPU"
            if model.gpu_backend is not None:
                n_dev = len(model.decoder.device_layers)
                level = f"{model.gpu_backend.device.adapter_name}, {model.gpu_backend.precision}, ngl {n_dev}"
                backends = "WebGPU"
            rng = random.Random(1234)
            for n_prompt, n_gen in tests:
                run_once(model, n_prompt, n_gen, rng)  # warm-up
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                secs = [run_once(model, n_prompt, n_gen, rng) for _ in range(reps)]
                samples_ns = [round(s * 1e9) for s in secs]
                samples_ts = [(n_prompt + n_gen) / s for s in secs]
                results.append(BenchResult(
                    build_commit=__version__, cpu_info=cpu, backends=backends, model_filename=str(path),
                    model_type=mtype, model_size=size, model_n_params=params, n_batch=n_batch, n_ubatch=n_batch,
                    n_threads=n_threads, n_prompt=n_prompt, n_gen=n_gen, n_depth=0, test_time=stamp,
                    avg_ns=round(statistics.fmean(samples_ns)),
                    stddev_ns=round(statistics.stdev(samples_ns)) if reps > 1 else 0,
                    avg_ts=statistics.fmean(samples_ts),
                    stddev_ts=statistics.stdev(samples_ts) if reps > 1 else 0.0,
                    samples_ns=samples_ns, samples_ts=samples_ts, kernels=level,
                    load_ms=model.timings.load_ms, type_k=cache_type_k, type_v=cache_type_v))
        finally:
            model.close()
    return results


def format_size(n_bytes: int) -> str:
    """llama-bench's size column: MiB below 1 GiB, GiB above."""
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.2f} MiB"


def format_params(n: int) -> str:
    """llama-bench's params column: M below 1e9, B above."""
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def format_markdown(rows: list[BenchResult]) -> str:
    """llama-bench's markdown table."""
    types = any((r.type_k, r.type_v) != ("f16", "f16") for r in rows)  # llama-bench shows them when not default
    out = ["| model | size | params | backend | threads |" + (" type_k | type_v |" if types else "") + " test | t/s |",
           "| --- | ---: | ---: | --- | ---: |" + (" ---: | ---: |" if types else "") + " ---: | ---: |"]
    for r in rows:
        kv = f" {r.type_k} | {r.type_v} |" if types else ""
        out.append(f"| {r.model_type} | {format_size(r.model_size)} | {format_params(r.model_n_params)} | "
                   f"{r.backends} ({r.kernels}) | {r.n_threads} |{kv} {r.test} | {r.avg_ts:.2f} ± {r.stddev_ts:.2f} |")
    return "\n".join(out)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``bench``."""
    p = sub.add_parser("bench", help="llama-bench style throughput benchmark")
    p.add_argument("-m", "--model", help="GGUF model (default: the Gemma 3 270M package's model)")
    p.add_argument("-p", "--n-prompt", type=int_list, default=[512], help="prompt sizes (default: 512)")
    p.add_argument("-n", "--n-gen", type=int_list, default=[128], help="generation lengths (default: 128)")
    p.add_argument("-pg", type=pair_list, action="extend", default=[], help="prompt,gen pairs")
    p.add_argument("-t", "--threads", type=int_list, default=None, help="thread counts (default: the cores, at most 8)")
    p.add_argument("-b", "--batch-size", type=int, default=512, help="prompt micro-batch size (default: 512)")
    p.add_argument("-r", "--repetitions", type=int, default=5, help="repetitions (default: 5)")
    p.add_argument("-o", "--output", choices=["md", "json", "jsonl"], default="md", help="output format")
    add_cache_type_flags(p)
    add_gpu_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Benchmark and print the table."""
    from emberllm.runtime.model import default_threads

    tests = [(p, 0) for p in args.n_prompt if p > 0] + [(0, g) for g in args.n_gen if g > 0] + list(args.pg)
    try:
        if not tests:
            raise ValueError("nothing to run: give -p, -n or -pg")
        if args.repetitions < 1:
            raise ValueError("-r must be at least 1")
        if args.batch_size < 1:
            raise ValueError("-b must be at least 1")
        threads = args.threads or [default_threads()]
        if min(threads) < 1:
            raise ValueError("-t values must be at least 1")
        rows = bench_model(resolve_model_path(args.model), tests, threads, args.repetitions, args.batch_size,
                           args.n_gpu_layers, args.device, args.cache_type_k, args.cache_type_v)
    except USER_ERRORS as exc:
        return fail(str(exc))
    if args.output == "json":
        print(json.dumps([asdict(r) for r in rows], indent=2))
    elif args.output == "jsonl":
        for r in rows:
            print(json.dumps(asdict(r)))
    else:
        print(format_markdown(rows))
    sys.stdout.flush()
    return 0

