// emberllm in Pyodide: boot, install the wheel, load a GGUF into the wasm heap, stream completions.
//
// Works in Node >= 20 and in a browser Web Worker (run it in a Worker: generation is synchronous Python and
// would block a page's main thread).  Everything comes from local files or URLs you give: no CDN.
//
//   import { EmberEngine } from "./emberllm.mjs";
//   const engine = await EmberEngine.boot({ indexURL: ".../node_modules/pyodide/", wheelURL: ".../emberllm-*.whl" });
//   await engine.load(source, { nCtx: 2048, onProgress: (loaded, total) => {} });  // URL | File/Blob | ArrayBuffer
//   for await (const step of engine.complete("The capital of France is", { nPredict: 8, temperature: 0 })) ...
//   for await (const step of engine.chat([{ role: "user", content: "Hi" }], { nPredict: 256 })) ...
//   engine.abort(); engine.lastTimings(); engine.tokenize("text"); engine.info(); engine.unload();
//   const vectors = await engine.embed(["a text", "another"], { pooling: "mean" });  // Model.embed
//
// Structured output: complete() and chat() take grammar (GBNF text, llama.cpp's dialect) or jsonSchema (a JSON
// schema object, converted to GBNF in Python by emberllm.grammar.json_schema; {} means any object), not both:
//   engine.chat(messages, { jsonSchema: { type: "object", properties: { city: { type: "string" } } } })
// A malformed grammar or a schema keyword the grammar cannot express throws naming it.
//
// Steps: { token, text, finishReason } per generated token (finishReason on the last: "stop", "length",
// "context" or "cancelled", the cancelled one with token -1), and while the prompt is read, after each piece (the
// first of promptChunk tokens, the next ones of about promptChunkMs: PROMPT_CHUNK, PROMPT_CHUNK_MS below) a
// progress step { token: -1, text: "", promptDone, promptTotal } (tokens of the prompt in the cache, reused ones
// included; the last has promptDone === promptTotal).  The stream yields to the event loop after every step, so
// abort() takes effect before the next piece or token; the prompt tokens read stay cached for the next request.
// chat() first fits the conversation into the context (fitContext, default true; emberllm.chat.fit): it keeps
// the system messages and the last user message, drops the oldest turns while the prompt plus a reply reserve
// (min(nPredict, nCtx / 4)) does not fit, and throws "the last message and system prompt take N tokens ...; the
// context holds M: shorten it or raise Context" when even those do not.  lastTimings(): { promptTokens (read),
// cachedTokens (reused), promptTotal, promptMs, evalTokens, evalMs, loadMs, droppedMessages }.
//
// Device: load(source, { device, nGpuLayers }) with device "auto" (default: WebGPU with every layer when
// navigator.gpu gives an adapter, else the CPU), "webgpu" (the CPU with a message when WebGPU is not usable) or
// "cpu"; nGpuLayers as llama.cpp's -ngl (the last N layers; default all).  engine.info() says what runs the model.
// WebGPU goes through pyodide_pkg/webgpu.mjs; GPU results are awaited with JSPI, so generation steps are entered
// with callPromising on that path (see core/backends/webgpu/browser.py).
//
// KV cache: load(source, { cacheTypeK, cacheTypeV }) as llama.cpp's -ctk/-ctv: "f16" (default), "q8_0" (about half
// the memory), "q4_0" (about a quarter) or "f32"; the 4 GiB check counts the cache in those types.  A cache other
// than f16 lives in wasm memory only: with device "auto" such a model runs on the CPU, with device "webgpu" load()
// throws (offloaded layers keep an f16 cache on the GPU).
//
// Kernels: the wheel's SIMD128 module, or its relaxed-SIMD one where the engine runs relaxed SIMD correctly
// (boot option ``kernels``: "auto" (default), "simd128", "relaxed"; see chooseKernelModule below).
//
// A model is streamed in chunks straight into a Python bytearray inside the wasm heap (one copy, never two
// whole ones), after checking that the model plus its KV cache fit under wasm32's 4 GiB.

