// The chat page: conversations, settings, models, and the two engines (in-browser Web Worker or the server).
import { LocalEngine } from "./engine-client.js";
import { CATALOGUE, looksLikeBaseModel } from "./catalogue.js";
import { MarkdownStream, renderMarkdown } from "./markdown.js";
import {
  ModelStore, UserError, blobChunks, formatBytes, isGguf, modelName, notGgufError, openDownload,
} from "./models.js";
import { ServerEngine } from "./server-client.js";
import { DEFAULT_SETTINGS, Store, newConversation } from "./storage.js";
import { hasWasmSimd } from "./features.js";

const $ = (id) => document.getElementById(id);
const DEVICES = ["auto", "webgpu", "cpu"]; // Settings' "Run the model on" (EmberEngine.load's device)

const app = {
  store: null, models: null, settings: { ...DEFAULT_SETTINGS }, convs: [], current: null, site: null,
  local: null, localBoot: null, server: null, serverStatus: "none", mode: "local", busy: false, ready: false,
  modelName: null, download: null, simd: hasWasmSimd(), timings: {}, follow: true, toastTimer: null, stopAt: null,
  reading: null,
};
window.ember = app; // for debugging and the Playwright tests

// ------------------------------------------------------------------------------------------------ errors
const ADVICE = {
  corrupt: ["The model file is damaged or incomplete", "Download it again or choose the complete file."],
  unsupported: ["This model is not supported", "Choose a GGUF of a supported architecture and quantization (for " +
    "example Gemma 3, Llama or Qwen in Q4_K_M or Q8_0)."],
  "too-large": ["Model too large for the browser", "WebAssembly gets at most 4 GiB of memory: choose a smaller model " +
    "or quantization, lower Context or choose a smaller KV cache (q8_0, q4_0) in Settings, or use server mode."],
  context: ["The conversation is too long", "Start a new chat, or raise Context in Settings (the model reloads " +
    "with the new size)."],
  auth: ["The server needs an API key", "Enter the key the server was started with (--api-key) in Settings."],
  unreachable: ["Cannot reach the server", ""],
  "server-stream": ["The server's reply could not be read", "The server (or a proxy in front of it) sent something " +
    "that is not an event stream of chat chunks; its log says more. Send again to retry."],
  network: ["Network error", ""],
  server: ["The server reported an error", ""],
  engine: ["The engine reported an error", "Reload the page; if it happens again, try another model."],
  "no-simd": ["This browser lacks WebAssembly SIMD", "Use a current Chrome, Edge, Firefox or Safari (16.4+), or " +
    "switch to server mode."],
  "no-engine": ["The in-browser engine is not part of this deployment", "Build the site with " +
    "build_scripts/build_site.py (it adds Pyodide and the wheel), or use server mode."],
  webgpu: ["WebGPU is not available", "The model runs on the CPU (WASM SIMD) instead. Use a browser with WebGPU, " +
    "or choose Auto or CPU under Settings."],
};

// The banner's button for the kinds that have one: [label, what it does]
const ERROR_ACTIONS = {
  auth: ["Open Settings", () => openSettings("set-api-key")],
  unreachable: ["Open Settings", () => openSettings("set-server-url")],
  context: ["Open Settings", () => openSettings("set-n-ctx")],
  "no-model": ["Open a model…", () => openModels()],
};

function showError(err, kindOverride) {
  const kind = kindOverride || err.kind || "engine";
  const [title, advice] = err instanceof UserError ? [err.title, ""] : (ADVICE[kind] || ADVICE.engine);
  $("error-title").textContent = title;
  $("error-text").textContent = [err.message, advice].filter(Boolean).join(" ");
  $("error").dataset.kind = kind;
  const action = ERROR_ACTIONS[kind];
  $("error-action").hidden = !action;
  $("error-action").textContent = action ? action[0] : "";
  $("error-action").onclick = action ? () => { clearError(); action[1](); } : null;
  $("error").hidden = false;
  console.warn(`[emberllm] ${kind}: ${err.message}`);
}

function clearError() {
  $("error").hidden = true;
}

/** A short notice at the bottom with one action (e.g. Undo) that goes away by itself. */
function toast(text, actionLabel, onAction, ms = 8000) {
  clearTimeout(app.toastTimer);
  $("toast-text").textContent = text;
  $("toast-action").textContent = actionLabel;
  $("toast-action").onclick = async () => { hideToast(); await onAction(); };
  $("toast").hidden = false;
  app.toastTimer = setTimeout(hideToast, ms);
}

function hideToast() {
  clearTimeout(app.toastTimer);
  $("toast").hidden = true;
}

