// What the browser runners share: a static file server with COOP/COEP headers and byte ranges, one headless
// Chromium page (Debian's binary, driven by playwright-core) that runs `window.runBench`, and the renderer's
// peak memory.  Each runner supplies its own page and a function mapping URL paths to files; a WebGPU run also
// its Chromium flags and the ones to retry with when the page finds no adapter.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.py': 'text/plain',
  '.wasm': 'application/wasm', '.json': 'application/json', '.map': 'application/json',
  '.whl': 'application/zip', '.zip': 'application/zip' };

/** A request handler serving the file `resolvePath(urlPath)` (null: 404), cross-origin isolated, with ranges. */
export function staticHandler(resolvePath) {
  return (req, res) => {
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
  };
}

/** `dir/rel` when it stays inside `dir` (no path traversal), else null. */
export function inside(dir, rel) {
  const file = path.normalize(path.join(dir, rel));
  return file.startsWith(dir + path.sep) ? file : null;
}

/** Largest VmHWM (bytes) among Chromium renderer processes descending from this Node process. */
export function rendererPeakRss() {
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

/** Every browser run's Chromium flags; `runInChromium` adds `--disable-gpu` or the caller's. */
export const BASE_FLAGS = ['--headless=new', '--no-sandbox', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** One Chromium with `flags` (a fresh profile) running the page at `url`: `window.runBench(params)`'s result. */
async function runPage({ chromium, executablePath, url, flags, params, name }) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), `emberllm-bench-${name}-`));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: executablePath || '/usr/bin/chromium',
      headless: false, // --headless=new in BASE_FLAGS picks new headless explicitly
      args: flags,
    });
    console.error(`chromium started: ${flags.join(' ')}`);
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (msg) => console.error(`[page ${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
    page.on('crash', () => console.error('[page crashed]'));
    await page.goto(url);
    await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60000 });
    const result = await page.evaluate((p) => window.runBench(p), params);
    result.peak_rss_bytes = rendererPeakRss();
    result.chromium = context.browser()?.version() ?? null;
    return result;
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

/**
 * Serve files with `resolvePath`, open the page in headless Chromium, wait for `window.benchReady`, run
 * `window.runBench(params)` and print its result (plus peak memory and the browser version) as one JSON line.
 * Chromium runs with `BASE_FLAGS` and `--disable-gpu`, or `BASE_FLAGS` and `gpuFlags` when given (the result then
 * says which in `chromium_flags`); when that page answers `no_adapter` and `fallbackFlags` is not empty, a second
 * Chromium with `BASE_FLAGS` and those runs it again (the result's `first_attempt` says why).  `timeoutS` bounds
 * it all: the process exits 3 saying "`name` run timed out".
 */
export async function runInChromium({ chromium, executablePath, resolvePath, params, name, timeoutS, gpuFlags = null,
  fallbackFlags = [] }) {
  const server = http.createServer(staticHandler(resolvePath));
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${server.address().port}/`;
  const killer = setTimeout(() => { console.error(`${name} run timed out`); process.exit(3); }, (timeoutS || 900) * 1000);
  const run = async (flags) => {
    const result = await runPage({ chromium, executablePath, url, flags: [...BASE_FLAGS, ...flags], params, name });
    if (gpuFlags) result.chromium_flags = [...BASE_FLAGS, ...flags];
    return result;
  };
  try {
    let result = await run(gpuFlags || ['--disable-gpu']);
    if (gpuFlags && result.no_adapter && fallbackFlags.length) {
      console.error(`no WebGPU adapter with ${gpuFlags.join(' ')} (${result.unavailable}): trying ${fallbackFlags.join(' ')}`);
      const first = { chromium_flags: result.chromium_flags, unavailable: result.unavailable };
      result = await run(fallbackFlags);
      result.first_attempt = first;
    }
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    clearTimeout(killer);
    server.close();
  }
}
