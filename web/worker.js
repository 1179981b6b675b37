// The in-browser engine's Web Worker: boots Pyodide with the emberllm wheel (pyodide_pkg/emberllm.mjs), loads a
// model from a File/Blob (on WebGPU or the CPU: load's device / nGpuLayers) and streams chat replies.  Generation
// is synchronous Python, so it never runs on the page's main thread.  Messages in: boot, load, chat, abort,
// unload; out: see engine-client.js.  A chat reads its prompt in pieces (progress out as "prompt" messages) and
// the worker turns to its messages between pieces and tokens, so an abort acts within one piece.

let engine = null;

self.onmessage = async (event) => {
  const msg = event.data;
  try {
    if (msg.type === "boot") await boot(msg);
    else if (msg.type === "load") await load(msg);
    else if (msg.type === "chat") await chat(msg);
    else if (msg.type === "abort") engine?.abort();
    else if (msg.type === "unload") { if (engine?.loaded) engine.unload(); self.postMessage({ type: "unloaded", id: msg.id }); }
  } catch (err) {
    self.postMessage({ type: "error", id: msg.id, ...describe(err) });
  }
};

async function boot({ id, engineURL, indexURL, wheelURL }) {
  const { EmberEngine } = await import(engineURL);
  engine = await EmberEngine.boot({ indexURL, wheelURL });
  self.postMessage({ type: "booted", id, timings: engine.timings });
}

async function load({ id, file, nCtx, device = "auto", nGpuLayers = null, cacheTypeK = "f16", cacheTypeV = "f16" }) {
  let last = 0;
  const t0 = performance.now();
  await engine.load(file, {
    nCtx, device, nGpuLayers, cacheTypeK, cacheTypeV,
    onProgress: (loaded, total) => {
      const now = performance.now();
      if (now - last > 100 || loaded === total) {
        last = now;
        self.postMessage({ type: "progress", id, loaded, total });
      }
    },
  });
  // device: what runs the model ({ device: "webgpu", adapter, precision, nGpuLayers, ... } or { device: "cpu",
  // kernels, message }: message says why WebGPU is not used when it was asked for)
  self.postMessage({ type: "loaded", id, info: engine.modelInfo(), device: engine.info(),
    loadMs: performance.now() - t0 });
}

// The prompt's progress goes out at most this often (and always when the prompt is read).
const PROMPT_MESSAGE_MS = 100;

async function chat({ id, messages, options }) {
  // The tokens sampled, as the server's usage.completion_tokens: evalTokens counts decodes, one fewer when the last
  // token ends the reply (it is never evaluated); a cancelled reply's last step has no token (-1).
  let generated = 0;
  let lastPrompt = -Infinity;
  // timings: engine.lastTimings() (promptTokens, cachedTokens, promptTotal, promptMs, evalTokens, evalMs, loadMs,
  // droppedMessages: how many of the oldest messages were left out to fit the context) + generatedTokens
  const done = (finishReason) => self.postMessage({ type: "done", id, finishReason,
    timings: { ...engine.lastTimings(), generatedTokens: generated } });
  for await (const step of engine.chat(messages, options)) {
    if ("promptDone" in step) {
      const now = performance.now();
      if (now - lastPrompt >= PROMPT_MESSAGE_MS || step.promptDone >= step.promptTotal) {
        lastPrompt = now;
        self.postMessage({ type: "prompt", id, done: step.promptDone, total: step.promptTotal });
      }
      continue;
    }
    if (step.token >= 0) generated++;
    if (step.text) self.postMessage({ type: "token", id, text: step.text });
    if (step.finishReason) { done(step.finishReason); return; }
  }
  done("stop");
}

// A Python exception's class before its message ("ValueError: ", "emberllm.gguf.reader.GGUFError: ").
const PY_EXCEPTION = /^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Warning|Interrupt|Exit): /;

/** An error as {kind, message}: the last line of a Python traceback without the exception's class, classified for
 * the page (kind "context": the conversation or prompt does not fit in the context). */
function describe(err) {
  const text = String(err && err.message ? err.message : err);
  const lines = text.trim().split("\n").filter((l) => l.trim());
  const message = (lines.length ? lines[lines.length - 1].trim() : text).replace(PY_EXCEPTION, "");
  let kind = "engine";
  if (/not a GGUF file|bad magic/i.test(text)) kind = "not-gguf";
  else if (/UnsupportedModelError|unsupported (architecture|tensor type)/i.test(text)) kind = "unsupported";
  else if (/truncated|corrupt|ended after|needs at least/i.test(text)) kind = "corrupt";
  else if ((err && err.constructor && err.constructor.name === "EmberModelTooLargeError") || /does not fit in wasm32|MemoryError|out of memory|Array buffer allocation failed|Cannot enlarge memory/i.test(text)) kind = "too-large";
  else if (/longer than the context|does not fit in the context|the context holds \d+/i.test(text)) kind = "context";
  return { kind, message };
}
