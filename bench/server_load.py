"""Concurrent streams against ``emberllm serve`` and ``llama-server``, side by side in one run.

    python bench/server_load.py                         # both servers, -np 4, 1/2/4 streams, 3 repetitions
    python bench/server_load.py --engines emberllm --streams 1,4 -n 64 -t 1

Each server runs with the same flags (``-np 4 -c 4096 -t T``) on the same model.  For k streams, k clients send
a streaming ``POST /completion`` at once (different prompts, greedy, ``ignore_eos``, ``n_predict`` N) and the
run records, per request, the time to its first token and to its end.  Reported per (engine, k), medians over
the repetitions:

- aggregate decode t/s: tokens generated after each stream's first token / (last end - first first-token);
- TTFT: mean time to first token of the k requests (prompt processing under that load);
- wall: time from sending to the last end.

llama.cpp is build_scripts/build_llamacpp.py's build in the cache (built through ``compare.LlamaCpp`` if
missing).  Every timed run holds ``/tmp/emberllm-bench.lock``; results are appended as JSON under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCK = "/tmp/emberllm-bench.lock"
PROMPTS = [
    "The history of the printing press begins",
    "Here is a short story about a lighthouse keeper:",
    "def quicksort(items):",
    "The main causes of the French Revolution were",
    "A recipe for bread: first,",
    "In the year 2050, cities will",
    "The water cycle consists of",
    "Dear diary, today I",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(engine: str, model: Path, port: int, threads: int, slots: int, n_ctx: int) -> list[str]:
    """The command line of one server with the shared flags."""
    common = ["-m", str(model), "--port", str(port), "-np", str(slots), "-c", str(n_ctx), "-t", str(threads)]
    if engine == "emberllm":
        return [sys.executable, "-m", "emberllm.cli", "serve", *common, "--log-level", "warning", "--no-webui"]
    sys.path.insert(0, str(HERE))
    import compare  # noqa: PLC0415 - bench/ is not a package

    llama = compare.LlamaCpp()
    if not llama.built():
        llama.prepare(None)
    return [str(llama.bin / "llama-server"), *common, "--no-webui", "--log-disable"]


@contextlib.contextmanager
def running_server(cmd: list[str]) -> Iterator[str]:
    """Start ``cmd`` (its last ``--port`` value is the port), wait for ``/health``, stop it afterwards."""
    port = cmd[cmd.index("--port") + 1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {' '.join(cmd)}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def one_stream(url: str, prompt: str, n_predict: int, t0: float, out: dict[str, Any]) -> None:
    """One streaming completion; fills ``out`` with first-token and end times (relative to ``t0``)."""
    body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0, "top_k": 1, "ignore_eos": True,
            "stream": True, "cache_prompt": False}
    n = 0
    with httpx.stream("POST", f"{url}/completion", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("stop"):
                out["predicted"] = chunk.get("tokens_predicted", n)
                break
            if "first" not in out:
                out["first"] = time.perf_counter() - t0
            n += 1
    out["end"] = time.perf_counter() - t0
    out.setdefault("predicted", n)


def measure(url: str, k: int, n_predict: int) -> dict[str, float]:
    """k concurrent streams: aggregate decode t/s, mean TTFT, wall time."""
    outs: list[dict[str, Any]] = [{} for _ in range(k)]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=one_stream, args=(url, PROMPTS[i % len(PROMPTS)], n_predict, t0, outs[i]))
               for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any("end" not in o or "first" not in o for o in outs):
        raise RuntimeError(f"a stream failed: {outs}")
    decoded = sum(o["predicted"] - 1 for o in outs)
    span = max(o["end"] for o in outs) - min(o["first"] for o in outs)
    return {"agg_tps": decoded / span, "ttft_ms": 1000 * statistics.mean(o["first"] for o in outs),
            "wall_s": max(o["end"] for o in outs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", default=None, help="GGUF model (default: the Gemma package's)")
    p.add_argument("--engines", default="emberllm,llama.cpp")
    p.add_argument("--streams", default="1,2,4")
    p.add_argument("-np", "--parallel", type=int, default=4)
    p.add_argument("-c", "--ctx-size", type=int, default=4096)
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("-n", "--n-predict", type=int, default=128)
    p.add_argument("-r", "--reps", type=int, default=3)
    args = p.parse_args(argv)
    if args.model is None:
        from emberllm.runtime.model_store import default_model_path

        model = default_model_path()
    else:
        model = Path(args.model)
    streams = [int(s) for s in args.streams.split(",")]
    results: dict[str, dict[int, list[dict[str, float]]]] = {}
    for engine in args.engines.split(","):
        cmd = server_command(engine, model, free_port(), args.threads, args.parallel, args.ctx_size)
        print(f"[{engine}] {' '.join(cmd)}", file=sys.stderr, flush=True)
        results[engine] = {k: [] for k in streams}
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with running_server(cmd) as url:
                measure(url, 1, 8)  # warm-up
                for rep in range(args.reps):
                    for k in streams:
                        res = measure(url, k, args.n_predict)
                        results[engine][k].append(res)
                        print(f"[{engine}] rep {rep} streams {k}: {res}", file=sys.stderr, flush=True)
    print(f"\nmodel {model.name}, -np {args.parallel} -c {args.ctx_size} -t {args.threads}, n_predict "
          f"{args.n_predict}, medians of {args.reps}\n")
    print("| engine | streams | aggregate decode t/s | x one stream | mean TTFT ms | wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    summary: dict[str, Any] = {}
    for engine, by_k in results.items():
        base = statistics.median(r["agg_tps"] for r in by_k[streams[0]])
        for k in streams:
            med = {key: statistics.median(r[key] for r in by_k[k]) for key in ("agg_tps", "ttft_ms", "wall_s")}
            summary.setdefault(engine, {})[k] = med
            print(f"| {engine} | {k} | {med['agg_tps']:.1f} | {med['agg_tps'] / base:.2f} | {med['ttft_ms']:.0f} | "
                  f"{med['wall_s']:.2f} |")
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"server-{stamp}.json"
    path.write_text(json.dumps({"args": vars(args), "model": str(model), "summary": summary, "raw": results,
                                "loadavg": os.getloadavg()}, indent=1))
    print(f"\nraw results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
