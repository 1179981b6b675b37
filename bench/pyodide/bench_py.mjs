// The timed part of the emberllm-in-Pyodide runners (run_node.mjs, and worker.mjs for run_chromium.mjs):
// each test timed inside Python as ``emberllm bench`` does (core/cli/bench.py ``run_once``), after one warm-up.
// Every decode's last logits are read (``[-1]``), as ``emberllm bench`` does: on WebGPU ``decode`` only queues the
// work and returns lazy logits, so without the read the clock would stop before the GPU did; on the CPU it is a
// view of host memory, free.  Plain ES module with no Node or browser imports, so both runtimes load it.

// Python side: one test, timed with perf_counter inside Pyodide (no JS<->Python crossing in the loop).
export const RUN_TEST = `
import json as _json
import time as _time


def _ember_run_test(n_prompt, n_gen, prompt):
    model = _ember_api.model
    bos = model.tokenizer.bos_id
    seq = model.sequence
    seq.clear()
    out = {"n_prompt": n_prompt, "n_gen": n_gen, "prompt_n": 0, "prompt_ms": 0.0, "predicted_n": 0,
           "predicted_ms": 0.0}
    if n_prompt:
        ids = model.tokenize(prompt, add_special=True, parse_special=False)
        t0 = _time.perf_counter()
        model.decode([(seq, ids)])[-1]
        out["prompt_n"] = len(ids)
        out["prompt_ms"] = (_time.perf_counter() - t0) * 1000.0
    token = bos if bos is not None else 0
    if n_gen:
        model.decode([(seq, [token])])[-1]  # the first token: llama-server starts its clock after it
        calls0 = model.kernel_calls
        t0 = _time.perf_counter()
        for i in range(1, n_gen):
            model.decode([(seq, [token])])[-1]
            token = (token * 7919 + i) % model.hp.n_vocab
        out["predicted_n"] = n_gen
        out["predicted_ms"] = (_time.perf_counter() - t0) * 1000.0
        if n_gen > 1:  # Python -> C calls per decoded token (the kernels count them in their context)
            out["kernel_calls_per_token"] = (model.kernel_calls - calls0) / (n_gen - 1)
        if n_gen > 1:
            out["predicted_per_second"] = (n_gen - 1) * 1000.0 / out["predicted_ms"]
    return _json.dumps(out)


def _ember_info():
    model = _ember_api.model
    return _json.dumps({"kernels": model.kernel_level_name})
`;

/**
 * Run ``tests`` ([{n_prompt, n_gen, prompt}]) on the model loaded in ``engine`` (an EmberEngine); resolves to
 * ``{kernels, tests: [{n_prompt, n_gen, prompt_n, prompt_ms, predicted_n, predicted_ms, ...}]}``.  ``promising``:
 * enter each test through ``callPromising`` (a model on WebGPU awaits the GPU's results with JSPI); ``progress``:
 * called with a line after each warm-up and each timed test.
 */
export async function runTests(engine, tests, { promising = false, progress = null } = {}) {
  engine.py.runPython(RUN_TEST);
  const runTest = engine.py.globals.get('_ember_run_test');
  const infoFn = engine.py.globals.get('_ember_info');
  const call = (t) => (promising ? runTest.callPromising(t.n_prompt, t.n_gen, t.prompt || '')
    : runTest(t.n_prompt, t.n_gen, t.prompt || ''));
  try {
    const results = [];
    for (const test of tests) {
      const label = test.n_prompt && test.n_gen ? `pp${test.n_prompt}+tg${test.n_gen}`
        : test.n_prompt ? `pp${test.n_prompt}` : `tg${test.n_gen}`;
      JSON.parse(await call(test)); // warm-up, as emberllm bench does
      if (progress) progress(`${label} warmed up`);
      results.push(JSON.parse(await call(test)));
      if (progress) progress(`${label} done`);
    }
    return { kernels: JSON.parse(infoFn()).kernels, tests: results };
  } finally {
    runTest.destroy();
    infoFn.destroy();
  }
}
