// Conversations and settings in IndexedDB (one database, two object stores).

const DB_NAME = "emberllm";
const DB_VERSION = 1;

/** Sampling and UI defaults (llama.cpp's sampling defaults). */
export const DEFAULT_SETTINGS = Object.freeze({
  systemPrompt: "", temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.0, maxTokens: 512,
  seed: -1, nCtx: 2048, jsonOutput: false, apiKey: "", mode: null, lastModel: null, device: "auto", serverUrl: "",
  kvCache: "f16",
});

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** The app's store: ``conversations`` (by id) and ``settings`` (one record). */
export class Store {
  static async open() {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains("conversations")) db.createObjectStore("conversations", { keyPath: "id" });
      if (!db.objectStoreNames.contains("kv")) db.createObjectStore("kv");
    };
    return new Store(await request(req));
  }

  constructor(db) {
    this.db = db;
  }

  _store(name, mode = "readonly") {
    return this.db.transaction(name, mode).objectStore(name);
  }

  /** All conversations, most recently updated first. */
  async conversations() {
    const all = await request(this._store("conversations").getAll());
    return all.sort((a, b) => b.updated - a.updated);
  }

  async putConversation(conv) {
    await request(this._store("conversations", "readwrite").put(conv));
  }

  async deleteConversation(id) {
    await request(this._store("conversations", "readwrite").delete(id));
  }

  /** Settings merged over the defaults. */
  async settings() {
    const saved = await request(this._store("kv").get("settings"));
    return { ...DEFAULT_SETTINGS, ...(saved || {}) };
  }

  async saveSettings(settings) {
    await request(this._store("kv", "readwrite").put({ ...settings }, "settings"));
  }
}

/** A new, empty conversation. */
export function newConversation() {
  const now = Date.now();
  return { id: `c${now.toString(36)}${Math.random().toString(36).slice(2, 8)}`, title: "New chat", created: now,
    updated: now, messages: [] };
}