// ------------------------------------------------------------------------------------------------ status
function setStatus(text, state) {
  $("status-text").textContent = text;
  if (state) document.body.dataset.state = state;
  const canChat = state === "ready";
  app.ready = canChat;
  $("prompt").disabled = !canChat && !app.busy;
  $("send").disabled = !canChat;
  if (canChat && app.timings.readyMs === undefined) app.timings.readyMs = performance.now();
  $("empty").hidden = app.current?.messages.length > 0;
  $("empty").classList.toggle("is-ready", canChat);
  $("empty").classList.toggle("server-mode", app.mode === "server");
  const auth = app.mode === "server" && app.serverStatus === "auth";
  $("empty-title").textContent = canChat ? "Ready when you are"
    : auth ? "This server needs an API key"
      : app.mode === "server" ? "Chat with the emberllm server" : "Chat offline, in your browser";
  $("auth-actions").hidden = !auth;
  if (!canChat) $("base-note").hidden = true;
}

function modelReadyStatus() {
  let base;
  if (app.mode === "server") {
    const p = app.server.props;
    setStatus(`Server · ${p?.model_alias || (p?.model_path || "model").split("/").pop()}`, "ready");
    base = p && !p.chat_template;
  } else {
    const info = app.local?.model;
    setStatus(`${app.modelName} · ${info?.architecture ?? ""} · ${deviceLabel(app.local?.device, info)}`, "ready");
    $("status-text").title = app.local?.device?.message || "";
    base = looksLikeBaseModel(info);
  }
  $("base-note").hidden = !base;
  $("base-note-models").hidden = app.mode === "server" || !hasLocalEngine();
}

/** Where the in-browser engine runs the model: "WebGPU · ADAPTER" (with the layer count when only some are
 * there) or "CPU (WASM relaxed SIMD)" / "CPU (WASM SIMD128)". */
function deviceLabel(dev, info) {
  if (dev?.device === "webgpu") {
    const part = dev.nGpuLayers < dev.nLayers ? ` (${dev.nGpuLayers}/${dev.nLayers} layers)` : "";
    return `WebGPU · ${dev.adapter}${part}`;
  }
  const kernels = dev?.kernels ?? info?.kernels;
  const simd = { "wasm-relaxed": "relaxed SIMD", "wasm-simd128": "SIMD128" }[kernels] || kernels || "SIMD";
  return `CPU (WASM ${simd})`;
}

function progress(title, loaded, total, t0, onCancel = null) {
  const box = $("progress-box");
  if (title === null) { box.hidden = true; return; }
  box.hidden = false;
  $("progress-title").textContent = title;
  $("progress").value = total ? loaded / total : 0;
  const secs = (performance.now() - t0) / 1000;
  const rate = loaded / Math.max(secs, 1e-3);
  const eta = total && loaded && secs > 0.3 ? ` · ${Math.ceil((total - loaded) / rate)} s left` : "";
  $("progress-detail").textContent = `${formatBytes(loaded)}${total ? ` of ${formatBytes(total)}` : ""}${eta}`;
  $("progress-cancel").hidden = !onCancel;
  $("progress-cancel").onclick = onCancel;
}

// ------------------------------------------------------------------------------------------------ models
/** Whether this deployment has the in-browser engine (a built site: site.json names Pyodide and the wheel). */
function hasLocalEngine() {
  return Boolean(app.site?.engine);
}

/** Offer opening/downloading models only where the in-browser engine can load them. */
function showLocalOptions() {
  const local = hasLocalEngine();
  $("empty-hint").hidden = !local;
  $("open-file").closest(".empty-actions").hidden = !local;
  $("empty-models").hidden = !local;
  $("models-local").hidden = !local;
  $("models-server").hidden = local;
}

async function ensureLocalEngine() {
  if (!hasLocalEngine()) {
    const why = app.site ? "site.json names no engine." : "site.json is missing.";
    throw Object.assign(new Error(why), { kind: "no-engine" });
  }
  if (!app.simd) throw Object.assign(new Error("WebAssembly SIMD128 is required."), { kind: "no-simd" });
  if (!app.localBoot) {
    app.local = new LocalEngine(app.site);
    const t0 = performance.now();
    app.localBoot = app.local.boot().then((t) => {
      app.timings.bootMs = performance.now() - t0;
      app.timings.pyodideMs = t.bootMs;
      app.timings.wheelMs = t.installMs;
      return t;
    });
    app.localBoot.catch(() => { app.localBoot = null; });
  }
  return app.localBoot;
}

