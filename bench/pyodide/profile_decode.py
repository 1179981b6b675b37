"""Where a decoded token's time goes inside Pyodide: per kernel entry point vs Python.

Run with tests/pyodide/run_in_pyodide.mjs (the model in the global bytearray ``MODEL``)::

    node tests/pyodide/run_in_pyodide.mjs PYODIDE_DIR core build/wasm/libemberllm.so \
        bench/pyodide/profile_decode.py MODEL.gguf

Times are this process's CPU time under Node (other processes share the cores), wall time elsewhere.
Every function of the kernel library the model calls is wrapped in a timer (the wrapper's own cost, about one
``perf_counter`` pair, is measured and subtracted); prints one JSON line with ms per token for each entry point,
the kernel calls per token and Python's share of token time (the fastest untimed round's token time minus the
fastest timed rounds' time inside the kernel calls, ctypes argument conversion included; timed and untimed rounds
alternate, and minima resist the load of other processes), a direct measure of Python alone (the same decodes with
every kernel call a Python no-op, plus the calls' ctypes cost: ``python_and_calls_share``), and the prompt speed of
one PP_TOKENS-token decode.
"""

from __future__ import annotations

import json
import time
from typing import Any

from emberllm.runtime.model import Model


def _clock() -> Any:
    """This process's CPU time in seconds under Node (robust when other processes share the cores), else
    ``time.perf_counter``."""
    try:
        import js  # type: ignore[import-not-found]

        usage = js.process.cpuUsage
        usage()
    except (ImportError, AttributeError):
        return time.perf_counter

    def cpu_seconds() -> float:
        u = usage()
        return (u.user + u.system) / 1e6

    return cpu_seconds


CLOCK = _clock()
N_TOKENS = 8
ROUNDS = 5
PP_TOKENS = 256


class TimedLib:
    """Proxy for the kernel library that times every call by function name."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self.ms: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._lib, name)
        if not callable(fn):
            return fn
        ms, calls, clock = self.ms, self.calls, CLOCK

        def timed(*args: Any) -> Any:
            key = f"{name}[type {args[2]}, {args[3]} rows]" if name == "emb_matmul" else name
            t0 = clock()
            out = fn(*args)
            ms[key] = ms.get(key, 0.0) + (clock() - t0) * 1000.0
            calls[key] = calls.get(key, 0) + 1
            return out

        return timed


def timer_overhead_ms() -> float:
    """The cost of one empty timed region (two perf_counter calls and the dict updates), ms."""
    clock = CLOCK
    d: dict[str, float] = {}
    t0 = clock()
    for _ in range(20000):
        a = clock()
        d["x"] = d.get("x", 0.0) + (clock() - a)
    return (clock() - t0) * 1000.0 / 20000


model = Model(MODEL, n_ctx=320, n_threads=1)  # noqa: F821 - set by run_in_pyodide.mjs
backend = model.backend  # the profiler swaps the backend's kernel library for a timing (or a null) stand-in
seq = model.sequence
for i in range(4):  # warm-up
    model.decode([(seq, [10 + i])])
timed_lib = TimedLib(backend.lib)
plain: list[float] = []
per_round: list[dict[str, float]] = []
for rnd in range(ROUNDS):  # plain and timed rounds alternate; minima over rounds resist load from other processes
    for timed in (False, True):
        timed_lib.ms, timed_lib.calls = {}, {}
        backend.lib = timed_lib if timed else timed_lib._lib
        t0 = CLOCK()
        for i in range(N_TOKENS):
            model.decode([(seq, [(37 * i + rnd) % 1000 + 10])])
        if timed:
            per_round.append({name: ms / N_TOKENS for name, ms in timed_lib.ms.items()})
        else:
            plain.append((CLOCK() - t0) * 1000.0 / N_TOKENS)
backend.lib = timed_lib._lib
plain_ms = min(plain)
n_calls = sum(timed_lib.calls.values()) / N_TOKENS
over = timer_overhead_ms()
kernels = {name: round(min(r[name] for r in per_round) - over * timed_lib.calls[name] / N_TOKENS, 3)
           for name in sorted(per_round[-1], key=lambda nm: -per_round[-1][nm])}
in_c = sum(kernels.values())
# Python alone: the same decodes with every kernel call replaced by a Python no-op (no C, no ctypes), plus the
# ctypes cost of the calls a token makes (a real 7-argument call doing almost nothing: emb_rmsnorm of 1 value)
class NullLib:
    """Stands in for the kernel library: every function returns 0 at once."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: 0


backend.lib = NullLib()
null_ms = []
for rnd in range(ROUNDS):
    t0 = CLOCK()
    for i in range(N_TOKENS):
        model.decode([(seq, [(37 * i + rnd) % 1000 + 10])])
    null_ms.append((CLOCK() - t0) * 1000.0 / N_TOKENS)
backend.lib = timed_lib._lib
one = model.kernels.f32(2)
n_probe = 2000
t0 = CLOCK()
for _ in range(n_probe):
    backend.lib.emb_rmsnorm(backend.ctx, one.ptr, one.ptr, one.ptr, 1, 1, 1e-6)
call_us = (CLOCK() - t0) * 1e6 / n_probe
python_only_ms = min(null_ms)
python_and_calls_ms = python_only_ms + n_calls * call_us / 1000.0
pp_ms = []
for rnd in range(2):  # prompt processing: one decode of PP_TOKENS tokens from an empty cache
    seq.clear()
    t0 = CLOCK()
    model.decode([(seq, [(7 * i + rnd) % 1000 + 10 for i in range(PP_TOKENS)])])
    pp_ms.append((CLOCK() - t0) * 1000.0)
print(json.dumps({"pp_tokens": PP_TOKENS, "pp_tps": round(PP_TOKENS * 1000.0 / min(pp_ms), 1),
                  "level": model.kernel_level_name,
                  "clock": "cpu" if CLOCK is not time.perf_counter else "wall", "token_ms": round(plain_ms, 3),
                  "tg_tps": round(1000.0 / plain_ms, 2), "calls_per_token": n_calls,
                  "kernel_ms_per_token": kernels, "python_ms_per_token": round(plain_ms - in_c, 3),
                  "python_share": round((plain_ms - in_c) / plain_ms, 4),
                  "python_only_ms_per_token": round(python_only_ms, 3), "ctypes_call_us": round(call_us, 3),
                  "python_and_calls_share": round(python_and_calls_ms / plain_ms, 4)}))
