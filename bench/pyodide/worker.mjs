// Web Worker for run_chromium.mjs: boots Pyodide (served from the npm package), installs the wheel, streams
// the model into the wasm heap with pyodide_pkg/emberllm.mjs and runs the tests (bench_py.mjs).  Generation
// is synchronous Python, so it runs here and never on the page's main thread.
import { EmberEngine } from '/pkg/emberllm.mjs';
import { runTests } from '/bench/bench_py.mjs';

self.onmessage = async (event) => {
  const p = event.data;
  try {
    const origin = self.location.origin;
    const engine = await EmberEngine.boot({ indexURL: `${origin}/pyodide/`, wheelURL: `${origin}/wheel/${p.wheel}`,
      kernels: p.kernels || 'auto' });
    const t0 = performance.now();
    await engine.load(`${origin}/model.gguf`, { nCtx: p.n_ctx });
    const loadMs = performance.now() - t0;
    if (p.script) { // a Python script (extra.script) with the model's bytes in MODEL: its stdout is the result
      let out = '';
      engine.py.setStdout({ batched: (line) => { out += `${line}\n`; } });
      engine.py.globals.set('MODEL', engine.api.buf);
      await engine.py.runPythonAsync(await (await fetch(`${origin}/script.py`)).text());
      self.postMessage({ ok: true, result: { script_out: out, user_agent: navigator.userAgent } });
      return;
    }
    const { kernels, tests } = runTests(engine, p.tests);
    engine.unload();
    self.postMessage({ ok: true, result: {
      load_ms: loadMs, boot_ms: engine.timings.bootMs, install_ms: engine.timings.installMs, n_threads: 1,
      n_ctx: p.n_ctx, kernels, user_agent: navigator.userAgent, tests,
    } });
  } catch (err) {
    self.postMessage({ ok: false, error: err && err.stack ? err.stack : String(err) });
  }
};