/** Load a stored model into the in-browser engine. */
async function loadStored(name, { removeOnFailure = false } = {}) {
  const file = await app.models.file(name);
  if (!file) throw new UserError("missing", "Model not found", `${name} is no longer stored in this browser.`);
  const previous = app.modelName;
  let t0 = performance.now();
  try {
    setStatus("Starting the engine…", "loading");
    await ensureLocalEngine();
    app.modelName = null;
    t0 = performance.now();
    setStatus(`Loading ${name}…`, "loading");
    const msg = await app.local.load(file, {
      nCtx: app.settings.nCtx, device: DEVICES.includes(app.settings.device) ? app.settings.device : "auto",
      cacheTypeK: kvCacheType(), cacheTypeV: kvCacheType(),
      onProgress: (loaded, total) => progress(`Loading ${name}`, loaded, total, t0),
    });
    app.timings.loadMs = msg.loadMs;
    // WebGPU asked for by name but not usable: the CPU runs the model; say why (Auto falls back silently)
    if (app.settings.device === "webgpu" && msg.device?.device !== "webgpu") {
      showError(new Error(msg.device?.message || "WebGPU could not be used."), "webgpu");
    }
  } catch (err) {
    progress(null);
    if (removeOnFailure) await app.models.remove(name);
    showError(err);
    setStatus("No model loaded", "no-model");
    if (previous && previous !== name && await app.models.file(previous)) {
      await loadStored(previous).catch(() => {}); // keep the page usable with the model that worked
    }
    await renderModelLists();
    return false;
  }
  progress(null);
  app.modelName = name;
  await saveSettings({ lastModel: name });
  modelReadyStatus();
  await renderModelLists();
  return true;
}

/** Open a local file: check it, keep it in browser storage, load it. */
async function openFile(file) {
  if (!file) return;
  clearError();
  if (app.busy) return;
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  if (!isGguf(head)) {
    showError(notGgufError(file.name));
    return;
  }
  const name = modelName(file);
  const t0 = performance.now();
  try {
    setStatus(`Saving ${name}…`, "loading");
    await app.models.save(name, blobChunks(file), file.size,
      (loaded, total) => progress(`Saving ${name} in this browser`, loaded, total, t0));
  } catch (err) {
    progress(null);
    showError(err);
    setStatus("No model loaded", app.modelName ? "ready" : "no-model");
    if (app.modelName) modelReadyStatus();
    return;
  }
  progress(null);
  await loadStored(name, { removeOnFailure: true });
}

/** Download a model by URL into browser storage, then load it. */
async function openUrl(url) {
  clearError();
  let parsed;
  try {
    parsed = new URL(url, location.href);
  } catch {
    showError(new UserError("network", "Not a URL", `"${url}" is not a web address.`));
    return;
  }
  const name = modelName(parsed.href);
  const controller = new AbortController();
  const t0 = performance.now();
  try {
    setStatus(`Downloading ${name}…`, "loading");
    const { size, chunks } = await openDownload(parsed.href, controller.signal);
    await app.models.save(name, chunks, size,
      (loaded, total) => progress(`Downloading ${name}`, loaded, total, t0, () => controller.abort()));
  } catch (err) {
    progress(null);
    if (err.name !== "AbortError") showError(err);
    if (app.modelName) modelReadyStatus(); else setStatus("No model loaded", "no-model");
    return;
  }
  progress(null);
  await loadStored(name, { removeOnFailure: true });
}

async function renderModelLists() {
  const p = app.server?.props;
  $("models-server-model").hidden = !p;
  $("models-server-name").textContent = p ? p.model_alias || (p.model_path || "model").split("/").pop() : "";
  const stored = await app.models.list();
  for (const list of [$("model-list"), $("empty-models")]) {
    list.replaceChildren();
    for (const m of stored) {
      const li = document.createElement("li");
      const name = Object.assign(document.createElement("span"), { className: "model-name", textContent: m.name });
      const size = Object.assign(document.createElement("span"), { className: "model-size", textContent: formatBytes(m.size) });
      li.append(name, size);
      const loaded = m.name === app.modelName;
      const load = button(loaded ? "Loaded" : "Load", `Load ${m.name}`, async () => {
        $("models-dialog").close();
        clearError();
        await loadStored(m.name);
      });
      load.disabled = loaded || app.busy;
      li.append(load);
      if (list === $("model-list")) {
        const del = button("Remove", `Remove ${m.name} from this browser`, () => removeModel(m.name));
        del.disabled = loaded && app.busy;
        del.classList.add("btn-danger");
        li.append(del);
      }
      list.append(li);
    }
    if (!stored.length && list === $("model-list")) {
      list.append(Object.assign(document.createElement("li"), { className: "muted", textContent: "No models stored yet." }));
    }
  }
  renderCatalogue(stored);
  $("storage-kind").textContent = app.models.kind;
  if (navigator.storage?.estimate) {
    const { usage, quota } = await navigator.storage.estimate();
    $("storage-usage").textContent = `Using ${formatBytes(usage)} of ${formatBytes(quota)} available to this site.`;
  }
}

