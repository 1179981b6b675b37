// Service worker.  In a built site (build_site.py writes BUILD and SITE_HASH below) it keeps the files listed in
// site.json's "integrity" (the page, Pyodide's files, the wheel) in a Cache API cache named after the build, so
// that after the first visit the page starts with no network.  Any script of this origin can write to the Cache
// API, so nothing is served from it unchecked: every hit is hashed (SHA-256) against site.json, a bad entry is
// deleted and fetched again, and bytes that do not verify are never served.  site.json itself is checked against
// SITE_HASH; this script is stored by the browser outside the Cache API, out of page scripts' reach.
// Files not in "integrity" (models, the server's API) are never served from the cache.
// Navigations go to the network first (3 s); our cached index.html only when the network fails.  A page from
// the network that is not this build's index.html (another app on a reused localhost port, a newer deploy) is
// served as is, and its client's requests all go to the network: it is never given this build's files.
// The unbuilt web/ (`emberllm serve`; the build id is still a placeholder) caches nothing: its worker only deletes
// the caches of an earlier build on this origin.

const BUILD = "__EMBERLLM_BUILD__";
const SITE_HASH = "__EMBERLLM_SITE_HASH__";
const DEV = BUILD.startsWith("__");
const OURS = ["emberllm-app-", "emberllm-foreign-"]; // this worker's caches (models.js keeps "emberllm-models")
const CACHE = `${OURS[0]}${BUILD}`;
const FOREIGN = `${OURS[1]}${BUILD}`; // ids of the clients whose page is not this build's
const SCOPE = self.registration.scope;
const NAV_TIMEOUT_MS = 3000;
const DROPPED_HEADERS = ["content-encoding", "content-length"]; // the body is stored decoded
const WORKERS = ["worker", "sharedworker"];

let files = null; // Map(file name -> "sha256-..."), from the verified site.json, once loaded
let filesLoad = null; // the promise of it
let foreignLoad = null; // promise of the Set of foreign client ids

if (DEV) {
  self.addEventListener("install", () => self.skipWaiting());
  self.addEventListener("activate", (event) => event.waitUntil(dropCaches(() => true)));
} else {
  self.addEventListener("install", (event) => event.waitUntil(install()));
  self.addEventListener("activate", (event) => event.waitUntil(
    dropCaches((key) => key !== CACHE && key !== FOREIGN).then(() => self.clients.claim())));
  self.addEventListener("fetch", onFetch);
}

/** Delete the caches of this worker's builds (never the models' cache) that drop(key) selects. */
async function dropCaches(drop) {
  for (const key of await caches.keys()) {
    if (OURS.some((prefix) => key.startsWith(prefix)) && drop(key)) await caches.delete(key);
  }
}

/** Pre-cache site.json and every file it lists, each verified; any mismatch fails the install. */
async function install() {
  const cache = await caches.open(CACHE);
  const site = await fetchVerified("site.json", SITE_HASH);
  await cache.put(fileURL("site.json"), rebuild(site.resp, site.buf));
  await Promise.all([...integrityOf(site.buf)].map(async ([name, hash]) => {
    const { resp, buf } = await fetchVerified(name, hash);
    await cache.put(fileURL(name), rebuild(resp, buf));
  }));
  await self.skipWaiting();
}

function onFetch(event) {
  const req = event.request;
  if (req.method !== "GET" || !req.url.startsWith(SCOPE)) return;
  // not one of this build's files (a model, the server's API): the network, without this worker in the way
  if (files && !files.has(fileName(req.url)) && req.mode !== "navigate" && !WORKERS.includes(req.destination)) return;
  if (req.mode === "navigate") event.respondWith(navigate(event));
  else event.respondWith(serve(event));
}

/** A subresource: this build's verified file, or the network for other files and foreign clients. */
async function serve(event) {
  const req = event.request;
  const name = fileName(req.url);
  const [known, foreign] = await Promise.all([expected(), foreignClients()]);
  if (foreign.has(event.clientId)) {
    if (event.resultingClientId) await markForeign(event.resultingClientId); // a worker of a foreign page
    return revalidated(req);
  }
  const hash = known?.get(name);
  return hash ? verified(name, hash) : fetch(req);
}

/** A navigation: network first; the cached index.html when the network fails (or is slower than 3 s). */
async function navigate(event) {
  const name = fileName(event.request.url);
  const ours = name === "index.html" ? (await expected())?.get(name) : undefined;
  let resp;
  try {
    resp = await (ours ? withTimeout(revalidated(event.request), NAV_TIMEOUT_MS) : revalidated(event.request));
  } catch (err) {
    if (ours) return verified(name, ours);
    throw err;
  }
  if (resp.type === "opaqueredirect") return resp; // the target's navigation comes back here
  if (ours && resp.status === 200) {
    const buf = await resp.arrayBuffer();
    if (await sri(buf) !== ours) await markForeign(event.resultingClientId);
    return rebuild(resp, buf);
  }
  await markForeign(event.resultingClientId);
  return resp;
}