import { openWebGpu } from "./webgpu.mjs";

const WASM32_LIMIT = 4 * 1024 ** 3;
/** KV cache types load() takes (llama.cpp's -ctk/-ctv names). */
export const KV_CACHE_TYPES = ["f16", "q8_0", "q4_0", "f32"];
const HEADROOM = 384 * 1024 ** 2; // Python, the runtime and activation buffers
const CHUNK = 8 * 1024 * 1024;
// The prompt is read in synchronous pieces, and abort() and the worker's messages wait for the piece in progress:
// the first piece holds PROMPT_CHUNK tokens, the next ones are sized to take about PROMPT_CHUNK_MS at the speed of
// the one before (on any device: a Stop acts within about that long; on WebGPU pieces grow to whole 512-token
// micro-batches).  Each piece costs a fixed extra (the weights' int8 unpacking: ~40 ms for Gemma 3 270M on one
// x86 core under Node), so short pieces read slower: 1,024 tokens of Gemma 3 270M under Node read at 81 t/s in
// pieces of 512 (7 s each), 78 t/s in pieces of 64 (1 s), 74 t/s in pieces of 32 and 71 t/s with these defaults
// (0.5-0.7 s; tests/pyodide/prompt_chunk_bench.mjs).  The logits do not depend on the pieces
// (emberllm.runtime.decoding.next_piece).
export const PROMPT_CHUNK = 32;
export const PROMPT_CHUNK_MS = 500;

const isNode = typeof process !== "undefined" && process.versions != null && process.versions.node != null;

export class EmberModelTooLargeError extends Error {}

export class EmberEngine {
  /** Boot Pyodide from ``indexURL`` (a local directory or same-origin URL) and install the emberllm wheel. */
  static async boot({ indexURL, wheelURL, extraPackages = [], loadPyodide = null, kernels = "auto" } = {}) {
    if (!indexURL || !wheelURL) throw new Error("EmberEngine.boot needs indexURL and wheelURL");
    if (isNode) {
      const v8 = await import("node:v8");
      v8.setFlagsFromString("--experimental-wasm-relaxed-simd"); // Node 20; harmless where it ships enabled
    }
    const base = indexURL.endsWith("/") ? indexURL : indexURL + "/";
    if (!loadPyodide) {
      const url = isNode && !/^[a-z]+:/.test(base) ? (await import("node:url")).pathToFileURL(base).href : base;
      ({ loadPyodide } = await import(new URL("pyodide.mjs", url).href));
    }
    const t0 = performance.now();
    const py = await loadPyodide({ indexURL: base });
    const tBoot = performance.now() - t0;
    await py.loadPackage([...extraPackages, wheelURL], { messageCallback: () => {} });
    chooseKernelModule(py, kernels);
    const gpuState = { driver: null, reason: "WebGPU was not requested" };
    py.registerJsModule("_emberllm_webgpu", gpuState); // read by emberllm.backends.webgpu.browser
    py.runPython(BOOTSTRAP);
    const engine = new EmberEngine(py, gpuState);
    engine.timings = { bootMs: tBoot, installMs: performance.now() - t0 - tBoot };
    return engine;
  }

  constructor(py, gpuState = { driver: null, reason: "" }) {
    this.py = py;
    this.api = py.globals.get("_ember_api");
    this._aborted = false;
    this.loaded = false;
    this._gpu = gpuState;
    this._onGpu = false; // calls that may read GPU results go through callPromising (JSPI)
  }

