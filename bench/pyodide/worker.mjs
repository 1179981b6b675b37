// Web Worker for run_chromium.mjs: boots Pyodide (served from the npm package), installs the wheel, streams
// the model into the wasm heap with pyodide_pkg/emberllm.mjs and runs the tests (bench_py.mjs).  Generation
// is synchronous Python, so it runs here and never on the page's main thread.
// With ``p.device`` (WebGPU) the model loads with ``{ device, nGpuLayers, gpuF16 }``, each test is entered with
// callPromising (reading the GPU's results goes through JSPI) and progress lines go to the page.  When the model did
// not land on WebGPU, the result says why ({ unavailable, device }) instead of timing the CPU; so does a software
// adapter (SwiftShader) unless ``p.software_ok``.
import { EmberEngine } from '/pkg/emberllm.mjs';
import { runTests } from '/bench/bench_py.mjs';

const progress = (text) => self.postMessage({ progress: `${(performance.now() / 1000).toFixed(1)} s: ${text}` });

/** The WebGPU run: what runs the model, then the tests on it, or why not (the CPU never answers for WebGPU). */
async function runOnGpu(engine, p, common) {
  const done = (result) => { engine.unload(); return { ...common, has_navigator_gpu: Boolean(navigator.gpu), ...result }; };
  if (typeof engine.info !== 'function') {
    return done({ tests: [],
      unavailable: 'the Pyodide loader (pyodide_pkg/emberllm.mjs) has no engine.info() / nGpuLayers' });
  }
  const device = engine.info();
  progress(`device: ${JSON.stringify(device)}`);
  if (device.device !== 'webgpu') {
    return done({ device, tests: [], unavailable: device.message || `the model ran on ${device.device}, not WebGPU` });
  }
  if (device.software && !p.software_ok) {
    return done({ device, tests: [],
      unavailable: `skipped: software adapter (${device.adapter}); ${p.software_hint || 'not run'}` });
  }
  const { tests } = await runTests(engine, p.tests, { promising: true, progress });
  const gpuStats = JSON.parse(engine.api.gpu_stats ? engine.api.gpu_stats() : '{}');
  return done({ device, gpu_stats: gpuStats, tests,
    kernels: `${device.adapter}, ${device.precision}, ngl ${device.nGpuLayers}` });
}

self.onmessage = async (event) => {
  const p = event.data;
  try {
    const origin = self.location.origin;
    const engine = await EmberEngine.boot({ indexURL: `${origin}/pyodide/`, wheelURL: `${origin}/wheel/${p.wheel}`,
      kernels: p.kernels || 'auto' });
    const options = { nCtx: p.n_ctx };
    if (p.device) {
      progress('Pyodide booted, wheel installed');
      Object.assign(options, { device: p.device, nGpuLayers: p.n_gpu_layers });
      if (p.gpu_f16 !== null && p.gpu_f16 !== undefined) options.gpuF16 = Boolean(p.gpu_f16);
    }
    const t0 = performance.now();
    await engine.load(`${origin}/model.gguf`, options);
    const loadMs = performance.now() - t0;
    if (p.device) progress(`model loaded in ${(loadMs / 1000).toFixed(1)} s`);
    if (p.script) { // a Python script (extra.script) with the model's bytes in MODEL: its stdout is the result
      let out = '';
      engine.py.setStdout({ batched: (line) => { out += `${line}\n`; } });
      engine.py.globals.set('MODEL', engine.api.buf);
      await engine.py.runPythonAsync(await (await fetch(`${origin}/script.py`)).text());
      self.postMessage({ ok: true, result: { script_out: out, user_agent: navigator.userAgent } });
      return;
    }
    const common = { load_ms: loadMs, boot_ms: engine.timings.bootMs, install_ms: engine.timings.installMs,
      n_threads: 1, n_ctx: p.n_ctx, user_agent: navigator.userAgent };
    if (p.device) {
      self.postMessage({ ok: true, result: await runOnGpu(engine, p, common) });
      return;
    }
    const { kernels, tests } = await runTests(engine, p.tests);
    engine.unload();
    self.postMessage({ ok: true, result: { ...common, kernels, tests } });
  } catch (err) {
    self.postMessage({ ok: false, error: err && err.stack ? err.stack : String(err) });
  }
};