/** The recommended models, each with a Download (or Load, once stored) button. */
function renderCatalogue(stored) {
  const list = $("catalogue");
  list.replaceChildren();
  for (const entry of CATALOGUE) {
    const li = document.createElement("li");
    const text = Object.assign(document.createElement("span"), { className: "model-name" });
    text.append(entry.name, Object.assign(document.createElement("span"), { className: "model-licence",
      textContent: ` · ${entry.licence}` }));
    text.title = entry.url;
    const size = Object.assign(document.createElement("span"), { className: "model-size",
      textContent: formatBytes(entry.sizeBytes) });
    const name = modelName(entry.url);
    const have = stored.some((m) => m.name === name);
    const go = button(have ? "Load" : "Download", `${have ? "Load" : "Download"} ${entry.name}`, async () => {
      $("models-dialog").close();
      if (have) await loadStored(name); else await openUrl(entry.url);
    });
    go.disabled = app.busy || name === app.modelName;
    li.append(text, size, go);
    list.append(li);
  }
}

/** Remove a stored model; the loaded one is unloaded first, and the page then offers to open another. */
async function removeModel(name) {
  if (name === app.modelName) {
    if (app.busy) return;
    await app.local.unload();
    app.modelName = null;
    if (app.mode === "local") {
      setStatus("No model loaded", "no-model");
      showError(new UserError("no-model", "No model loaded",
        `${name} was removed. Open or download a model to chat.`));
    }
  }
  await app.models.remove(name);
  if (app.settings.lastModel === name) await saveSettings({ lastModel: null });
  await renderModelLists();
}