  /**
   * Load a GGUF model.  ``source``: a URL string (or a file path in Node), a File/Blob, an ArrayBuffer or a
   * Uint8Array.  ``onProgress(loadedBytes, totalBytes)`` is called per chunk.  ``device``: "auto" (WebGPU when
   * navigator.gpu gives an adapter, else the CPU), "webgpu" or "cpu"; ``nGpuLayers``: how many of the last layers
   * run on WebGPU (default: all; 0: none).  ``gpuF16``: false keeps the f32 kernels on an adapter with
   * shader-f16.  ``cacheTypeK``/``cacheTypeV``: the KV cache types (KV_CACHE_TYPES; not f16: the CPU runs the
   * model).  See info() for what was chosen.
   */
  async load(source, { nCtx = 2048, onProgress = null, device = "auto", nGpuLayers = null, gpuF16 = true,
    cacheTypeK = "f16", cacheTypeV = "f16" } = {}) {
    if (!DEVICES.includes(device)) throw new Error(`unknown device ${device}: expected one of ${DEVICES.join(", ")}`);
    for (const [name, t] of [["cacheTypeK", cacheTypeK], ["cacheTypeV", cacheTypeV]]) {
      if (!KV_CACHE_TYPES.includes(t)) {
        throw new Error(`unsupported ${name} ${JSON.stringify(t)}: valid types are ${KV_CACHE_TYPES.join(", ")}`);
      }
    }
    const f16Cache = cacheTypeK === "f16" && cacheTypeV === "f16";
    if (!f16Cache && device === "webgpu" && nGpuLayers !== 0) {
      throw new Error(`KV cache ${cacheTypeK}/${cacheTypeV} runs on the CPU only: use device "cpu" or "auto" ` +
        "(layers on WebGPU keep an f16 cache)");
    }
    if (nGpuLayers !== null && nGpuLayers !== undefined && !(Number.isInteger(nGpuLayers) && nGpuLayers >= 0)) {
      throw new Error(`nGpuLayers must be a layer count >= 0, got ${nGpuLayers}`);
    }
    if (this.loaded) this.unload();
    const wantGpu = device !== "cpu" && nGpuLayers !== 0 && f16Cache;
    if (wantGpu) await this._openGpu(gpuF16);
    const { size, chunks } = await openSource(source);
    this._checkFits(size, null, nCtx);
    const proxy = this.api.alloc(size);
    const buf = proxy.getBuffer("u8");
    let loaded = 0;
    try {
      for await (const chunk of chunks) {
        if (loaded + chunk.byteLength > size) throw new Error("model source is longer than its announced size");
        buf.data.set(chunk, buf.offset + loaded);
        loaded += chunk.byteLength;
        if (onProgress) onProgress(loaded, size);
      }
    } finally {
      buf.release();
      proxy.destroy();
    }
    if (loaded !== size) {
      this.api.free();
      throw new Error(`model source ended after ${loaded} of ${size} bytes`);
    }
    const kvBytes = this.api.kv_bytes(nCtx, cacheTypeK, cacheTypeV);
    try {
      this._checkFits(size, kvBytes, nCtx);
    } catch (err) {
      this.api.free();
      throw err;
    }
    // "auto" without a usable adapter is the CPU, silently; "webgpu" asks Python anyway, which says why not
    const pyDevice = !wantGpu ? "cpu" : this._gpu.driver || device === "webgpu" ? "webgpu" : "cpu";
    const ngl = nGpuLayers === null || nGpuLayers === undefined ? -1 : nGpuLayers;
    this._gpuReason = wantGpu && !this._gpu.driver ? this._gpu.reason : "";
    if (this._gpu.driver) {
      try {
        await this.api.open.callPromising(nCtx, ngl, pyDevice, cacheTypeK, cacheTypeV); // warm-up reads the GPU
      } catch (err) {
        // the device failed while the model went onto it (not a problem of the model): the CPU runs it
        const text = String(err && err.message ? err.message : err);
        const m = /(?:RuntimeError|GpuUnavailableError): (WebGPU.*)$/m.exec(text);
        if (!m) throw err;
        this._gpuReason = `it failed: ${m[1]}`;
        this.api.open(nCtx, ngl, "cpu", cacheTypeK, cacheTypeV);
      }
    } else {
      this.api.open(nCtx, ngl, pyDevice, cacheTypeK, cacheTypeV);
    }
    this.loaded = true;
    this._onGpu = this.api.on_gpu();
  }

