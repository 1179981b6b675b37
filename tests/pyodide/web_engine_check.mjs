// The chat page's engine plumbing under Node, without a browser: web/worker.js (its chat() against a fake engine:
// throttled "prompt" messages, tokens, done with the timings; describe()'s error kinds and clean messages) and
// web/engine-client.js (onPrompt / onToken dispatch).  Prints one JSON object.
// Usage: node web_engine_check.mjs <web-dir>
import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";

const web = process.argv[2];
const out = {};

// --- worker.js in a context of its own, with a fake engine
const posted = [];
const ctx = vm.createContext({ self: { postMessage: (m) => posted.push(m) }, performance, setTimeout, console });
vm.runInContext(fs.readFileSync(path.join(web, "worker.js"), "utf8"), ctx);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
ctx.fakeEngine = {
  async *chat() {
    for (let done = 32; done < 320; done += 32) {
      yield { token: -1, text: "", promptDone: done, promptTotal: 330 };
      if (done === 160) await sleep(120); // one slow piece: the next progress goes out
    }
    yield { token: -1, text: "", promptDone: 330, promptTotal: 330 };
    yield { token: 7, text: "Hi", finishReason: null };
    yield { token: 8, text: "!", finishReason: "stop" };
  },
  lastTimings: () => ({ promptTokens: 330, cachedTokens: 0, promptTotal: 330, promptMs: 1, evalTokens: 1,
    evalMs: 1, loadMs: 1, droppedMessages: 3 }),
};
vm.runInContext("engine = fakeEngine", ctx);
await vm.runInContext("chat({ id: 5, messages: [], options: {} })", ctx);
out.posted = posted;

out.describe = vm.runInContext(`[
  new Error("Traceback (most recent call last):\\n  File \\"<exec>\\", line 108, in start_chat\\n" +
    "ValueError: the last message and system prompt take 2979 tokens (+8 kept for the reply); the context holds 2048: shorten it or raise Context\\n"),
  new Error("Traceback (most recent call last):\\nValueError: prompt of 994 tokens does not fit in the context of 512"),
  new Error("Traceback (most recent call last):\\nemberllm.gguf.reader.GGUFError: not a GGUF file (bad magic b'abcd')"),
  new Error("WebGPU: the device was lost"),
  "MemoryError",
].map(describe)`, ctx);

// --- engine-client.js as a module, its worker replaced by a recorder
const src = fs.readFileSync(path.join(web, "engine-client.js"), "utf8");
const { LocalEngine } = await import(`data:text/javascript,${encodeURIComponent(src)}`);
const client = new LocalEngine({});
const sent = [];
client.worker = { postMessage: (m) => sent.push(m) };
const calls = [];
const reply = client.chat([{ role: "user", content: "Hi" }], { nPredict: 4 }, (text) => calls.push(["token", text]),
  (done, total) => calls.push(["prompt", done, total]));
const id = sent[0].id;
for (const data of [{ type: "prompt", id, done: 32, total: 64 }, { type: "prompt", id, done: 64, total: 64 },
  { type: "token", id, text: "Hello" }, { type: "done", id, finishReason: "stop", timings: { droppedMessages: 2 } }]) {
  client._onMessage({ data });
}
out.client = { sent: sent[0].type, calls, reply: await reply };
console.log(JSON.stringify(out));