function button(text, label, onClick) {
  const b = Object.assign(document.createElement("button"), { type: "button", className: "btn btn-small", textContent: text });
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

// ------------------------------------------------------------------------------------------------ modes
async function setMode(mode, persist) {
  clearError();
  app.mode = mode;
  $("mode-toggle").checked = mode === "server";
  if (persist) await saveSettings({ mode });
  if (mode === "server") {
    if (app.serverStatus === "unreachable" && (app.serverStatus = await app.server.probe()) === "unreachable") {
      setStatus("Server unreachable", "error");
      showError(new Error(app.server.unreachableMessage()), "unreachable");
      return;
    }
    if (app.serverStatus === "auth" && !(await app.server.probe().then((s) => (app.serverStatus = s)) === "ok")) {
      setStatus("Server · API key needed", "error");
      showError(new Error("This server was started with --api-key."), "auth");
      return;
    }
    modelReadyStatus();
    return;
  }
  if (app.modelName && app.local?.model) { modelReadyStatus(); return; }
  try {
    setStatus("Starting the engine…", "loading");
    await ensureLocalEngine();
  } catch (err) {
    setStatus("In-browser engine unavailable", "error");
    showError(err);
    return;
  }
  const stored = await app.models.list();
  const last = app.settings.lastModel;
  if (last && stored.some((m) => m.name === last)) {
    await loadStored(last);
  } else if (app.site.model && !stored.some((m) => m.name === app.site.model.name)) {
    await openUrl(new URL(app.site.model.url, location.href).href);
  } else if (app.site.model) {
    await loadStored(app.site.model.name);
  } else {
    setStatus("Open a model to start", "no-model");
    await renderModelLists();
  }
}

// ------------------------------------------------------------------------------------------------ chat
function samplingOptions() {
  const s = app.settings;
  const o = { nPredict: s.maxTokens, temperature: s.temperature, topK: s.topK, topP: s.topP, minP: s.minP,
    repeatPenalty: s.repeatPenalty };
  if (s.seed >= 0) o.seed = s.seed;
  if (s.jsonOutput) o.jsonSchema = {}; // {}: any JSON object, as llama-server reads an empty json_schema
  return o;
}

async function send() {
  const text = $("prompt").value.trim();
  if (!text || app.busy || !app.ready) return;
  clearError();
  if (!app.current) await newChat();
  const conv = app.current;
  conv.messages.push({ role: "user", content: text });
  if (conv.title === "New chat") conv.title = text.replace(/\s+/g, " ").slice(0, 48);
  $("prompt").value = "";
  autoGrow();
  await respond(conv);
}

/** The messages the model sees: the system prompt (from Settings) and the conversation's good messages. */
function chatHistory(messages) {
  const history = messages.filter((m) => m.content && !m.error).map((m) => ({ role: m.role, content: m.content }));
  if (app.settings.systemPrompt.trim()) history.unshift({ role: "system", content: app.settings.systemPrompt.trim() });
  return history;
}

/** Generate the assistant's reply to the conversation as it stands, streaming it into a new message. */
async function respond(conv) {
  const reply = { role: "assistant", content: "", meta: null };
  const history = chatHistory(conv.messages);
  conv.messages.push(reply);
  conv.updated = Date.now();
  renderMessages();
  renderConversations();
  app.follow = true;
  scrollToEnd();
  const el = $("messages").lastElementChild;
  const engine = app.mode === "server" ? app.server : app.local;
  setBusy(true);
  const t0 = performance.now();
  let first = null;
  let pending = false;
  const stream = new MarkdownStream(el.querySelector(".content"));
  const paint = () => {
    pending = false;
    stream.update(reply.content);
    followScroll();
  };
  app.reading = null; // the last prompt-reading progress: { done, total } tokens
  const onPrompt = (done, total) => {
    app.reading = { done, total };
    showReading(el, done, total);
    followScroll();
  };
  app.stopAt = null;
  try {
    const result = await engine.chat(history, samplingOptions(), (piece) => {
      if (first === null) {
        first = performance.now() - t0;
        showReading(el, null);
      }
      reply.content += piece;
      if (!pending) { pending = true; requestAnimationFrame(paint); }
    }, onPrompt);
    reply.meta = { finishReason: result.finishReason, timings: result.timings, firstTokenMs: first,
      totalMs: performance.now() - t0, mode: app.mode, droppedMessages: result.timings?.droppedMessages || 0,
      promptDone: app.reading?.done, promptTotal: app.reading?.total,
      stopMs: app.stopAt === null ? undefined : performance.now() - app.stopAt };
  } catch (err) {
    reply.error = err.message;
    reply.meta = { finishReason: "error", mode: app.mode };
    showError(err);
  }
  showReading(el, null);
  conv.updated = Date.now();
  await app.store.putConversation(conv);
  setBusy(false);
  renderMessages();
  followScroll();
  if (app.mode === "server" || app.local?.model) modelReadyStatus();
}

/** The "reading the conversation" line of a reply whose prompt is being read (``done`` null: hide it). */
function showReading(el, done, total) {
  const box = el.querySelector(".reading");
  if (done === null || !total) { box.hidden = true; return; }
  box.hidden = false;
  box.querySelector("progress").value = done / total;
  box.querySelector("span").textContent =
    `Reading the conversation… ${done.toLocaleString("en")} / ${total.toLocaleString("en")} tokens`;
}

function setBusy(busy) {
  app.busy = busy;
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("new-chat").disabled = busy;
  document.body.classList.toggle("is-busy", busy);
  if (busy) {
    document.body.dataset.state = "busy";
    $("send").disabled = true;
  }
}

function stop() {
  if (!app.busy) return;
  app.stopAt = performance.now();
  (app.mode === "server" ? app.server : app.local).abort();
}

function speedLine(meta) {
  if (!meta) return "";
  const parts = [];
  const t = meta.timings;
  if (t) {
    const rate = (n, ms) => (ms > 0 ? (n * 1000 / ms).toFixed(1) : "–");
    if (t.promptTokens !== undefined) parts.push(`prompt ${t.promptTokens} tok · ${rate(t.promptTokens, t.promptMs)} t/s`);
    const generated = t.generatedTokens ?? t.evalTokens; // older stored replies have no generatedTokens
    if (generated !== undefined) parts.push(`generation ${generated} tok · ${rate(t.evalTokens, t.evalMs)} t/s`);
  }
  if (meta.firstTokenMs !== null && meta.firstTokenMs !== undefined) parts.push(`first token ${(meta.firstTokenMs / 1000).toFixed(2)} s`);
  if (meta.droppedMessages) {
    const n = meta.droppedMessages;
    parts.push(`${n} earlier message${n === 1 ? "" : "s"} left out to fit the context`);
  }
  const readPart = meta.promptDone !== undefined && meta.promptDone < meta.promptTotal;
  if (meta.finishReason === "cancelled" && readPart) {
    parts.push(`stopped while reading the conversation (${meta.promptDone.toLocaleString("en")} of ` +
      `${meta.promptTotal.toLocaleString("en")} tokens; the next message goes on from there)`);
  } else if (meta.finishReason === "cancelled") parts.push("stopped");
  else if (meta.finishReason === "length") parts.push("max tokens reached");
  if (meta.mode === "server") parts.push("server");
  return parts.join(" · ");
}

function renderMessage(el, m) {
  const content = el.querySelector(".content");
  if (m.role === "assistant") {
    renderMarkdown(m.content, content);
    if (m.error) {
      content.append(Object.assign(document.createElement("p"), { className: "error-text", textContent: m.error }));
    }
    el.dataset.state = m.meta ? (m.error ? "error" : "done") : "streaming";
    if (m.meta) el.dataset.finish = m.meta.finishReason;
    el.querySelector(".meta").textContent = speedLine(m.meta);
    if (m.meta?.firstTokenMs != null) el.dataset.firstTokenMs = String(Math.round(m.meta.firstTokenMs));
  } else {
    content.textContent = m.content;
  }
}

function renderMessages() {
  const list = $("messages");
  list.replaceChildren();
  const messages = app.current?.messages ?? [];
  const lastReply = messages.findLastIndex((m) => m.role === "assistant");
  messages.forEach((m, index) => {
    const li = document.createElement("li");
    li.className = `msg ${m.role}`;
    const label = Object.assign(document.createElement("span"), { className: "sr-only",
      textContent: m.role === "user" ? "You said:" : "Assistant:" });
    const content = Object.assign(document.createElement("div"), { className: "content" });
    const meta = Object.assign(document.createElement("div"), { className: "meta" });
    li.append(label, content);
    if (m.role === "assistant" && !m.meta) li.append(readingLine());
    li.append(meta);
    renderMessage(li, m);
    if (m.meta || m.role === "user") li.append(messageActions(li, m, index, index === lastReply));
    list.append(li);
  });
  $("empty").hidden = messages.length > 0;
}

function readingLine() {
  const box = Object.assign(document.createElement("div"), { className: "reading", hidden: true });
  box.append(document.createElement("span"), Object.assign(document.createElement("progress"), { max: 1, value: 0 }));
  box.querySelector("progress").setAttribute("aria-label", "Reading the conversation");
  return box;
}

/** Copy for every message; Edit for the user's; Regenerate for the last reply. */
function messageActions(li, m, index, isLastReply) {
  const bar = Object.assign(document.createElement("div"), { className: "msg-actions" });
  const copy = button("Copy", m.role === "user" ? "Copy your message" : "Copy the reply", async () => {
    try {
      await navigator.clipboard.writeText(m.content);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Copy failed";
    }
    setTimeout(() => { copy.textContent = "Copy"; }, 1500);
  });
  copy.classList.add("copy-message");
  bar.append(copy);
  if (m.role === "user") {
    const edit = button("Edit", "Edit your message and send it again", () => startEdit(li, index));
    edit.classList.add("edit-message");
    bar.append(edit);
  } else if (isLastReply) {
    const again = button("Regenerate", "Generate this reply again", () => regenerate());
    again.classList.add("regenerate");
    bar.append(again);
  }
  return bar;
}

/** Replace the last reply with a new one. */
async function regenerate() {
  const conv = app.current;
  if (!conv || app.busy || !app.ready) return;
  const last = conv.messages.findLastIndex((m) => m.role === "assistant");
  if (last < 0) return;
  clearError();
  conv.messages.splice(last);
  await respond(conv);
}

/** Edit a user message in place; sending it drops what followed and answers again. */
function startEdit(li, index) {
  if (app.busy) return;
  const conv = app.current;
  const content = li.querySelector(".content");
  const area = Object.assign(document.createElement("textarea"), { className: "edit-box", value: conv.messages[index].content,
    rows: Math.min(12, conv.messages[index].content.split("\n").length + 1) });
  area.setAttribute("aria-label", "Edit your message");
  const save = button("Send", "Send the edited message", async () => {
    const text = area.value.trim();
    if (!text || app.busy || !app.ready) return;
    clearError();
    conv.messages.splice(index);
    conv.messages.push({ role: "user", content: text });
    await respond(conv);
  });
  save.classList.add("btn-primary", "edit-send");
  const cancel = button("Cancel", "Cancel the edit", () => renderMessages());
  const row = Object.assign(document.createElement("div"), { className: "edit-actions" });
  row.append(cancel, save);
  content.replaceChildren(area, row);
  li.querySelector(".msg-actions")?.remove();
  area.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); save.click(); }
    else if (e.key === "Escape") renderMessages();
  });
  area.focus();
}

