"""Pure pieces of the benchmark harness (``bench/compare.py``): parsing, medians, ratios, the table, results.

Nothing here starts a process or times anything, so ``tests/test_bench_harness.py`` runs it in CI. The only
I/O is the file lock, reading ``/proc`` for machine facts and writing the results file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The lock every timed run holds, shared with anyone else measuring on this machine.
LOCK_PATH = "/tmp/emberllm-bench.lock"

#: The reference engine: ratios are each engine's t/s over this one's at the same thread count.
REFERENCE = "llama.cpp"

#: CPU flags worth recording (SIMD levels the kernels may use); the rest of /proc/cpuinfo's list is noise.
SIMD_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
              "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd",
              "asimddp", "i8mm", "sve", "sve2")

#: Text the prompts are cut from (any text will do: prompt cost does not depend on the words).
PROMPT_TEXT = (
    "The old lighthouse keeper climbed the spiral stairs each evening, counting the steps as his father had "
    "done before him. From the lamp room he could see the whole bay: fishing boats returning with the tide, "
    "gulls circling over the harbour wall, and the distant hills turning violet as the sun went down. He "
    "wrote the weather in a leather notebook, noted the ships that passed, and trimmed the wick with great "
    "care. Some nights the fog rolled in so thick that the beam seemed to end a few yards from the glass, "
    "and he would sound the horn every minute until dawn. Visitors sometimes asked whether he was lonely. "
    "He would smile and point to the shelves of books, the radio, the cat asleep by the stove, and the "
    "letters from his daughter who studied engineering in a city far to the north."
)


@dataclass(frozen=True)
class TestSpec:
    """One llama-bench test: ``n_prompt`` prompt tokens then ``n_gen`` generated ones."""

    n_prompt: int
    n_gen: int

    @property
    def label(self) -> str:
        """llama-bench's name for it: ``pp512``, ``tg128`` or ``pp256+tg64``."""
        return test_label(self.n_prompt, self.n_gen)


def test_label(n_prompt: int, n_gen: int) -> str:
    """llama-bench's test name for a prompt/generation pair."""
    if n_prompt and n_gen:
        return f"pp{n_prompt}+tg{n_gen}"
    return f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"


def make_tests(n_prompt: int, n_gen: int, pg: tuple[int, int] | None) -> list[TestSpec]:
    """The tests of one invocation, in llama-bench's order (pp, tg, pg); zero sizes are left out."""
    tests = []
    if n_prompt > 0:
        tests.append(TestSpec(n_prompt, 0))
    if n_gen > 0:
        tests.append(TestSpec(0, n_gen))
    if pg and pg[0] > 0 and pg[1] > 0:
        tests.append(TestSpec(pg[0], pg[1]))
    return tests


@dataclass
class RunRecord:
    """One timed run of one engine at one thread count (one repetition of every test)."""

    engine: str
    threads: int
    rep: int
    ts: dict[str, float] = field(default_factory=dict)  # test label -> tokens per second
    load_ms: float | None = None
    peak_rss_bytes: int | None = None
    wall_s: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class SummaryRow:
    """Medians of one engine at one thread count, with ratios to the reference engine."""

    engine: str
    threads: int
    status: str  # "ok", or why there are no figures ("not built", "failed: ...")
    ts: dict[str, float | None] = field(default_factory=dict)
    ratio: dict[str, float | None] = field(default_factory=dict)
    load_ms: float | None = None
    peak_rss_bytes: int | None = None
    n_ok: int = 0
    n_runs: int = 0


# -- parsing ---------------------------------------------------------------------------------------------
def parse_bench_json(text: str) -> list[dict[str, Any]]:
    """The rows of ``llama-bench -o json`` (or ``-o jsonl``); ``emberllm bench`` writes the same fields."""
    text = text.strip()
    if not text:
        raise ValueError("empty benchmark output")
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON in benchmark output")
    text = text[start:]
    if text.startswith("["):
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    for row in rows:
        for key in ("n_prompt", "n_gen", "avg_ts"):
            if key not in row:
                raise ValueError(f"benchmark row without {key!r}: {sorted(row)}")
    return rows