/** The cached file if it verifies, else the network's if that verifies (re-cached); else an error response. */
async function verified(name, hash) {
  const cache = await caches.open(CACHE);
  const key = fileURL(name);
  const hit = await cache.match(key);
  if (hit) {
    const buf = await hit.arrayBuffer();
    if (await sri(buf) === hash) return rebuild(hit, buf);
    console.warn(`[emberllm sw] ${name}: the cached copy fails its integrity check; fetching it again`);
    await cache.delete(key);
  }
  try {
    const { resp, buf } = await fetchVerified(name, hash);
    await cache.put(key, rebuild(resp, buf));
    return rebuild(resp, buf);
  } catch (err) {
    return new Response(`emberllm: ${err.message}\n`, { status: 502, statusText: "Integrity check failed",
      headers: { "content-type": "text/plain; charset=utf-8" } });
  }
}

/** ``name`` from the network, checked: {resp, buf}; throws when it cannot be fetched or does not verify. */
async function fetchVerified(name, hash) {
  let resp;
  try {
    resp = await fetch(fileURL(name), { cache: "no-store" });
  } catch (err) {
    throw new Error(`${name} is not cached (verified) and cannot be fetched: ${err.message}`);
  }
  const buf = await resp.arrayBuffer();
  if (resp.status !== 200 || await sri(buf) !== hash) {
    throw new Error(`${name} from the network (HTTP ${resp.status}) is not this build's (integrity ${hash})`);
  }
  return { resp, buf };
}

/** The integrity map (file name -> hash, site.json's own included), or null when site.json cannot be had. */
function expected() {
  filesLoad ??= (async () => {
    const resp = await verified("site.json", SITE_HASH);
    if (resp.status !== 200) throw new Error(await resp.text());
    files = integrityOf(await resp.arrayBuffer());
    return files;
  })().catch((err) => {
    filesLoad = null;
    console.warn("[emberllm sw] no verified site.json, so no cache:", err.message);
    return null;
  });
  return filesLoad;
}

function integrityOf(siteBuf) {
  const site = JSON.parse(new TextDecoder().decode(siteBuf));
  return new Map([["site.json", SITE_HASH], ...Object.entries(site.integrity ?? {})]);
}

/** The ids of foreign clients (kept in a cache too, since the browser stops idle service workers). */
function foreignClients() {
  foreignLoad ??= (async () => {
    const keys = await (await caches.open(FOREIGN)).keys();
    return new Set(keys.map((req) => new URL(req.url).searchParams.get("client")));
  })();
  return foreignLoad;
}

/** Remember that client ``id`` is not this build's page, forgetting clients that are gone. */
async function markForeign(id) {
  if (!id) return;
  const foreign = await foreignClients();
  foreign.add(id);
  const cache = await caches.open(FOREIGN);
  await cache.put(`${SCOPE}?client=${encodeURIComponent(id)}`, new Response(""));
  const alive = new Set((await self.clients.matchAll({ includeUncontrolled: true, type: "all" })).map((c) => c.id));
  for (const old of [...foreign].filter((c) => c !== id && !alive.has(c))) {
    foreign.delete(old);
    await cache.delete(`${SCOPE}?client=${encodeURIComponent(old)}`);
  }
}

/** The file name (relative to the scope, no query) that ``url`` asks for; the scope itself is index.html. */
function fileName(url) {
  const u = new URL(url);
  const name = decodeURIComponent((u.origin + u.pathname).slice(SCOPE.length));
  return name === "" ? "index.html" : name;
}

function fileURL(name) {
  return new URL(name, SCOPE).href;
}

/** A fresh response with ``buf`` as its body and ``resp``'s status and headers. */
function rebuild(resp, buf) {
  const headers = new Headers(resp.headers);
  for (const h of DROPPED_HEADERS) headers.delete(h);
  return new Response(buf, { status: resp.status, statusText: resp.statusText, headers });
}

async function sri(buf) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
  return `sha256-${btoa(String.fromCharCode(...digest))}`;
}

/** ``req`` from the network, revalidating what the HTTP cache holds (which may be an earlier app's file). */
function revalidated(req) {
  return fetch(new Request(req, { cache: "no-cache" }));
}

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), ms))]);
}
