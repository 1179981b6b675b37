// Downloaded and opened models, kept in the browser: the Origin Private File System where it can be written
// from a page (Chromium, Firefox), the Cache API otherwise.  Also: the GGUF magic check and byte formatting.

const CACHE_NAME = "emberllm-models";
const CACHE_PREFIX = "/__emberllm_models__/";

/** A user-facing error with a title and what to do; ``kind`` lets the page and tests tell them apart. */
export class UserError extends Error {
  constructor(kind, title, message) {
    super(message);
    this.kind = kind;
    this.title = title;
  }
}

export function quotaError(bytes) {
  return new UserError("quota", "Browser storage is full",
    `Storing this model (${formatBytes(bytes)}) exceeds the storage this browser grants the page. Remove stored ` +
    "models under Models, free disk space, or open the file again without keeping it (it then loads from disk).");
}

export function notGgufError(name) {
  return new UserError("not-gguf", "Not a GGUF model",
    `"${name}" does not start with the GGUF signature. Choose a .gguf model file (for example a Q4_K_M ` +
    "quantization from a GGUF repository); safetensors, .bin and archives cannot be loaded.");
}

/** Whether ``bytes`` (the first 4 or more bytes of a file) carry the GGUF magic. */
export function isGguf(bytes) {
  return bytes.length >= 4 && bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46;
}

export function formatBytes(n) {
  if (!Number.isFinite(n)) return "?";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

/** A file-system-safe model name taken from a file name or URL. */
export function modelName(source) {
  let name = typeof source === "string" ? decodeURIComponent(new URL(source, location.href).pathname.split("/").pop())
    : source.name;
  name = (name || "model.gguf").replace(/[^\w.+-]+/g, "_").slice(-120);
  return name.toLowerCase().endsWith(".gguf") ? name : `${name}.gguf`;
}

function isQuota(err) {
  return err && (err.name === "QuotaExceededError" || /quota/i.test(String(err.message)));
}

/** Stored models: ``list()``, ``save(name, chunks, size, onProgress)``, ``file(name)``, ``remove(name)``. */
export class ModelStore {
  static async open() {
    const opfs = typeof navigator.storage?.getDirectory === "function" &&
      typeof globalThis.FileSystemFileHandle?.prototype?.createWritable === "function";
    if (opfs) {
      try {
        const root = await navigator.storage.getDirectory();
        return new ModelStore("OPFS", await root.getDirectoryHandle("models", { create: true }));
      } catch { /* private mode or disabled: fall back */ }
    }
    if (globalThis.caches) return new ModelStore("Cache API", null);
    return new ModelStore("none", null);
  }

  constructor(kind, dir) {
    this.kind = kind;
    this.dir = dir;
  }

  /** [{name, size}] of the complete stored models. */
  async list() {
    const out = [];
    if (this.dir) {
      for await (const [name, handle] of this.dir.entries()) {
        if (handle.kind !== "file" || name.endsWith(".part")) continue;
        out.push({ name, size: (await handle.getFile()).size });
      }
    } else if (this.kind === "Cache API") {
      const cache = await caches.open(CACHE_NAME);
      for (const req of await cache.keys()) {
        const resp = await cache.match(req);
        out.push({ name: decodeURIComponent(new URL(req.url).pathname.slice(CACHE_PREFIX.length)),
          size: Number(resp.headers.get("content-length")) || 0 });
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The stored model as a File/Blob, or null. */
  async file(name) {
    if (this.dir) {
      try {
        return await (await this.dir.getFileHandle(name)).getFile();
      } catch {
        return null;
      }
    }
    if (this.kind === "Cache API") {
      const resp = await (await caches.open(CACHE_NAME)).match(CACHE_PREFIX + encodeURIComponent(name));
      return resp ? await resp.blob() : null;
    }
    return null;
  }

  /**
   * Store ``chunks`` (an async iterable of Uint8Array, ``size`` bytes in all) as ``name``.  Written to a
   * ``.part`` file first, so an interrupted download never looks like a model.  Throws a quota UserError.
   */
  async save(name, chunks, size, onProgress) {
    if (this.kind === "none") throw new UserError("storage", "No browser storage", "This browser offers no storage for models.");
    if (navigator.storage?.estimate) {
      const { quota, usage } = await navigator.storage.estimate();
      if (quota && size && usage + size > quota) throw quotaError(size);
    }
    navigator.storage?.persist?.().catch(() => {});
    let written = 0;
    const counted = async function* () {
      for await (const chunk of chunks) {
        written += chunk.byteLength;
        if (onProgress) onProgress(written, size);
        yield chunk;
      }
    };
    try {
      if (this.dir) {
        const part = await this.dir.getFileHandle(`${name}.part`, { create: true });
        const writable = await part.createWritable();
        try {
          for await (const chunk of counted()) await writable.write(chunk);
          await writable.close();
        } catch (err) {
          await writable.abort().catch(() => {});
          throw err;
        }
        await this.remove(name);
        await part.move(name);
      } else {
        const stream = ReadableStream.from ? ReadableStream.from(counted()) : iterToStream(counted());
        const headers = { "content-type": "application/octet-stream", "content-length": String(size) };
        await (await caches.open(CACHE_NAME)).put(CACHE_PREFIX + encodeURIComponent(name), new Response(stream, { headers }));
      }
    } catch (err) {
      await this.remove(`${name}.part`).catch(() => {});
      if (isQuota(err)) throw quotaError(size);
      throw err;
    }
  }

  async remove(name) {
    if (this.dir) {
      try {
        await this.dir.removeEntry(name);
      } catch { /* not there */ }
    } else if (this.kind === "Cache API") {
      await (await caches.open(CACHE_NAME)).delete(CACHE_PREFIX + encodeURIComponent(name));
    }
  }
}

function iterToStream(iter) {
  const it = iter[Symbol.asyncIterator]();
  return new ReadableStream({
    async pull(controller) {
      const { done, value } = await it.next();
      if (done) controller.close(); else controller.enqueue(value);
    },
  });
}

/** Chunks of a Blob/File (8 MiB each). */
export async function* blobChunks(blob, chunk = 8 * 1024 * 1024) {
  for (let off = 0; off < blob.size; off += chunk) yield new Uint8Array(await blob.slice(off, off + chunk).arrayBuffer());
}

/** Fetch ``url`` for download: {size, chunks}; checks the HTTP status, the size and the GGUF magic. */
export async function openDownload(url, signal) {
  let resp;
  try {
    resp = await fetch(url, { signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new UserError("network", "Download failed",
      `Could not fetch ${url} (${err.message}). Check the address and your connection; the server must allow ` +
      "cross-origin requests (CORS) when it is not this site.");
  }
  if (!resp.ok) {
    throw new UserError("network", "Download failed", `${url} answered HTTP ${resp.status}. Check the address.`);
  }
  const size = Number(resp.headers.get("content-length")) || 0;
  const reader = resp.body.getReader();
  const first = await reader.read();
  if (first.done || !isGguf(first.value)) {
    reader.cancel().catch(() => {});
    throw notGgufError(modelName(url));
  }
  async function* chunks() {
    yield first.value;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  }
  return { size, chunks: chunks() };
}
