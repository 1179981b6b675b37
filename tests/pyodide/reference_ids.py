"""Greedy ids and top-10 probabilities for llama.cpp's reference prompts inside Pyodide.

The model is read from the global bytearray ``MODEL``; ``PROMPTS`` (a list of ``[prompt_token_ids, n]``) is
prepended by the test.  Prints one JSON line: ``[{"ids": [...], "probs": [{id: prob, ...} per step]}, ...]``.
"""

import json

from emberllm.runtime.model import Model

model = Model(MODEL, n_ctx=256, n_threads=1)  # noqa: F821 - set by run_in_pyodide.mjs
results = []
for prompt_ids, n in PROMPTS:  # noqa: F821 - prepended by the test
    model.sequence.clear()
    ids, probs = [], []
    for step in model.generate(list(prompt_ids), n_predict=n, temperature=0, n_probs=10, ignore_eos=True):
        ids.append(step.token)
        probs.append({str(t): p for t, p in step.extra["probs"]})
    results.append({"ids": ids, "probs": probs})
print(json.dumps(results))
