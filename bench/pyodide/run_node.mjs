// One timed run of emberllm inside Pyodide under Node, for bench/compare.py (contract: bench/README.md, "Runners").
//
//   node bench/pyodide/run_node.mjs '{"npm_dir": "...", "model": "...gguf", "threads": 1, "n_ctx": 528,
//     "tests": [{"n_prompt": 512, "n_gen": 0, "prompt": "text of 512 tokens"}, ...],
//     "extra": {"wheel": "build/pyodide/emberllm-....whl"}}'
//
// Boots Pyodide from the npm package (``npm_dir``'s node_modules/pyodide, else ``extra.pyodide_dir``, else
// ~/.cache/emberllm/npm-pyodide), installs the wheel and loads the model with pyodide_pkg/emberllm.mjs, then
// times the tests the way ``emberllm bench`` does (core/cli/bench.py ``run_once``): ppN is one
// ``arch.decode`` of the prompt's N tokens, tgN is N single-token decodes from an empty cache.  Timings use
// llama-server's names: ``predicted_ms`` covers ``predicted_n - 1`` decodes (the first decode is not timed),
// as wllama reports it.  Pyodide has no threads: asked for more than one, it exits 2 saying so.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { EmberEngine } from '../../pyodide_pkg/emberllm.mjs';
import { runTests } from './bench_py.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = JSON.parse(process.argv[2] || '{}');

function pyodideDir() {
  const extra = args.extra || {};
  const candidates = [
    extra.pyodide_dir,
    args.npm_dir && path.join(args.npm_dir, 'node_modules', 'pyodide'),
    path.join(process.env.EMBERLLM_CACHE || path.join(os.homedir(), '.cache', 'emberllm'), 'npm-pyodide',
      'node_modules', 'pyodide'),
  ];
  for (const dir of candidates) {
    if (dir && fs.existsSync(path.join(dir, 'pyodide.mjs'))) return dir;
  }
  throw new Error(`no npm pyodide package found (looked in ${candidates.filter(Boolean).join(', ')})`);
}

/** Peak resident set of this Node process (Pyodide runs in it), bytes. */
function peakRss() {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch { /* not Linux */ }
  return process.resourceUsage().maxRSS * 1024;
}

async function main() {
  const killer = setTimeout(() => { console.error('emberllm-pyodide run timed out'); process.exit(3); },
    (args.timeout_s || 900) * 1000);
  killer.unref();
  if ((args.threads || 1) > 1) {
    console.error('n/a: no threads in Pyodide');
    process.exit(2);
  }
  const wheel = path.resolve(args.extra?.wheel || '');
  if (!args.extra?.wheel || !fs.existsSync(wheel)) throw new Error(`no wheel: ${args.extra?.wheel}`);
  const tests = args.tests || [];
  const nCtx = args.n_ctx || Math.max(16, ...tests.map((t) => t.n_prompt + t.n_gen)) + 16;

  const engine = await EmberEngine.boot({ indexURL: pyodideDir(), wheelURL: wheel, kernels: args.extra?.kernels || 'auto' });
  const t0 = performance.now();
  await engine.load(args.model, { nCtx });
  const loadMs = performance.now() - t0;
  const { kernels, tests: results } = await runTests(engine, tests);
  const result = {
    load_ms: loadMs,
    boot_ms: engine.timings.bootMs,
    install_ms: engine.timings.installMs,
    peak_rss_bytes: peakRss(),
    n_threads: 1,
    n_ctx: nCtx,
    kernels,
    node: process.version,
    runner: path.relative(path.join(here, '..', '..'), fileURLToPath(import.meta.url)),
    tests: results,
  };
  engine.unload();
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
