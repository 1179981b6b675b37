// One timed run of emberllm inside Pyodide in headless Chromium with WebGPU, for bench/compare.py's
// ``emberllm-pyodide-chromium-webgpu`` row and bench/gpu/run.py.
//
//   node bench/gpu/run_chromium_webgpu.mjs '{"npm_dir": "...", "model": "...gguf", "threads": 1, "n_ctx": 528,
//     "tests": [...], "chromium": "/usr/bin/chromium", "extra": {"wheel": "build/pyodide/emberllm-....whl",
//     "n_gpu_layers": 99, "device": "webgpu", "gpu_f16": null, "chromium_flags": ["--enable-unsafe-webgpu", ...],
//     "fallback_flags": ["--disable-gpu", "--enable-unsafe-webgpu"], "software_ok": true, "software_hint": "..."}}'
//
// As bench/pyodide/run_chromium.mjs (same server, files and JSON contract; bench/README.md "Runners"), except:
// Chromium starts with ``extra.chromium_flags`` and without ``--disable-gpu`` and, when the worker finds no adapter
// that way (no usable Vulkan GPU), once more with ``extra.fallback_flags`` (default ``--disable-gpu
// --enable-unsafe-webgpu``: SwiftShader; [] for none; the result's ``first_attempt`` says why); the worker (bench/gpu/worker.mjs)
// loads the model with ``{ device, nGpuLayers, gpuF16 }``, reads every decode's logits back (else the clock stops
// before the GPU does) and enters each timed test through ``callPromising`` (the GPU's results are awaited with
// JSPI); the result adds ``device`` (``engine.info()``), ``kernels``
// ("<adapter>, <f16|f32>, ngl N", as ``emberllm bench`` says it) and ``gpu_stats``.  When the loader ran the model
// on the CPU (no adapter, no JSPI, an old loader), or on a software adapter without ``extra.software_ok``, the
// result is ``{"unavailable": why, "device": …}`` and no tests.
// peak_rss_bytes is the largest renderer VmHWM (device memory in Chromium's GPU process is not in it).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { inside, rendererPeakRss, staticHandler } from '../browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = JSON.parse(process.argv[2] || '{}');
const extra = args.extra || {};
const require = createRequire(path.join(args.npm_dir, 'package.json'));
const { chromium } = require('playwright-core');
const root = path.resolve(here, '..', '..');
const wheel = path.resolve(root, extra.wheel || '');
// The runner's usual flags less --disable-gpu; then the WebGPU ones (compare.py's CHROMIUM_WEBGPU_FLAGS).
const BASE_FLAGS = ['--headless=new', '--no-sandbox', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const GPU_FLAGS = extra.chromium_flags || ['--enable-unsafe-webgpu'];
// Tried when GPU_FLAGS give no adapter (Chromium without a usable Vulkan GPU): SwiftShader, WebGPU on the CPU.
const FALLBACK_FLAGS = extra.fallback_flags === undefined ? ['--disable-gpu', '--enable-unsafe-webgpu']
  : extra.fallback_flags;

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
const MOUNTS = { '/pyodide/': pyodideDir(), '/gpu/': here, '/pkg/': path.join(root, 'pyodide_pkg') };

function resolvePath(urlPath) {
  if (urlPath === '/' || urlPath === '/index.html') return path.join(here, 'page.html');
  if (urlPath === '/model.gguf') return args.model;
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
  const params = {
    wheel: path.basename(wheel), tests, kernels: extra.kernels || 'auto', device: extra.device || 'webgpu',
    n_gpu_layers: extra.n_gpu_layers ?? 99, gpu_f16: extra.gpu_f16 ?? null,
    software_ok: extra.software_ok ?? true, software_hint: extra.software_hint || '',
    n_ctx: args.n_ctx || Math.max(16, ...tests.map((t) => t.n_prompt + t.n_gen)) + 16,
  };
  const server = http.createServer(staticHandler(resolvePath));
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const killer = setTimeout(() => { console.error('emberllm-pyodide-chromium-webgpu run timed out'); process.exit(3); },
    (args.timeout_s || 900) * 1000);
  try {
    let result = await runOnce(server, [...BASE_FLAGS, ...GPU_FLAGS], params);
    if (result.no_adapter && FALLBACK_FLAGS && FALLBACK_FLAGS.length) {
      console.error(`no WebGPU adapter with ${GPU_FLAGS.join(' ')} (${result.unavailable}): trying ${FALLBACK_FLAGS.join(' ')}`);
      const first = { chromium_flags: result.chromium_flags, unavailable: result.unavailable };
      result = await runOnce(server, [...BASE_FLAGS, ...FALLBACK_FLAGS], params);
      result.first_attempt = first;
    }
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    clearTimeout(killer);
    server.close();
  }
}

/** One Chromium with ``flags`` (fresh profile) running the page; the worker's result with the browser's facts. */
async function runOnce(server, flags, params) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'emberllm-bench-webgpu-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: args.chromium || '/usr/bin/chromium', headless: false, args: flags,
    });
    console.error(`chromium started: ${flags.join(' ')}`);
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (msg) => console.error(`[page ${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
    page.on('crash', () => console.error('[page crashed]'));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60000 });
    console.error('page ready');
    const result = await page.evaluate((p) => window.runBench(p), params);
    result.peak_rss_bytes = rendererPeakRss();
    result.chromium = context.browser()?.version() ?? null;
    result.chromium_flags = flags;
    return result;
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
