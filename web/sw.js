// Service worker: keeps the app shell, Pyodide's files and the wheel (listed in site.json) in the Cache API so
// that after the first visit the page starts with no network.  Models are not cached here: they live in OPFS.
// build_site.py writes the build id below; an unbuilt web/ (served by `emberllm serve`) goes network-first.

const BUILD = "__EMBERLLM_BUILD__";
const DEV = BUILD.startsWith("__");
const CACHE = `emberllm-app-${BUILD}`;
const SHELL = ["./", "index.html", "style.css", "app.js", "engine-client.js", "features.js", "markdown.js",
  "models.js", "server-client.js", "storage.js", "worker.js", "manifest.webmanifest", "icon.svg"];
const NETWORK_ONLY = /\/(v1\/|props$|health$|slots$|metrics$|models\/)/;

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    let files = SHELL;
    try {
      const site = await (await fetch("site.json", { cache: "no-store" })).json();
      files = [...SHELL, "site.json", ...(site.precache || [])];
    } catch { /* no site.json: the bare web/ directory */ }
    await cache.addAll(files.map((f) => new Request(f, { cache: "no-store" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith("emberllm-app-") && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin || NETWORK_ONLY.test(url.pathname)) return;
  event.respondWith(DEV ? networkFirst(req) : cacheFirst(req));
});

async function cacheFirst(req) {
  const hit = await caches.match(req, { ignoreSearch: true, cacheName: CACHE });
  if (hit) return hit;
  const resp = await fetch(req);
  if (resp.ok && resp.status === 200) (await caches.open(CACHE)).put(req, resp.clone());
  return resp;
}

async function networkFirst(req) {
  try {
    const resp = await fetch(req);
    if (resp.ok && resp.status === 200) (await caches.open(CACHE)).put(req, resp.clone());
    return resp;
  } catch (err) {
    const hit = await caches.match(req, { ignoreSearch: true, cacheName: CACHE });
    if (hit) return hit;
    throw err;
  }
}
