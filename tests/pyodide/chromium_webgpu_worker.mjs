// Module Web Worker for tests/test_pyodide_webgpu.py: pyodide_pkg/emberllm.mjs in Chromium with a device choice.
// Boots Pyodide with the wheel, loads the model from a URL with { device, nGpuLayers }, and returns the greedy ids,
// the tokens, engine.info(), the generation timings and the WebGPU counters; with ``cpuToo`` it then reloads the
// model on the CPU and runs the same prompt (ids and timings), for a side-by-side speed figure.
//
// Message in: { wheel, model (URLs), prompt, nPredict, device, nGpuLayers, cpuToo }.
// Message out: { ok, ids, tokens, info, timings, gpu, driver, loadMs, wallMs, cpu: { ids, timings, info, loadMs,
//   wallMs }, error }.
import { EmberEngine } from '/pkg/emberllm.mjs';

async function greedy(engine, prompt, nPredict) {
  const ids = [];
  for await (const step of engine.complete(prompt, { nPredict, temperature: 0 })) {
    if (!('promptDone' in step)) ids.push(step.token); // not the prompt's progress steps
  }
  return ids;
}

self.onmessage = async (event) => {
  const { wheel, model, prompt, nPredict, device, nGpuLayers = null, cpuToo = false } = event.data;
  try {
    const origin = self.location.origin;
    const engine = await EmberEngine.boot({ indexURL: `${origin}/pyodide/`, wheelURL: `${origin}${wheel}` });
    let t0 = performance.now();
    await engine.load(`${origin}${model}`, { nCtx: 64, device, nGpuLayers });
    const loadMs = performance.now() - t0;
    const info = engine.info();
    const driver = engine._gpu.driver;
    const before = driver && !driver.destroyed ? { ...driver.stats } : null;
    const statsBefore = JSON.parse(engine.api.gpu_stats());
    t0 = performance.now();
    const ids = await greedy(engine, prompt, nPredict);
    const wallMs = performance.now() - t0;
    const timings = engine.lastTimings();
    const statsAfter = JSON.parse(engine.api.gpu_stats());
    const after = driver && !driver.destroyed ? { ...driver.stats } : null;
    const gpu = Object.fromEntries(Object.keys(statsAfter).map((k) => [k, statsAfter[k] - statsBefore[k]]));
    const drv = after ? Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]])) : null;
    const tokens = engine.tokenize(prompt);
    const out = { ok: true, ids, tokens, info, timings, gpu, driver: drv, loadMs, wallMs };
    if (cpuToo) {
      t0 = performance.now();
      await engine.load(`${origin}${model}`, { nCtx: 64, device: 'cpu' });
      const loadCpuMs = performance.now() - t0;
      t0 = performance.now();
      const cpuIds = await greedy(engine, prompt, nPredict);
      out.cpu = { loadMs: loadCpuMs, info: engine.info(), ids: cpuIds, wallMs: performance.now() - t0,
        timings: engine.lastTimings() };
    }
    engine.unload();
    self.postMessage(out);
  } catch (err) {
    self.postMessage({ ok: false, error: err && err.stack ? err.stack : String(err) });
  }
};
