// Web Worker for run_chromium_webgpu.mjs: boots Pyodide, installs the wheel, loads the model with WebGPU
// ({ device, nGpuLayers, gpuF16 } of pyodide_pkg/emberllm.mjs) and times each test inside Python as
// bench/pyodide/bench_py.mjs does (ppN = one decode of the prompt, tgN = N-1 timed single-token decodes after an
// untimed one, each test once as warm-up first), except that every decode's logits are brought to the host, as
// ``emberllm bench`` does: on WebGPU ``decode`` only queues the work and returns lazy logits, so without the read the
// clock would stop before the GPU did.  Reading back goes through JSPI, so every test is entered with
// callPromising.  When the model did not land on WebGPU, the result says why
// ({ unavailable, device }) instead of timing the CPU; so does a software adapter (SwiftShader) unless
// ``software_ok``.
import { EmberEngine } from '/pkg/emberllm.mjs';

// bench_py.mjs's RUN_TEST with ``[-1]`` after each decode (the last token's logits on the host: the GPU finished).
const RUN_TEST = `
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
        if n_gen > 1:
            out["kernel_calls_per_token"] = (model.kernel_calls - calls0) / (n_gen - 1)
            out["predicted_per_second"] = (n_gen - 1) * 1000.0 / out["predicted_ms"]
    return _json.dumps(out)
`;

const progress = (text) => self.postMessage({ progress: `${(performance.now() / 1000).toFixed(1)} s: ${text}` });

async function runTests(engine, tests, onGpu) {
  engine.py.runPython(RUN_TEST);
  const runTest = engine.py.globals.get('_ember_run_test');
  const call = (t) => (onGpu ? runTest.callPromising(t.n_prompt, t.n_gen, t.prompt || '')
    : runTest(t.n_prompt, t.n_gen, t.prompt || ''));
  try {
    const results = [];
    for (const test of tests) {
      const label = test.n_prompt && test.n_gen ? `pp${test.n_prompt}+tg${test.n_gen}`
        : test.n_prompt ? `pp${test.n_prompt}` : `tg${test.n_gen}`;
      JSON.parse(await call(test)); // warm-up, as emberllm bench does
      progress(`${label} warmed up`);
      results.push(JSON.parse(await call(test)));
      progress(`${label} done`);
    }
    return results;
  } finally {
    runTest.destroy();
  }
}

self.onmessage = async (event) => {
  const p = event.data;
  try {
    const origin = self.location.origin;
    const engine = await EmberEngine.boot({ indexURL: `${origin}/pyodide/`, wheelURL: `${origin}/wheel/${p.wheel}`,
      kernels: p.kernels || 'auto' });
    progress('Pyodide booted, wheel installed');
    const options = { nCtx: p.n_ctx, device: p.device, nGpuLayers: p.n_gpu_layers };
    if (p.gpu_f16 !== null && p.gpu_f16 !== undefined) options.gpuF16 = Boolean(p.gpu_f16);
    const t0 = performance.now();
    await engine.load(`${origin}/model.gguf`, options);
    const loadMs = performance.now() - t0;
    progress(`model loaded in ${(loadMs / 1000).toFixed(1)} s`);
    const common = { load_ms: loadMs, boot_ms: engine.timings.bootMs, install_ms: engine.timings.installMs,
      n_threads: 1, n_ctx: p.n_ctx, user_agent: navigator.userAgent, has_navigator_gpu: Boolean(navigator.gpu) };
    if (typeof engine.info !== 'function') {
      engine.unload();
      self.postMessage({ ok: true, result: { ...common, tests: [],
        unavailable: 'the Pyodide loader (pyodide_pkg/emberllm.mjs) has no engine.info() / nGpuLayers' } });
      return;
    }
    const device = engine.info();
    progress(`device: ${JSON.stringify(device)}`);
    if (device.device !== 'webgpu') {
      engine.unload();
      self.postMessage({ ok: true, result: { ...common, device, tests: [],
        unavailable: device.message || `the model ran on ${device.device}, not WebGPU` } });
      return;
    }
    if (device.software && !p.software_ok) {
      engine.unload();
      self.postMessage({ ok: true, result: { ...common, device, tests: [],
        unavailable: `skipped: software adapter (${device.adapter}); ${p.software_hint || 'not run'}` } });
      return;
    }
    const tests = await runTests(engine, p.tests, true);
    const gpuStats = JSON.parse(engine.api.gpu_stats ? engine.api.gpu_stats() : '{}');
    engine.unload();
    self.postMessage({ ok: true, result: { ...common, device, gpu_stats: gpuStats, tests,
      kernels: `${device.adapter}, ${device.precision}, ngl ${device.nGpuLayers}` } });
  } catch (err) {
    self.postMessage({ ok: false, error: err && err.stack ? err.stack : String(err) });
  }
};