function scrollToEnd() {
  const chat = $("chat");
  chat.scrollTop = chat.scrollHeight;
  app.follow = true;
}

/** Keep the newest text in view only while the reader is at the bottom (scrolling up stops following). */
function followScroll() {
  if (app.follow) scrollToEnd();
  $("to-bottom").hidden = app.follow;
}

function onChatScroll() {
  const chat = $("chat");
  app.follow = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 48;
  $("to-bottom").hidden = app.follow || !app.busy;
}

// ------------------------------------------------------------------------------------------------ conversations
async function newChat() {
  if (app.busy) return;
  if (app.current && !app.current.messages.length) { $("prompt").focus(); return; }
  app.current = newConversation();
  app.convs.unshift(app.current);
  renderConversations();
  renderMessages();
  closeSidebar();
  $("prompt").focus();
}

function selectConversation(conv) {
  if (app.busy) return;
  app.current = conv;
  renderConversations();
  renderMessages();
  scrollToEnd();
  closeSidebar();
}

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren();
  for (const conv of app.convs) {
    if (!conv.messages.length && conv !== app.current) continue;
    const li = document.createElement("li");
    if (conv === app.current) li.className = "active";
    const title = Object.assign(document.createElement("button"), { type: "button", className: "conv-title", textContent: conv.title });
    if (conv === app.current) title.setAttribute("aria-current", "true");
    title.addEventListener("click", () => selectConversation(conv));
    const actions = Object.assign(document.createElement("span"), { className: "conv-actions" });
    const rename = button("✎", `Rename ${conv.title}`, () => startRename(li, conv));
    rename.classList.replace("btn-small", "btn-icon");
    const del = button("×", `Delete ${conv.title}`, () => deleteConversation(conv));
    del.classList.replace("btn-small", "btn-icon");
    actions.append(rename, del);
    li.append(title, actions);
    list.append(li);
  }
}

