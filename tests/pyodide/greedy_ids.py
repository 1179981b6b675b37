"""Greedy ids for the Gemma prompt inside Pyodide, the model read from the global bytearray ``MODEL``.

Prints ``IDS <id>...`` and a ``TIMING ...`` line (boot, wheel install, model load, tg t/s,
kernel calls, ctypes call cost).
"""

from __future__ import annotations

import time

from emberllm.runtime.model import Model

t0 = time.perf_counter()
model = Model(MODEL, n_ctx=64, n_threads=1)  # noqa: F821 - set by run_in_pyodide.mjs
t1 = time.perf_counter()
ids = []
stamps = []
calls0 = model.kernel_calls
for step in model.generate("The capital of France is", n_predict=8, temperature=0):
    ids.append(step.token)
    stamps.append(time.perf_counter())
calls = model.kernel_calls - calls0
tg = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
f = model.kernels.lib.emb_kernel_level_supported
c0 = time.perf_counter()
for _ in range(20000):
    f(0)
call_us = (time.perf_counter() - c0) / 20000 * 1e6
print("IDS", *ids)
print(f"TIMING boot_ms={BOOT_MS:.0f} install_ms={INSTALL_MS:.0f} load_ms={MODEL_LOAD_MS:.0f} "  # noqa: F821
      f"model_ms={(t1 - t0) * 1000:.0f} "
      f"first_token_ms={(stamps[0] - t1) * 1000:.0f} tg_tps={tg:.2f} kernel_calls={calls} ctypes_call_us={call_us:.2f}")