def bench_rows_to_ts(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Test label -> mean t/s of each row of llama-bench style JSON."""
    return {test_label(int(r["n_prompt"]), int(r["n_gen"])): float(r["avg_ts"]) for r in rows}


def parse_llama_perf_total_ms(stderr: str) -> float | None:
    """``total time = X ms`` from llama.cpp's ``common_perf_print`` (None when absent)."""
    for line in stderr.splitlines():
        if "total time" in line and "=" in line:
            try:
                return float(line.split("=", 1)[1].split("ms", 1)[0].strip())
            except ValueError:
                continue
    return None


def llama_load_ms(wall_ms: float, stderr: str) -> float | None:
    """Load time of a ``llama-completion -n 1`` run: its wall time less what it spent evaluating.

    llama.cpp's own ``load time`` line counts only the mmap, not the tokenizer, weight repacking and
    context set-up that come before the first decode, so the process's wall time less ``total time`` is the
    fairer figure (it also includes process start, a few ms).
    """
    total = parse_llama_perf_total_ms(stderr)
    return None if total is None else max(wall_ms - total, 0.0)


def last_json_object(text: str) -> dict[str, Any]:
    """The last line of ``text`` that parses as a JSON object (runners print logs before their result)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise ValueError("no JSON result in the runner's output")


def runner_test_ts(test: dict[str, Any]) -> float:
    """t/s of one test from llama-server style timings (what wllama's ``createCompletion`` returns).

    ``prompt_per_second`` for a pp test, ``predicted_per_second`` for a tg test. llama-server times
    generation from the first sampled token, so ``predicted_ms`` covers ``predicted_n - 1`` decodes; its
    own ``predicted_per_second`` accounts for that, and a pg test uses the same count:
    (prompt tokens + decodes) / (prompt_ms + predicted_ms).
    """
    n_prompt, n_gen = int(test["n_prompt"]), int(test["n_gen"])
    if n_prompt and not n_gen:
        return float(test["prompt_n"]) * 1000.0 / float(test["prompt_ms"])
    if n_gen and not n_prompt:
        if "predicted_per_second" in test:
            return float(test["predicted_per_second"])
        return max(int(test["predicted_n"]) - 1, 0) * 1000.0 / float(test["predicted_ms"])
    decodes = max(int(test["predicted_n"]) - 1, 0)
    return (int(test["prompt_n"]) + decodes) * 1000.0 / (float(test["prompt_ms"]) + float(test["predicted_ms"]))


def parse_runner_output(stdout: str) -> tuple[dict[str, float], float | None, int | None, list[str], dict[str, Any]]:
    """Parse a browser/Node runner's result (``bench/wllama/run.mjs`` and the Pyodide runners).

    Returns (test label -> t/s, load ms, peak RSS bytes, notes, the result object).
    """
    result = last_json_object(stdout)
    ts: dict[str, float] = {}
    notes: list[str] = []
    for test in result.get("tests", []):
        n_prompt, n_gen = int(test["n_prompt"]), int(test["n_gen"])
        label = test_label(n_prompt, n_gen)
        if n_prompt and int(test.get("prompt_n", n_prompt)) != n_prompt:
            notes.append(f"{label}: the prompt was {test['prompt_n']} tokens")
        if n_gen and int(test.get("predicted_n", n_gen)) != n_gen:
            notes.append(f"{label}: generated {test['predicted_n']} tokens")
        ts[label] = runner_test_ts(test)
    load = result.get("load_ms")
    peak = result.get("peak_rss_bytes")
    return ts, (float(load) if load is not None else None), (int(peak) if peak is not None else None), notes, result


# -- prompts ---------------------------------------------------------------------------------------------
def make_prompt_text(tokenize: Callable[[str], list[int]], n_tokens: int, base: str = PROMPT_TEXT) -> str:
    """A text that ``tokenize`` (BOS included) turns into exactly ``n_tokens`` tokens.

    Engines that take text only (wllama) then process the same number of tokens as llama-bench's ppN.
    As many whole words as fit (binary search), then single-token fillers close the gap a word would overshoot.
    """
    if n_tokens <= 0:
        raise ValueError("n_tokens must be positive")
    empty = len(tokenize(""))
    if n_tokens < empty:
        raise ValueError(f"cannot make a {n_tokens}-token prompt: the empty text is {empty} tokens")
    words = base.split()
    while len(tokenize(" ".join(words))) < n_tokens:
        words = words + base.split()

    def count(k: int) -> int:
        return len(tokenize(" ".join(words[:k])))

    lo, hi = 0, len(words)  # the largest k with count(k) <= n_tokens (count grows with k)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(mid) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    text = " ".join(words[:lo])
    count_now = count(lo)
    for filler in (" a", " I", " .", ",", "."):
        while count_now < n_tokens:
            n = len(tokenize(text + filler))
            if n != count_now + 1:
                break
            text, count_now = text + filler, n
    if count_now != n_tokens:
        raise ValueError(f"could not make a prompt of exactly {n_tokens} tokens (got {count_now})")
    return text


# -- statistics and the table ----------------------------------------------------------------------------
def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are present and finite (None when there are none)."""
    good = [float(v) for v in values if v is not None and math.isfinite(v)]
    return statistics.median(good) if good else None


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``, or None when either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def summarize(records: Sequence[RunRecord], engines: Sequence[str], threads: Sequence[int],
              tests: Sequence[TestSpec], unavailable: dict[str, str] | None = None,
              reference: str = REFERENCE) -> list[SummaryRow]:
    """One row per (engine, threads): medians over the successful runs and ratios to ``reference``."""
    unavailable = unavailable or {}
    rows: list[SummaryRow] = []
    for engine in engines:
        for n_threads in threads:
            runs = [r for r in records if r.engine == engine and r.threads == n_threads]
            ok = [r for r in runs if r.error is None]
            if engine in unavailable:
                status = unavailable[engine]
            elif not runs:
                status = "not run"
            elif not ok:
                error = runs[-1].error or ""
                status = error if error.startswith("n/a:") else f"failed: {error}"
            else:
                status = "ok"
            peaks = [r.peak_rss_bytes for r in ok if r.peak_rss_bytes is not None]
            rows.append(SummaryRow(
                engine=engine, threads=n_threads, status=status,
                ts={t.label: median([r.ts.get(t.label) for r in ok]) for t in tests},
                load_ms=median([r.load_ms for r in ok]),
                peak_rss_bytes=max(peaks) if peaks else None, n_ok=len(ok), n_runs=len(runs)))
    for row in rows:
        ref = next((r for r in rows if r.engine == reference and r.threads == row.threads), None)
        row.ratio = {label: (ratio(v, ref.ts.get(label)) if ref is not None else None)
                     for label, v in row.ts.items()}
    return rows


def format_ts(value: float | None, rel: float | None = None) -> str:
    """A t/s cell: ``538.1``, or ``312.0 (0.58×)`` with the ratio to the reference."""
    if value is None:
        return "–"
    text = f"{value:.2f}" if value < 100 else f"{value:.1f}"
    return f"{text} ({rel:.2f}×)" if rel is not None else text


def short_status(text: str, limit: int = 70) -> str:
    """One table-safe line of a status or error: its last non-empty line (a traceback's exception), cut."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    head = text.split(":", 1)[0] if ":" in text and len(lines) > 1 else ""
    line = (f"{head}: {lines[-1]}" if head and not lines[-1].startswith(head) else lines[-1]) if lines else ""
    line = line.replace("|", "/")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def format_table(rows: Sequence[SummaryRow], tests: Sequence[TestSpec], reference: str = REFERENCE) -> str:
    """The markdown table: t/s medians (ratio to the reference), load time, peak memory, runs.

    A row without figures shows why ("not built", "failed: …") in its first t/s cell.
    """
    labels = [t.label for t in tests]
    head = ["engine", "threads", *[f"{label} t/s" for label in labels], "load s", "peak MiB", "runs"]
    out = ["| " + " | ".join(head) + " |", "| --- | ---: | " + " | ".join("---:" for _ in head[2:]) + " |"]
    for row in rows:
        if row.status != "ok":
            cells = [short_status(row.status)] + ["–"] * (len(labels) - 1) + ["–", "–", f"{row.n_ok}/{row.n_runs}"]
        else:
            show_ratio = row.engine != reference
            cells = [format_ts(row.ts.get(label), row.ratio.get(label) if show_ratio else None) for label in labels]
            cells += ["–" if row.load_ms is None else f"{row.load_ms / 1000:.2f}",
                      "n/a" if row.peak_rss_bytes is None else f"{row.peak_rss_bytes / 2**20:.0f}",
                      f"{row.n_ok}/{row.n_runs}"]
        out.append(f"| {row.engine} | {row.threads} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# -- machine facts, the lock, the results file ------------------------------------------------------------
def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model name, logical CPU count and the SIMD flags of a ``/proc/cpuinfo`` text."""
    model = ""
    flags: set[str] = set()
    n_cpus = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            n_cpus += 1
        elif key in ("model name", "Model", "CPU part") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {"cpu_model": model, "logical_cpus": n_cpus, "simd_flags": [f for f in SIMD_FLAGS if f in flags]}


def machine_info() -> dict[str, Any]:
    """What the results depend on: CPU, its SIMD flags, memory, kernel, OS, Python, load at the start."""
    import platform

    info: dict[str, Any] = {"machine": platform.machine(), "kernel": platform.release(),
                            "python": sys.version.split()[0]}
    with contextlib.suppress(OSError):
        info.update(parse_cpuinfo(Path("/proc/cpuinfo").read_text()))
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0]
        info["mem_total_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"')
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    info["cpus_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return info


@contextlib.contextmanager
def bench_lock(path: str = LOCK_PATH, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (waiting for it) so that no two timed runs overlap."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def results_payload(*, started: str, finished: str, argv: Sequence[str], settings: dict[str, Any],
                    machine: dict[str, Any], versions: dict[str, Any], engines: dict[str, str],
                    records: Sequence[RunRecord], rows: Sequence[SummaryRow], table: str) -> dict[str, Any]:
    """The JSON document one comparison run leaves under ``bench/results/``."""
    return {
        "schema": 1, "started": started, "finished": finished, "argv": list(argv), "settings": settings,
        "machine": machine, "versions": versions, "engines": engines,
        "summary": [asdict(r) for r in rows], "runs": [asdict(r) for r in records], "table": table,
    }


def result_filename(started: str, commit: str | None) -> str:
    """``20261122T004000Z-bdd7406.json`` from an ISO UTC time stamp and the short git commit."""
    stamp = "".join(ch for ch in started if ch.isalnum())
    return f"{stamp}-{commit or 'nogit'}.json"


def write_results(directory: Path, payload: dict[str, Any], name: str) -> Path:
    """Write ``payload`` as ``directory/name`` atomically (a ``.tmp`` file renamed); never overwrites."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    n = 1
    while target.exists():
        target = directory / f"{Path(name).stem}-{n}{Path(name).suffix}"
        n += 1
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, target)
    return target