function startRename(li, conv) {
  const input = Object.assign(document.createElement("input"), { value: conv.title });
  input.setAttribute("aria-label", "New title");
  li.replaceChildren(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    if (save && input.value.trim()) {
      conv.title = input.value.trim().slice(0, 80);
      if (conv.messages.length) await app.store.putConversation(conv);
    }
    renderConversations();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") finish(true);
    else if (e.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

/** Delete a conversation at once, with Undo in a notice for a few seconds. */
async function deleteConversation(conv) {
  if (app.busy && conv === app.current) return;
  const index = app.convs.indexOf(conv);
  const wasCurrent = conv === app.current;
  await app.store.deleteConversation(conv.id);
  app.convs = app.convs.filter((c) => c !== conv);
  if (wasCurrent) {
    app.current = null;
    await newChat();
  }
  renderConversations();
  renderMessages();
  if (!conv.messages.length) return; // an empty chat: nothing to undo
  toast(`Deleted “${conv.title}”`, "Undo", async () => {
    await app.store.putConversation(conv);
    app.convs.splice(Math.min(Math.max(index, 0), app.convs.length), 0, conv);
    if (wasCurrent && !app.busy) {
      if (app.current && !app.current.messages.length) app.convs = app.convs.filter((c) => c !== app.current);
      app.current = conv;
      renderMessages();
      scrollToEnd();
    }
    renderConversations();
  });
}

// ------------------------------------------------------------------------------------------------ settings
const FIELDS = { systemPrompt: "set-system", temperature: "set-temperature", topK: "set-top-k", topP: "set-top-p",
  minP: "set-min-p", repeatPenalty: "set-repeat-penalty", maxTokens: "set-max-tokens", seed: "set-seed",
  nCtx: "set-n-ctx", jsonOutput: "set-json-output", apiKey: "set-api-key", device: "set-device",
  serverUrl: "set-server-url", kvCache: "set-kv-cache" };
/** KV cache types of the Settings select (the engine's KV_CACHE_TYPES less f32, which only costs memory). */
const KV_TYPES = ["f16", "q8_0", "q4_0"];

/** The KV cache type for K and V (the setting, f16 when unknown). */
function kvCacheType() {
  return KV_TYPES.includes(app.settings.kvCache) ? app.settings.kvCache : "f16";
}

/** Show Settings, with the field ``focusId`` focused. */
function openSettings(focusId = null) {
  fillSettings(app.settings);
  $("settings-dialog").showModal();
  if (focusId) $(focusId).focus();
}

async function openModels() {
  await renderModelLists();
  $("models-dialog").showModal();
}

function fillSettings(s) {
  for (const [key, id] of Object.entries(FIELDS)) {
    if ($(id).type === "checkbox") $(id).checked = Boolean(s[key]);
    else $(id).value = s[key];
  }
}

function readSettings() {
  const out = {};
  for (const [key, id] of Object.entries(FIELDS)) {
    const el = $(id);
    if (el.type === "checkbox") {
      out[key] = el.checked;
    } else if (el.type === "number") {
      const v = Number(el.value);
      out[key] = el.value === "" || !Number.isFinite(v) ? DEFAULT_SETTINGS[key] : v;
    } else {
      out[key] = el.value;
    }
  }
  for (const k of ["topK", "maxTokens", "seed", "nCtx"]) out[k] = Math.round(out[k]);
  out.serverUrl = out.serverUrl.trim();
  out.temperature = Math.max(0, out.temperature);
  out.maxTokens = Math.max(1, out.maxTokens);
  out.nCtx = Math.min(32768, Math.max(256, out.nCtx));
  return out;
}

async function saveSettings(patch) {
  app.settings = { ...app.settings, ...patch };
  await app.store.saveSettings(app.settings);
}

// ------------------------------------------------------------------------------------------------ wiring
function autoGrow() {
  const t = $("prompt");
  t.style.height = "auto";
  t.style.height = `${Math.min(t.scrollHeight, window.innerHeight * 0.4)}px`;
}

function closeSidebar() {
  $("sidebar").classList.remove("open");
  $("scrim").hidden = true;
  $("toggle-sidebar").setAttribute("aria-expanded", "false");
}

function wire() {
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $("prompt").addEventListener("input", autoGrow);
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", newChat);
  $("error-close").addEventListener("click", clearError);
  const pick = () => { $("file-input").value = ""; $("file-input").click(); };
  $("open-file").addEventListener("click", pick);
  $("models-open-file").addEventListener("click", () => { $("models-dialog").close(); pick(); });
  $("file-input").addEventListener("change", () => openFile($("file-input").files[0]));
  $("open-url").addEventListener("click", () => { $("models-dialog").showModal(); $("model-url").focus(); });
  $("model-url-go").addEventListener("click", () => {
    const url = $("model-url").value.trim();
    if (!url) return;
    $("models-dialog").close();
    openUrl(url);
  });
  $("open-models").addEventListener("click", openModels);
  $("open-settings").addEventListener("click", () => openSettings());
  $("auth-settings").addEventListener("click", () => openSettings("set-api-key"));
  $("base-note-models").addEventListener("click", openModels);
  $("chat").addEventListener("scroll", onChatScroll, { passive: true });
  $("to-bottom").addEventListener("click", scrollToEnd);
  $("settings-reset").addEventListener("click", () => fillSettings({ ...DEFAULT_SETTINGS, apiKey: $("set-api-key").value }));
  $("settings-dialog").addEventListener("close", async () => {
    if ($("settings-dialog").returnValue !== "save") return;
    const keyChanged = readSettings().apiKey !== app.settings.apiKey;
    const next = readSettings();
    const serverChanged = next.serverUrl !== (app.settings.serverUrl || "");
    const reloadChanged = ["device", "nCtx", "kvCache"].some((k) => next[k] !== app.settings[k]);
    await saveSettings(next);
    // the device, the context size and the KV cache type apply at once: the in-browser model reloads with them
    if (reloadChanged && app.mode === "local" && app.modelName && !app.busy) {
      clearError();
      await loadStored(app.modelName);
    }
    if (serverChanged) {
      clearError();
      if (app.settings.serverUrl) await saveSettings({ mode: "server" }); // a new server: chat with it
      await connectServer();
    } else if (keyChanged && app.serverStatus !== "none") {
      app.serverStatus = await app.server.probe();
      if (app.mode === "server") await setMode("server", false);
    }
  });
  $("mode-toggle").addEventListener("change", (e) => setMode(e.target.checked ? "server" : "local", true));
  $("toggle-sidebar").addEventListener("click", () => {
    const open = !$("sidebar").classList.contains("open");
    $("sidebar").classList.toggle("open", open);
    $("scrim").hidden = !open;
    $("toggle-sidebar").setAttribute("aria-expanded", String(open));
  });
  $("scrim").addEventListener("click", closeSidebar);
  let depth = 0;
  const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes("Files");
  const canDrop = (e) => hasFiles(e) && app.mode === "local" && hasLocalEngine();
  window.addEventListener("dragenter", (e) => { if (canDrop(e)) { depth++; $("drop-overlay").hidden = false; } });
  window.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; $("drop-overlay").hidden = true; } });
  window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); }); // a drop never navigates
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    $("drop-overlay").hidden = true;
    const file = e.dataTransfer?.files?.[0];
    if (file && app.mode === "local" && hasLocalEngine()) openFile(file);
  });
}