  /** Open WebGPU (once; again after a model that used it was unloaded). */
  async _openGpu(f16) {
    const state = this._gpu;
    if (state.driver && !state.driver.destroyed && state.driver.f16Requested === Boolean(f16)) return;
    if (state.driver && !state.driver.destroyed) state.driver.destroy();
    const { driver, reason } = await openWebGpu({ f16 });
    if (driver) driver.f16Requested = Boolean(f16);
    state.driver = driver;
    state.reason = reason;
  }

  _checkFits(size, kvBytes, nCtx) {
    const need = size + (kvBytes ?? 0) + HEADROOM;
    if (need > WASM32_LIMIT) {
      const gib = (b) => (b / 1024 ** 3).toFixed(2);
      throw new EmberModelTooLargeError(
        `model (${gib(size)} GiB)` + (kvBytes != null ? ` + KV cache for ${nCtx} tokens (${gib(kvBytes)} GiB)` : "") +
          ` does not fit in wasm32's 4 GiB memory; use a smaller model` +
          (kvBytes != null ? " or nCtx, or a q8_0/q4_0 KV cache (cacheTypeK/cacheTypeV)" : ""));
    }
  }

  /** Token ids of ``text`` (with BOS, special tokens parsed), as the native engine gives. */
  tokenize(text, { addSpecial = true, parseSpecial = true } = {}) {
    this._needModel();
    const ids = this.api.tokenize(text, addSpecial, parseSpecial);
    try {
      return ids.toJs();
    } finally {
      ids.destroy();
    }
  }

  /** Stream a completion: yields ``{ token, text, finishReason }`` steps and, while the prompt is read, progress
   * steps ``{ token: -1, text: "", promptDone, promptTotal }`` after each piece of the prompt (the first of
   * ``promptChunk`` tokens, the next ones of about ``promptChunkMs`` milliseconds; ``promptChunkMs: 0``: every
   * piece of ``promptChunk`` tokens).  Sampling as chat()'s. */
  async *complete(prompt, { nPredict = 128, stop = [], promptChunk = PROMPT_CHUNK, promptChunkMs = PROMPT_CHUNK_MS,
    ...sampling } = {}) {
    yield* this._stream(() => this.api.start_complete(prompt, nPredict, samplingJSON(sampling), stop,
      promptChunk, promptChunkMs));
  }

  /**
   * Stream a chat reply to ``messages`` ([{role, content}]).  With jinja2 (extraPackages) the model's own
   * template renders the prompt; without it, the jinja-free built-in of the template's family
   * (``emberllm.chat.plain``).  With ``fitContext`` (default) the oldest turns are left out while the prompt and
   * a reply reserve (min(nPredict, nCtx / 4)) do not fit (lastTimings().droppedMessages says how many); it throws
   * when the system prompt and the last message alone do not.  Steps as complete()'s.  Sampling: temperature,
   * topK, topP, minP, repeatPenalty, seed, grammar (GBNF text), jsonSchema (a JSON schema object).
   */
  async *chat(messages, { nPredict = 256, fitContext = true, promptChunk = PROMPT_CHUNK,
    promptChunkMs = PROMPT_CHUNK_MS, ...sampling } = {}) {
    yield* this._stream(() => this.api.start_chat(JSON.stringify(messages), nPredict, samplingJSON(sampling),
      Boolean(fitContext), promptChunk, promptChunkMs));
  }

