// One timed run of emberllm inside Pyodide in headless Chromium (a module Web Worker), for bench/compare.py's
// ``emberllm-pyodide-chromium`` rows and, with ``extra.device`` "webgpu", its ``emberllm-pyodide-chromium-webgpu``
// row (and bench/gpu/run.py's).
//
//   node bench/pyodide/run_chromium.mjs '{"npm_dir": "...", "model": "...gguf", "threads": 1, "n_ctx": 528,
//     "tests": [...], "chromium": "/usr/bin/chromium", "extra": {"wheel": "build/pyodide/emberllm-....whl"}}'
//
// Serves page.html, worker.mjs and bench_py.mjs, pyodide_pkg/emberllm.mjs, the npm pyodide package, the wheel
// and the model from 127.0.0.1, drives Debian's Chromium with playwright-core (never a downloaded browser), and
// prints one JSON object as bench/README.md's runner contract says.  The tests are timed inside Python as in
// run_node.mjs (bench_py.mjs).  peak_rss_bytes is the largest VmHWM of Chromium's renderer processes (device
// memory in Chromium's GPU process is not in it).
// Pyodide has no threads: asked for more than one, it exits 2 saying so.  With ``extra.script`` (a .py path) it runs
// that script instead of the tests, with the model's bytes in the global ``MODEL``, and prints
// ``{"script_out": its stdout}`` (bench/pyodide/kernel_bench.py, profile_decode.py).
//
// WebGPU (``extra.device`` given and not "cpu"; compare.py's row passes ``"n_gpu_layers": 99, "device": "webgpu",
// "gpu_f16": null, "chromium_flags": ["--enable-unsafe-webgpu", ...], "fallback_flags": [...], "software_ok": true,
// "software_hint": "..."``): Chromium starts with ``extra.chromium_flags`` instead of ``--disable-gpu`` and, when
// the page finds no adapter that way (no usable Vulkan GPU), once more with ``extra.fallback_flags`` (default
// ``--disable-gpu --enable-unsafe-webgpu``: SwiftShader; [] for none; the result's ``first_attempt`` says why).
// The worker loads the model with ``{ device, nGpuLayers, gpuF16 }`` and enters each timed test through
// ``callPromising`` (the GPU's results are awaited with JSPI); the result adds ``device`` (``engine.info()``),
// ``kernels`` ("<adapter>, <f16|f32>, ngl N", as ``emberllm bench`` says it), ``gpu_stats`` and ``chromium_flags``.
// When the loader ran the model on the CPU (no adapter, no JSPI, an old loader), or on a software adapter without
// ``extra.software_ok``, the result is ``{"unavailable": why, "device": …}`` and no tests.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { inside, runInChromium } from '../browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = JSON.parse(process.argv[2] || '{}');
const require = createRequire(path.join(args.npm_dir, 'package.json'));
const { chromium } = require('playwright-core');
const root = path.resolve(here, '..', '..');
const extra = args.extra || {};
const wheel = path.resolve(root, extra.wheel || '');
const gpu = Boolean(extra.device) && extra.device !== 'cpu';

function pyodideDir() {
  const candidates = [
    extra.pyodide_dir,
    args.npm_dir && path.join(args.npm_dir, 'node_modules', 'pyodide'),
    path.join(process.env.EMBERLLM_CACHE || path.join(os.homedir(), '.cache', 'emberllm'), 'npm-pyodide',
      'node_modules', 'pyodide'),
  ];
  for (const dir of candidates) if (dir && fs.existsSync(path.join(dir, 'pyodide.mjs'))) return dir;
  throw new Error(`no npm pyodide package found (looked in ${candidates.filter(Boolean).join(', ')})`);
}
const pyodideRoot = pyodideDir();
const MOUNTS = { '/pyodide/': pyodideRoot, '/bench/': here, '/pkg/': path.join(root, 'pyodide_pkg') };

function resolvePath(urlPath) {
  if (urlPath === '/' || urlPath === '/index.html') return path.join(here, 'page.html');
  if (urlPath === '/model.gguf') return args.model;
  if (urlPath === '/script.py' && extra.script) return path.resolve(root, extra.script);
  if (urlPath === `/wheel/${path.basename(wheel)}`) return wheel;
  for (const [prefix, dir] of Object.entries(MOUNTS)) {
    if (urlPath.startsWith(prefix)) return inside(dir, urlPath.slice(prefix.length));
  }
  return null;
}

async function main() {
  if ((args.threads || 1) > 1) {
    console.error('n/a: no threads in Pyodide');
    process.exit(2);
  }
  if (!fs.existsSync(wheel) || !wheel.endsWith('.whl')) throw new Error(`no wheel: ${wheel}`);
  const tests = args.tests || [];
  const params = { wheel: path.basename(wheel), tests, kernels: extra.kernels || 'auto', script: Boolean(extra.script),
    n_ctx: args.n_ctx || Math.max(16, ...tests.map((t) => t.n_prompt + t.n_gen)) + 16 };
  if (gpu) {
    Object.assign(params, { device: extra.device, n_gpu_layers: extra.n_gpu_layers ?? 99, gpu_f16: extra.gpu_f16 ?? null,
      software_ok: extra.software_ok ?? true, software_hint: extra.software_hint || '' });
  }
  await runInChromium({
    chromium, executablePath: args.chromium, resolvePath, params, timeoutS: args.timeout_s,
    name: gpu ? 'emberllm-pyodide-chromium-webgpu' : 'emberllm-pyodide-chromium',
    // WebGPU: compare.py's CHROMIUM_WEBGPU_FLAGS; then SwiftShader, WebGPU on the CPU, when they give no adapter
    gpuFlags: gpu ? extra.chromium_flags || ['--enable-unsafe-webgpu'] : null,
    fallbackFlags: extra.fallback_flags === undefined ? ['--disable-gpu', '--enable-unsafe-webgpu'] : extra.fallback_flags,
  });
}

main().catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
