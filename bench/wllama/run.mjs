// One timed wllama run in headless Chromium, for bench/compare.py.
//
//   node bench/wllama/run.mjs '{"npm_dir": "...", "model": "...gguf", "threads": 2, "n_ctx": 1024,
//     "tests": [{"n_prompt": 512, "n_gen": 0, "prompt": "text of 512 tokens"}, ...], "chromium": "/usr/bin/chromium"}'
//
// Serves page.html, wllama's esm/ folder and the model from 127.0.0.1 with COOP/COEP headers, drives
// Debian's Chromium with playwright-core (never a downloaded browser), and prints one JSON object:
// {load_ms, peak_rss_bytes, tests: [{n_prompt, n_gen, prompt_n, prompt_ms, predicted_n, predicted_ms, ...}], ...}
// peak_rss_bytes is the largest VmHWM of Chromium's renderer processes (the page and its workers).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { inside, runInChromium } from '../browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = JSON.parse(process.argv[2] || '{}');
const require = createRequire(path.join(args.npm_dir, 'package.json'));
const { chromium } = require('playwright-core');
const wllamaEsm = path.join(path.dirname(require.resolve('@wllama/wllama/package.json')), 'esm');

function resolvePath(urlPath) {
  if (urlPath === '/' || urlPath === '/index.html') return path.join(here, 'page.html');
  if (urlPath === '/model.gguf') return args.model;
  if (urlPath.startsWith('/wllama/')) return inside(wllamaEsm, urlPath.slice('/wllama/'.length));
  return null;
}

runInChromium({
  chromium, executablePath: args.chromium, resolvePath, name: 'wllama', timeoutS: args.timeout_s,
  params: { threads: args.threads, n_ctx: args.n_ctx || 1024, tests: args.tests, warmup_prompt: args.warmup_prompt || 'Hello' },
}).catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