  /**
   * Embeddings as ``Model.embed`` (llama-embedding's): ``texts`` is a string, an array of token ids, or an array of
   * those; one vector per text (a string gives its one vector, an array an array), or with ``pooling: "none"`` one
   * vector per token.  ``pooling``: "none", "mean", "cls" or "last" (default: the model's, else "none");
   * ``normalize`` as ``--embd-normalize`` (default 2: L2; -1: none).  Computed a micro-batch per step, yielding to
   * the event loop between steps.
   */
  async embed(texts, { pooling = null, normalize = 2 } = {}) {
    this._needModel();
    const gen = this.api.start_embed(JSON.stringify(texts), pooling || "", normalize);
    try {
      while (true) {
        const out = this._onGpu ? await this.api.next_step.callPromising(gen) : this.api.next_step(gen);
        if (typeof out === "string") return JSON.parse(out);
        if (out === undefined || out === null) throw new Error("embed: the engine stopped without a result");
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    } finally {
      gen.destroy();
    }
  }

  /** Timings of the last generation: ``{ promptTokens, cachedTokens, promptTotal, promptMs, evalTokens, evalMs,
   * loadMs, droppedMessages }`` (promptTokens: read this time; cachedTokens: reused from the previous request;
   * promptTotal: the whole prompt; after a cancel during the read, promptTokens counts what was read). */
  lastTimings() {
    return JSON.parse(this.api.timings());
  }

  /** What the loaded model is: ``{ architecture, name, finetune, sizeBytes, nParams, chatFamily, hasChatTemplate,
   * kernels }`` (hasChatTemplate: whether the GGUF carries one, a base model's usually does not; kernels: the level
   * running it, "wasm-relaxed" or "wasm-simd128"). */
  modelInfo() {
    this._needModel();
    return JSON.parse(this.api.info());
  }

  /**
   * What runs the loaded model: ``{ device: "webgpu", adapter, precision ("f32" | "f16"), nGpuLayers, nLayers,
   * kernels, message }`` or ``{ device: "cpu", kernels ("wasm-relaxed" | "wasm-simd128"), nGpuLayers: 0, nLayers,
   * message }``; ``message`` says why WebGPU is not used when it was asked for (or what was offloaded); both carry
   * ``kvCache``: the K and V cache types, e.g. ``["q8_0", "q8_0"]``.
   */
  info() {
    this._needModel();
    const out = JSON.parse(this.api.device_info());
    if (out.device === "cpu" && !out.message && this._gpuReason) {
      out.message = `WebGPU is not available (${this._gpuReason}): running all layers on the CPU`;
    }
    return out;
  }

  async *_stream(start) {
    this._needModel();
    this._aborted = false;
    const gen = start();
    try {
      while (true) {
        if (this._aborted) {
          this.api.cancel();
        }
        const step = this._onGpu ? await this.api.next_step.callPromising(gen) : this.api.next_step(gen);
        if (step === undefined || step === null) break;
        const out = step.toJs({ dict_converter: Object.fromEntries });
        step.destroy();
        yield out;
        if (out.finishReason) break;
        await new Promise((resolve) => setTimeout(resolve, 0)); // let abort() and messages in
      }
    } finally {
      gen.destroy();
    }
  }

  /** Stop the generation in progress after the current token or prompt piece (it ends with finishReason
   * "cancelled"; the prompt tokens read so far stay cached for the next request). */
  abort() {
    this._aborted = true;
  }

  /** Free the model and its memory (the engine stays booted). */
  unload() {
    this.api.free();
    this.loaded = false;
  }

  _needModel() {
    if (!this.loaded) throw new Error("no model loaded: call load() first");
  }
}

// --- Kernel module choice: SIMD128 (libemberllm.so, preloaded by the installer) or relaxed SIMD
// (libemberllm_relaxed.wasm in the wheel, not preloaded: a module using relaxed SIMD fails to compile where it is
// missing, e.g. Safari).  ``kernels`` of EmberEngine.boot: "auto" (relaxed when the engine runs it right),
// "simd128", or "relaxed" (an error where it does not work).

// A module computing i32x4.relaxed_dot_i8x16_i7x16_add_s((-1) x 16, 2 x 16, 0) and returning lane 0: -8 as
// standardised.  Node 20's V8 11.3 has a pre-standard version (other operand unsigned, eight products per lane)
// that gives something else, so validating the opcode alone is not enough.
const RELAXED_DOT_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, // export "f"
  0x0a, 0x40, 0x01, 0x3e, 0x00, // code: one body of 62 bytes, no locals
  0xfd, 0x0c, ...new Array(16).fill(0xff), // v128.const i8x16 -1
  0xfd, 0x0c, ...new Array(16).fill(0x02), // v128.const i8x16 2
  0xfd, 0x0c, ...new Array(16).fill(0x00), // v128.const 0
  0xfd, 0x93, 0x02, // i32x4.relaxed_dot_i8x16_i7x16_add_s
  0xfd, 0x1b, 0x00, // i32x4.extract_lane 0
  0x0b,
]);