async function loadSite() {
  try {
    const resp = await fetch("site.json");
    return resp.ok ? await resp.json() : null;
  } catch {
    return null;
  }
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator) || !/^https?:$/.test(location.protocol)) return;
  navigator.serviceWorker.register("sw.js").catch((err) => console.warn("[emberllm] service worker:", err.message));
}

async function main() {
  wire();
  registerServiceWorker();
  app.store = await Store.open();
  app.settings = await app.store.settings();
  app.models = await ModelStore.open();
  app.convs = (await app.store.conversations()).filter((c) => c.messages.length);
  app.current = app.convs[0] ?? null;
  if (!app.current) await newChat();
  renderConversations();
  renderMessages();
  scrollToEnd(); // a re-opened conversation shows its latest messages
  app.server = new ServerEngine(() => app.settings.apiKey);
  app.site = await loadSite();
  showLocalOptions();
  await connectServer();
}

/** Probe the server (this page's own, or Settings' Server URL) and pick the mode: the server when there is one. */
async function connectServer() {
  app.server.configure(app.settings.serverUrl);
  const status = await app.server.probe();
  app.serverStatus = status;
  // The switch only where both engines are there: a static host has no server, `emberllm serve` of the bare
  // web/ (its site.json names no engine) no in-browser engine.
  const both = status !== "none" && hasLocalEngine();
  $("mode-toggle").disabled = !both;
  $("mode-toggle").closest("label").hidden = !both;
  const mode = status === "none" ? "local" : both ? (app.settings.mode ?? "server") : "server";
  await setMode(mode, false);
}

main().catch((err) => {
  setStatus("Failed to start", "error");
  showError(err);
});
