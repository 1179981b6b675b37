// One timed run of emberllm inside Pyodide in headless Chromium (a module Web Worker), for bench/compare.py.
//
//   node bench/pyodide/run_chromium.mjs '{"npm_dir": "...", "model": "...gguf", "threads": 1, "n_ctx": 528,
//     "tests": [...], "chromium": "/usr/bin/chromium", "extra": {"wheel": "pyodide_pkg/dist/emberllm-....whl"}}'
//
// Serves page.html, worker.mjs and bench_py.mjs, pyodide_pkg/emberllm.mjs, the npm pyodide package, the wheel
// and the model from 127.0.0.1, drives Debian's Chromium with playwright-core (never a downloaded browser), and
// prints one JSON object as bench/README.md's runner contract says.  The tests are timed inside Python as in
// run_node.mjs (bench_py.mjs).  peak_rss_bytes is the largest VmHWM of Chromium's renderer processes.
// Pyodide has no threads: asked for more than one, it exits 2 saying so.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = JSON.parse(process.argv[2] || '{}');
const require = createRequire(path.join(args.npm_dir, 'package.json'));
const { chromium } = require('playwright-core');
const root = path.resolve(here, '..', '..');
const wheel = path.resolve(root, (args.extra && args.extra.wheel) || '');

function pyodideDir() {
  const candidates = [
    args.extra && args.extra.pyodide_dir,
    args.npm_dir && path.join(args.npm_dir, 'node_modules', 'pyodide'),
    path.join(process.env.EMBERLLM_CACHE || path.join(os.homedir(), '.cache', 'emberllm'), 'npm-pyodide',
      'node_modules', 'pyodide'),
  ];
  for (const dir of candidates) if (dir && fs.existsSync(path.join(dir, 'pyodide.mjs'))) return dir;
  throw new Error(`no npm pyodide package found (looked in ${candidates.filter(Boolean).join(', ')})`);
}
const pyodideRoot = pyodideDir();
const MOUNTS = { '/pyodide/': pyodideRoot, '/bench/': here, '/pkg/': path.join(root, 'pyodide_pkg') };

const TYPES = { '.whl': 'application/zip', '.zip': 'application/zip', '.py': 'text/plain', '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.wasm': 'application/wasm', '.json': 'application/json', '.map': 'application/json' };

function resolvePath(urlPath) {
  if (urlPath === '/' || urlPath === '/index.html') return path.join(here, 'page.html');
  if (urlPath === '/model.gguf') return args.model;
  if (urlPath === '/favicon.ico') return null;
  if (urlPath === `/wheel/${path.basename(wheel)}`) return wheel;
  for (const [prefix, dir] of Object.entries(MOUNTS)) {
    if (!urlPath.startsWith(prefix)) continue;
    const file = path.normalize(path.join(dir, urlPath.slice(prefix.length)));
    return file.startsWith(dir + path.sep) ? file : null;
  }
  return null;
}

function serve(req, res) {
  const file = resolvePath(decodeURIComponent(new URL(req.url, 'http://x').pathname));
  const headers = {
    'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-store', 'Accept-Ranges': 'bytes',
  };
  let stat;
  try { stat = file && fs.statSync(file); } catch { stat = null; }
  if (!stat || !stat.isFile()) { res.writeHead(404, headers); res.end('not found'); return; }
  headers['Content-Type'] = TYPES[path.extname(file)] || 'application/octet-stream';
  let start = 0; let end = stat.size - 1; let status = 200;
  const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range || '');
  if (range) {
    if (range[1]) start = Number(range[1]);
    if (range[2]) end = Math.min(Number(range[2]), end);
    if (!range[1] && range[2]) { start = stat.size - Number(range[2]); end = stat.size - 1; }
    status = 206; headers['Content-Range'] = `bytes ${start}-${end}/${stat.size}`;
  }
  headers['Content-Length'] = String(end - start + 1);
  res.writeHead(status, headers);
  if (req.method === 'HEAD') { res.end(); return; }
  fs.createReadStream(file, { start, end }).pipe(res);
}

/** Largest VmHWM (bytes) among Chromium renderer processes descending from this Node process. */
function rendererPeakRss() {
  const parent = new Map();
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(Number(pid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* process ended */ }
  }
  const descends = (pid) => { for (let p = pid, i = 0; p > 1 && i < 64; p = parent.get(p), i++) if (p === process.pid) return true; return false; };
  let peak = null;
  for (const pid of parent.keys()) {
    if (pid === process.pid || !descends(pid)) continue;
    try {
      if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) continue;
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak ?? 0, Number(m[1]) * 1024);
    } catch { /* process ended */ }
  }
  return peak;
}

async function main() {
  if ((args.threads || 1) > 1) {
    console.error('n/a: no threads in Pyodide');
    process.exit(2);
  }
  if (!fs.existsSync(wheel) || !wheel.endsWith('.whl')) throw new Error(`no wheel: ${wheel}`);
  const server = http.createServer(serve);
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${server.address().port}/`;
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'emberllm-pyodide-chromium-'));
  let context;
  const killer = setTimeout(() => { console.error('emberllm-pyodide-chromium run timed out'); process.exit(3); }, (args.timeout_s || 900) * 1000);
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: args.chromium || '/usr/bin/chromium',
      headless: false, // the flag below picks new headless explicitly
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (msg) => console.error(`[page ${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
    await page.goto(url);
    await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60000 });
    const tests = args.tests || [];
    const result = await page.evaluate((p) => window.runBench(p), {
      wheel: path.basename(wheel), tests,
      n_ctx: args.n_ctx || Math.max(16, ...tests.map((t) => t.n_prompt + t.n_gen)) + 16,
    });
    result.peak_rss_bytes = rendererPeakRss();
    result.chromium = context.browser()?.version() ?? null;
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    clearTimeout(killer);
    if (context) await context.close().catch(() => {});
    server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