/** Whether this engine runs relaxed SIMD's int8 dot product with the standard result. */
export function relaxedSimdWorks() {
  try {
    if (!WebAssembly.validate(RELAXED_DOT_PROBE)) return false;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(RELAXED_DOT_PROBE));
    return instance.exports.f() === -8;
  } catch {
    return false;
  }
}

/** Point the kernel binding at the relaxed-SIMD module when asked for and usable; returns the choice made. */
function chooseKernelModule(py, kernels) {
  if (!["auto", "simd128", "relaxed"].includes(kernels)) throw new Error(`unknown kernels option ${kernels}`);
  if (kernels === "simd128") return "simd128";
  const path = py.runPython(`
import os, emberllm
p = os.path.join(os.path.dirname(emberllm.__file__), "libemberllm_relaxed.wasm")
p if os.path.exists(p) else ""
`);
  const works = relaxedSimdWorks();
  if (kernels === "relaxed" && (!path || !works)) {
    throw new Error(path ? "this WebAssembly engine does not run relaxed SIMD correctly"
      : "the wheel has no relaxed-SIMD module (build it with a compiler that has -mrelaxed-simd)");
  }
  if (!path || !works) return "simd128";
  py.globals.set("_ember_relaxed_path", path);
  py.runPython("import os; os.environ['EMBERLLM_KERNELS_LIB'] = _ember_relaxed_path; del _ember_relaxed_path");
  return "relaxed";
}

const DEVICES = ["auto", "webgpu", "cpu"];

const SAMPLING_KEYS = { temperature: "temperature", topK: "top_k", topP: "top_p", minP: "min_p",
  repeatPenalty: "repeat_penalty", seed: "seed", grammar: "grammar", jsonSchema: "json_schema" };

/** Sampling options (camelCase, undefined ones left out) as the Python engine's keyword JSON. */
function samplingJSON({ temperature = 0.8, ...rest } = {}) {
  const d = { temperature };
  for (const [key, value] of Object.entries(rest)) {
    if (value === undefined || value === null) continue;
    if (!(key in SAMPLING_KEYS)) throw new Error(`unknown sampling option ${key}`);
    d[SAMPLING_KEYS[key]] = value;
  }
  return JSON.stringify(d);
}

async function openSource(source) {
  if (source instanceof ArrayBuffer) source = new Uint8Array(source);
  if (ArrayBuffer.isView(source)) {
    const bytes = new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
    return { size: bytes.byteLength, chunks: sliceChunks(bytes) };
  }
  if (typeof Blob !== "undefined" && source instanceof Blob) {
    return { size: source.size, chunks: blobChunks(source) };
  }
  if (typeof source === "string" && isNode && !/^https?:/.test(source)) {
    const fs = await import("node:fs");
    const path = source.startsWith("file:") ? new URL(source) : source;
    return { size: fs.statSync(path).size, chunks: fileChunks(fs, path) };
  }
  if (typeof source === "string") {
    const resp = await fetch(source);
    if (!resp.ok) throw new Error(`fetching ${source}: HTTP ${resp.status}`);
    const size = Number(resp.headers.get("content-length"));
    if (!size) throw new Error(`fetching ${source}: no Content-Length, cannot size the model buffer`);
    return { size, chunks: streamChunks(resp.body) };
  }
  throw new Error("model source must be a URL, a File/Blob, an ArrayBuffer or a Uint8Array");
}

