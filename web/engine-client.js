// The page's side of the in-browser engine: one Web Worker (worker.js) behind a small promise API.

export class EngineError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** The in-browser engine: ``boot()``, ``load(file, {nCtx, onProgress})``, ``chat(...)``, ``abort()``. */
export class LocalEngine {
  constructor(site) {
    this.site = site;
    this.worker = null;
    this.pending = new Map();
    this.nextId = 1;
    this.model = null;
    this.device = null;
  }

  _call(msg, handlers = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...handlers });
      this.worker.postMessage({ ...msg, id });
    });
  }

  _onMessage(event) {
    const msg = event.data;
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === "progress") p.onProgress?.(msg.loaded, msg.total);
    else if (msg.type === "token") p.onToken?.(msg.text);
    else if (msg.type === "prompt") p.onPrompt?.(msg.done, msg.total);
    else {
      this.pending.delete(msg.id);
      if (msg.type === "error") p.reject(new EngineError(msg.kind, msg.message));
      else p.resolve(msg);
    }
  }

  /** Start the worker and boot Pyodide with the wheel named in site.json. */
  async boot() {
    const base = new URL(".", location.href);
    this.worker = new Worker(new URL("worker.js", base), { type: "module" });
    this.worker.onmessage = (e) => this._onMessage(e);
    this.worker.onerror = (e) => {
      for (const p of this.pending.values()) p.reject(new EngineError("engine", e.message || "the engine worker failed"));
      this.pending.clear();
    };
    const msg = await this._call({
      type: "boot", engineURL: new URL(this.site.engine.module, base).href,
      indexURL: new URL(this.site.engine.indexURL, base).href, wheelURL: new URL(this.site.engine.wheel, base).href,
    });
    return msg.timings;
  }

  /** Load a File/Blob (GGUF) into the engine (``device``: "auto" | "webgpu" | "cpu"; ``nGpuLayers``: null for
   * all; ``cacheTypeK``/``cacheTypeV``: the KV cache types, as EmberEngine.load); resolves to the worker's message:
   * the model's ``info`` and ``device`` (what runs it, as EmberEngine.info()). */
  async load(file, { nCtx = 2048, onProgress, device = "auto", nGpuLayers = null, cacheTypeK = "f16",
    cacheTypeV = "f16" } = {}) {
    this.model = null;
    this.device = null;
    const msg = await this._call({ type: "load", file, nCtx, device, nGpuLayers, cacheTypeK, cacheTypeV },
      { onProgress });
    this.model = msg.info;
    this.device = msg.device;
    return msg;
  }

  /**
   * Stream a reply: ``onPrompt(done, total)`` while the prompt is read (tokens of the whole prompt in the cache;
   * at most every 100 ms, and once with done === total unless stopped before), then ``onToken(text)`` per piece of
   * text; resolves to {finishReason, timings} (timings: promptTokens, cachedTokens, promptTotal, promptMs,
   * evalTokens, evalMs, loadMs, droppedMessages: the oldest messages left out to fit the context, generatedTokens);
   * rejects with an EngineError (kind "context" when even the system prompt and the last message do not fit).
   * ``options``: nPredict, fitContext (default true), promptChunk / promptChunkMs (EmberEngine's), and sampling
   * (temperature, topK, topP, minP, repeatPenalty, seed, jsonSchema: a JSON schema, {} for any JSON object).
   */
  chat(messages, options, onToken, onPrompt) {
    return this._call({ type: "chat", messages, options }, { onToken, onPrompt });
  }

  abort() {
    this.worker?.postMessage({ type: "abort" });
  }

  /** Free the loaded model in the worker (the engine stays booted). */
  async unload() {
    if (!this.worker) return;
    await this._call({ type: "unload" });
    this.model = null;
    this.device = null;
  }
}
