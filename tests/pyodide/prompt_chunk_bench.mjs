// Prompt reading speed of pyodide_pkg/emberllm.mjs under Node by promptChunk, and how soon abort() acts during the
// read.  For each chunk size: a fresh ~N-token prompt read whole (pp t/s, the longest piece), then two more aborted
// by a timer 1.5 s and 2.2 s in (stopMs: from the timer's due time to the end of the stream, as a Stop in the page's
// worker, whose abort message waits for the engine to yield).  Prints one JSON object.
// Usage: node prompt_chunk_bench.mjs <pyodide-dir> <wheel> <model.gguf> [nTokens=1024] [chunks=512,64,32,auto]
// (a number: fixed pieces of that many tokens; "auto": the engine's default, PROMPT_CHUNK then ~PROMPT_CHUNK_MS)
import { EmberEngine } from "../../pyodide_pkg/emberllm.mjs";

const [indexURL, wheel, model, nArg = "1024", chunksArg = "512,64,32,auto"] = process.argv.slice(2);
const nTokens = Number(nArg);
const chunks = chunksArg.split(",");
/** complete()'s piece options for a chunks entry. */
const pieceOptions = (chunk) => (chunk === "auto" ? {} : { promptChunk: Number(chunk), promptChunkMs: 0 });
const WORDS = ("the lighthouse keeper logged every ship that passed the northern cape while rain fell on terraced " +
  "vineyards and a chemist measured the boiling point of a solvent twice").split(" ");

const engine = await EmberEngine.boot({ indexURL, wheelURL: wheel });
await engine.load(model, { nCtx: 2048 });
let run = 0;
/** A prompt of at least ``n`` tokens that shares no prefix with the previous ones (so nothing is reused). */
function freshPrompt(n) {
  run += 1;
  const words = [`Run ${run}${"!".repeat(run)}:`];
  while (engine.tokenize(words.join(" ")).length < n) {
    for (let i = 0; i < 64; i++) words.push(WORDS[(words.length * 7 + run) % WORDS.length]);
  }
  return words.join(" ");
}

// a warm-up read: V8 compiles the kernels' hot functions with its optimising tier on first use
for await (const _ of engine.complete(freshPrompt(256), { nPredict: 1, ...pieceOptions("64") }));

const rows = [];
for (const chunk of chunks) {
  const prompt = freshPrompt(nTokens);
  let last = performance.now();
  let longest = 0;
  let pieces = 0;
  const cpu0 = typeof process !== "undefined" ? process.cpuUsage() : null;
  for await (const step of engine.complete(prompt, { nPredict: 1, temperature: 0, ...pieceOptions(chunk) })) {
    const now = performance.now();
    if ("promptDone" in step) {
      longest = Math.max(longest, now - last);
      pieces += 1;
    }
    last = now;
  }
  const t = engine.lastTimings();
  const cpu = cpu0 ? process.cpuUsage(cpu0) : null; // CPU time of this process: steadier than wall time on a busy machine
  const cpuMs = cpu ? (cpu.user + cpu.system) / 1000 : null;
  // Stop as the page does it: abort() from a timer (a message, in the worker) fires only when the engine yields
  const stops = [];
  for (const afterMs of [1500, 2200]) {
    const stopped = freshPrompt(nTokens);
    const t0 = performance.now();
    const timer = setTimeout(() => engine.abort(), afterMs);
    let reason = null;
    for await (const step of engine.complete(stopped, { nPredict: 1, ...pieceOptions(chunk) })) {
      reason = step.finishReason ?? reason;
    }
    clearTimeout(timer);
    stops.push(reason === "cancelled" ? Math.round(performance.now() - t0 - afterMs) : null);
  }
  rows.push({ chunk, pieces, promptTokens: t.promptTokens, promptMs: Math.round(t.promptMs),
    ppTps: +(t.promptTokens / (t.promptMs / 1000)).toFixed(1),
    ppPerCpuSecond: cpuMs ? +(t.promptTokens / (cpuMs / 1000)).toFixed(1) : null, longestPieceMs: Math.round(longest), stopMs: stops });
  console.error(JSON.stringify(rows.at(-1)));
}
console.log(JSON.stringify({ nTokens, rows }));