async function* sliceChunks(bytes) {
  for (let off = 0; off < bytes.byteLength; off += CHUNK) yield bytes.subarray(off, off + CHUNK);
}

async function* blobChunks(blob) {
  for (let off = 0; off < blob.size; off += CHUNK) {
    yield new Uint8Array(await blob.slice(off, off + CHUNK).arrayBuffer());
  }
}

async function* fileChunks(fs, path) {
  const fd = fs.openSync(path, "r");
  try {
    const chunk = new Uint8Array(CHUNK);
    let pos = 0;
    while (true) {
      const n = fs.readSync(fd, chunk, 0, CHUNK, pos);
      if (n <= 0) break;
      pos += n;
      yield chunk.subarray(0, n);
    }
  } finally {
    fs.closeSync(fd);
  }
}

async function* streamChunks(body) {
  const reader = body.getReader();
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    yield value;
  }
}

// The Python side: one object holding the buffer, the model and the cancel flag.
const BOOTSTRAP = `
import json
from emberllm.chat.fit import fit_messages, reply_reserve
from emberllm.runtime.model import Model
from emberllm.gguf.reader import GGUFFile
from emberllm.backends.memory import kv_row_bytes


class _EmberApi:
    def __init__(self):
        self.buf = None
        self.model = None
        self.cancelled = False
        self.dropped = 0  # messages fit_messages left out of the last chat
        self.prompt_total = 0  # tokens of the last prompt

    def alloc(self, size):
        self.free()
        self.buf = bytearray(size)
        return self.buf

    def kv_bytes(self, n_ctx, type_k="f16", type_v="f16"):
        md = GGUFFile.from_buffer(self.buf).metadata
        arch = md.get("general.architecture", "")
        n_layer = int(md.get(f"{arch}.block_count", 0))
        n_head = int(md.get(f"{arch}.attention.head_count", 1) or 1)
        n_kv = int(md.get(f"{arch}.attention.head_count_kv", n_head) or n_head)
        emb = int(md.get(f"{arch}.embedding_length", 0))
        k_len = int(md.get(f"{arch}.attention.key_length", emb // n_head))
        v_len = int(md.get(f"{arch}.attention.value_length", k_len))
        # K and V rows of the cache types (kv_row_bytes: 2 bytes a value for f16, 34 per 32 for q8_0...)
        return n_layer * n_ctx * n_kv * (kv_row_bytes(type_k, k_len) + kv_row_bytes(type_v, v_len))

    def open(self, n_ctx, n_gpu_layers, device, type_k="f16", type_v="f16"):
        self.model = Model(self.buf, n_ctx=n_ctx, n_threads=1, device=device,
                           n_gpu_layers=None if n_gpu_layers < 0 else n_gpu_layers, cache_type_k=type_k,
                           cache_type_v=type_v)

    def on_gpu(self):
        return self.model is not None and self.model.gpu_backend is not None

    def device_info(self):
        m = self.model
        n_layers = m.decoder.hp.n_layer
        out = {"kernels": m.kernel_level_name, "nLayers": n_layers, "message": m.offload_message,
               "kvCache": list(m.cache_types)}
        if m.gpu_backend is None:
            return json.dumps({"device": "cpu", "nGpuLayers": 0, **out})
        gpu = m.gpu_backend.device
        return json.dumps({"device": "webgpu", "adapter": gpu.adapter_name, "precision": m.gpu_backend.precision,
                           "software": gpu.is_software, "nGpuLayers": len(m.decoder.device_layers), **out})

    def gpu_stats(self):
        b = self.model.gpu_backend
        if b is None:
            return "{}"
        d = b.device
        return json.dumps({"dispatches": b.calls, "bytesRead": b.bytes_read,
                           "jsCalls": getattr(d, "js_calls", 0), "runs": getattr(d, "runs", 0)})

    def free(self):
        if self.model is not None:
            self.model.close()
        self.model = None
        self.buf = None

    def tokenize(self, text, add_special, parse_special):
        return self.model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def _steps(self, steps):
        self.cancelled = False
        for s in steps:
            if s.token < 0 and s.finish_reason is None:
                yield {"token": -1, "text": "", "promptDone": s.extra["prompt_done"],
                       "promptTotal": s.extra["prompt_total"]}
            else:
                yield {"token": s.token, "text": s.text, "finishReason": s.finish_reason}

    def _generate(self, tokens, n_predict, stop, sampling, chunk, chunk_ms):
        self.prompt_total = len(tokens)
        kw = json.loads(sampling)
        if "json_schema" in kw and kw.get("grammar"):
            raise ValueError("grammar, jsonSchema: give one of them, not both")
        return self._steps(self.model.generate(tokens, n_predict=n_predict, stop=stop, prompt_progress=True,
                                               prompt_chunk=chunk or None, prompt_chunk_ms=chunk_ms or None,
                                               cancel=lambda: self.cancelled, **kw))

    def start_complete(self, prompt, n_predict, sampling, stop, chunk, chunk_ms):
        self.dropped = 0
        tokens = self.model.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        return self._generate(tokens, n_predict, list(stop), sampling, chunk, chunk_ms)

    def _render(self, msgs):
        """Prompt text and stop strings: the model's template with jinja2 (extraPackages), else the plain built-in
        of its family (Pyodide's core has no jinja2)."""
        try:
            import jinja2  # noqa: F401
        except ImportError:
            from emberllm.chat.plain import plain_prompt

            return plain_prompt(self.model.gguf.metadata, msgs)
        return self.model.apply_chat_template(msgs), [s for s in self.model.chat_template.stop_strings if s]

    def start_chat(self, messages, n_predict, sampling, fit_context, chunk, chunk_ms):
        m = self.model
        msgs = json.loads(messages)
        ids_of = {}  # the tokens of each candidate, by its length (each fit candidate has another)

        def count(kept):
            ids_of[len(kept)] = m.tokenize(self._render(kept)[0])
            return len(ids_of[len(kept)])

        self.dropped = 0
        if fit_context:
            fit = fit_messages(count, msgs, m.n_ctx, reply_reserve(n_predict, m.n_ctx))
            msgs, self.dropped = fit.messages, fit.dropped
        prompt, stops = self._render(msgs)
        ids = ids_of.get(len(msgs)) or m.tokenize(prompt)
        return self._generate(ids, n_predict, stops, sampling, chunk, chunk_ms)

    def start_embed(self, texts, pooling, normalize):
        from emberllm.runtime.embedding import split_inputs

        items, single = split_inputs(json.loads(texts))
        inputs = [self.model.tokenize(t) if isinstance(t, str) else t for t in items]
        steps = self.model.embed_steps(inputs, pooling or None, normalize)
        while True:
            try:
                yield next(steps)
            except StopIteration as stop:
                yield json.dumps(stop.value[0] if single else stop.value)
                return

    def timings(self):
        t = self.model.timings
        return json.dumps({"promptTokens": t.prompt_tokens, "promptMs": t.prompt_ms, "evalTokens": t.eval_tokens,
                           "evalMs": t.eval_ms, "cachedTokens": t.cached_tokens, "loadMs": t.load_ms,
                           "promptTotal": self.prompt_total, "droppedMessages": self.dropped})

    def info(self):
        from emberllm.chat.plain import plain_family

        md = self.model.gguf.metadata
        n_params = sum(t.n_elements for t in self.model.gguf.tensors.values())
        return json.dumps({"architecture": md.get("general.architecture"), "name": md.get("general.name"),
                           "finetune": md.get("general.finetune"), "sizeBytes": len(self.buf), "nParams": n_params,
                           "chatFamily": plain_family(md), "hasChatTemplate": bool(md.get("tokenizer.chat_template")),
                           "kernels": self.model.kernel_level_name})

    def cancel(self):
        self.cancelled = True

    def next_step(self, gen):
        return next(gen, None)


_ember_api = _EmberApi()
`;
