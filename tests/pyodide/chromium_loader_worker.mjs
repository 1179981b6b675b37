// Module Web Worker for tests/test_pyodide.py: pyodide_pkg/emberllm.mjs in Chromium boots Pyodide, installs the
// wheel (with its relaxed-SIMD module), streams the model from a URL and returns the greedy ids, the tokens and
// the kernel level the loader chose.
//
// Message in: { wheel, model (URLs), prompt, kernels ("auto" | "simd128" | "relaxed") }.
// Message out: { ok, ids, tokens, level, relaxedWorks, error }.
import { EmberEngine, relaxedSimdWorks } from '/pkg/emberllm.mjs';

self.onmessage = async (event) => {
  const { wheel, model, prompt, kernels } = event.data;
  try {
    const origin = self.location.origin;
    const engine = await EmberEngine.boot({ indexURL: `${origin}/pyodide/`, wheelURL: `${origin}${wheel}`, kernels });
    await engine.load(`${origin}${model}`, { nCtx: 64 });
    const ids = [];
    for await (const step of engine.complete(prompt, { nPredict: 8, temperature: 0 })) {
      if (!('promptDone' in step)) ids.push(step.token); // not the prompt's progress steps
    }
    const tokens = engine.tokenize(prompt);
    const level = engine.py.runPython('_ember_api.model.kernel_level_name');
    engine.unload();
    self.postMessage({ ok: true, ids, tokens, level, relaxedWorks: relaxedSimdWorks() });
  } catch (err) {
    self.postMessage({ ok: false, error: err && err.stack ? err.stack : String(err) });
  }
};
