"""Embedding throughput, emberllm beside llama.cpp's ``llama-embedding``, one thread, same texts (not in CI).

    python bench/embeddings.py [--texts 32] [--rounds 3] [--pooling mean]

The texts are sentences of ``harness.PROMPT_TEXT`` (8-40 tokens each).  Per round, alternating: ``llama-embedding -m
MODEL -f TEXTS --pooling mean -t 1 --embd-output-format array`` (its compute time: the process's wall time less the
log timestamp of its first ``batch_decode`` line, i.e. without loading but with printing the vectors and exiting),
then emberllm's ``Model.embed`` of the same token lists in this process (loaded once, warmed up).  Prints the median
texts/s and tokens/s of each and the ratio; holds the bench lock while timing.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "build_scripts"))

import build_llamacpp  # noqa: E402
from harness import PROMPT_TEXT, bench_lock  # noqa: E402

from emberllm.runtime.model import Model  # noqa: E402
from emberllm.runtime.model_store import default_model_path  # noqa: E402

#: llama.cpp's log timestamp (minutes.seconds.milliseconds.microseconds since start) on its first batch line.
BATCH_LINE = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+) I batch_decode:", re.MULTILINE)


def make_texts(n: int) -> list[str]:
    """``n`` sentences cut from the prompt text (cycled)."""
    sentences = [s.strip() + "." for s in PROMPT_TEXT.split(".") if s.strip()]
    return [sentences[i % len(sentences)] for i in range(n)]


def llama_run(binary: Path, model: Path, texts_file: Path, pooling: str) -> float:
    """Seconds llama-embedding spent from its first batch to its exit."""
    t0 = time.perf_counter()
    res = subprocess.run([str(binary), "-m", str(model), "-f", str(texts_file), "--pooling", pooling, "-t", "1",
                          "--embd-output-format", "array"], capture_output=True, text=True, timeout=300, check=True)
    wall = time.perf_counter() - t0
    m = BATCH_LINE.search(res.stderr)
    if m is None:
        raise RuntimeError("no batch_decode line in llama-embedding's log")
    minutes, seconds, ms, us = (int(g) for g in m.groups())
    return wall - (minutes * 60 + seconds + ms / 1e3 + us / 1e6)


def main(argv: list[str] | None = None) -> int:
    """Time both engines and print the table."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--texts", type=int, default=32, help="number of texts (default: 32)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    p.add_argument("--pooling", default="mean", choices=["mean", "cls", "last"])
    args = p.parse_args(argv)
    binary = build_llamacpp.build() / "llama-embedding"
    model_path = default_model_path()
    texts = make_texts(args.texts)
    model = Model(model_path, n_ctx=512, n_threads=1)
    inputs = [model.tokenize(t) for t in texts]
    n_tok = sum(len(i) for i in inputs)
    model.embed(inputs[:4], pooling=args.pooling)  # warm-up
    llama_s, ember_s = [], []
    with tempfile.TemporaryDirectory() as tmp, bench_lock():
        texts_file = Path(tmp) / "texts.txt"
        texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        for _ in range(args.rounds):
            llama_s.append(llama_run(binary, model_path, texts_file, args.pooling))
            t0 = time.perf_counter()
            model.embed(inputs, pooling=args.pooling)
            ember_s.append(time.perf_counter() - t0)
    model.close()
    print(f"{len(texts)} texts, {n_tok} tokens, pooling {args.pooling}, 1 thread, median of {args.rounds} rounds")
    print("| engine | texts/s | tokens/s | ratio |\n| --- | --- | --- | --- |")
    ref = statistics.median(llama_s)
    for name, runs in (("llama.cpp llama-embedding", llama_s), ("emberllm Model.embed", ember_s)):
        s = statistics.median(runs)
        print(f"| {name} | {len(texts) / s:.1f} | {n_tok / s:.0f} | {ref / s:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
