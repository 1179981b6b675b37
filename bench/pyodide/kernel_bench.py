"""Single-token matmul time per weight matrix and kernel level, inside Pyodide (or natively).

Run with bench/pyodide/run_script.mjs (the model in the global bytearray ``MODEL``)::

    node bench/pyodide/run_script.mjs --runtime node|chromium --model MODEL.gguf bench/pyodide/kernel_bench.py

For layer 0's matrices and the output matrix of the model, times ``emb_matmul`` of one token (the decode case) at
every kernel level the loaded module has (scalar, SIMD128, relaxed SIMD), alternating levels round by round and
keeping the fastest round, and checks that every level gives the scalar level's bits.  Prints one JSON line:
``{"levels": [...], "rows": [{"name", "type", "n_out", "n_in", "ms": {level: ms}, "same_bits": bool}],
"layer_ms": {level: ms per token for all layers' matrices}, "output_ms": {...}}``.
"""

from __future__ import annotations

import json
import random
import struct
import time
from typing import Any

from emberllm.runtime.model import Model

ROUNDS = 5


def _clock() -> Any:
    try:
        import js  # type: ignore[import-not-found]

        return js.performance.now
    except (ImportError, AttributeError):
        return lambda: time.perf_counter() * 1000.0


CLOCK = _clock()

model = Model(MODEL, n_ctx=64, n_threads=1)  # noqa: F821 - set by the runner
k = model.kernels
lib = k.lib
# optional globals set by a caller: KB_ONLY (a substring of the tensor names to time), KB_LEVELS (level names)
only = globals().get("KB_ONLY", "")
levels = [lv for lv in k.supported_levels() if k.level_name(lv) in globals().get("KB_LEVELS", [k.level_name(lv)])]
base = k.bytes_ref(model.gguf.buffer)
n_layers = sum(1 for name in model.gguf.tensors if name.endswith("attn_norm.weight"))
rng = random.Random(7)

rows = []
for name, info in model.gguf.tensors.items():
    if len(info.shape) != 2 or not (name.startswith("blk.0.") or name in ("output.weight", "token_embd.weight")):
        continue
    if only not in name:
        continue
    if name == "token_embd.weight" and "output.weight" in model.gguf.tensors:
        continue
    n_in, n_out = int(info.shape[0]), int(info.shape[1])
    ptr = base.ptr + info.offset
    x = bytearray(struct.pack(f"{n_in}f", *(rng.gauss(0.0, 1.0) for _ in range(n_in))))
    outs = {lv: bytearray(4 * n_out) for lv in levels}
    best = {lv: float("inf") for lv in levels}
    ctxs = {lv: lib.emb_ctx_new(1, lv) for lv in levels}
    try:
        for _ in range(ROUNDS if n_out * n_in < 50_000_000 else 3):
            for lv in levels:
                t0 = CLOCK()
                rc = lib.emb_matmul(ctxs[lv], ptr, info.ggml_type, n_out, n_in, k.bytes_ptr(x), 1,
                                    k.bytes_ptr(outs[lv]))
                best[lv] = min(best[lv], CLOCK() - t0)
                assert rc == 0, (name, lv, rc)
    finally:
        for c in ctxs.values():
            lib.emb_ctx_free(c)
    rows.append({"name": name, "type": info.ggml_type, "n_out": n_out, "n_in": n_in,
                 "ms": {k.level_name(lv): round(best[lv], 3) for lv in levels},
                 "same_bits": all(outs[lv] == outs[levels[0]] for lv in levels)})

layer = {k.level_name(lv): round(n_layers * sum(r["ms"][k.level_name(lv)] for r in rows
                                                if r["name"].startswith("blk.")), 2) for lv in levels}
output = {k.level_name(lv): sum(r["ms"][k.level_name(lv)] for r in rows if not r["name"].startswith("blk."))
          for lv in levels}
print(json.dumps({"levels": [k.level_name(lv) for lv in levels], "rows": rows, "layer_ms": layer,
                  "output_ms": output, "n_layers": n_layers}))
