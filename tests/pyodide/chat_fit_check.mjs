// Drives pyodide_pkg/emberllm.mjs's chat under Node on long conversations: the prompt read in pieces with progress
// steps, abort() during the read, the conversation fitted into a small context, greedy ids of short prompts, and
// the error when the last message alone is too long.  Prints one JSON object.
// Usage: node chat_fit_check.mjs <pyodide-dir> <wheel> <model.gguf> <prompt>
import { EmberEngine, PROMPT_CHUNK } from "../../pyodide_pkg/emberllm.mjs";

const [indexURL, wheel, model, prompt] = process.argv.slice(2);

const SENTENCES = [
  "The lighthouse keeper logged every ship that passed the northern cape.",
  "Rain fell on the terraced vineyards for three days without a pause.",
  "A chemist measured the boiling point of the new solvent twice.",
  "Children in the village learned to read from a travelling librarian.",
  "The orchestra tuned for an hour before the premiere of the symphony.",
  "Engineers replaced the bridge cables one strand at a time.",
  "Her grandmother kept a ledger of every loaf the bakery sold.",
  "The survey team mapped the glacier's retreat with old photographs.",
];

/** A conversation of ``nTurns`` user/assistant turns of varied real sentences, then a last question. */
function conversation(nTurns) {
  const msgs = [{ role: "system", content: "You are a concise assistant." }];
  for (let i = 0; i < nTurns; i++) {
    const pick = (start, n) => Array.from({ length: n }, (_, k) => SENTENCES[(start + k * 3) % SENTENCES.length]);
    msgs.push({ role: "user", content: `Question ${i}: ${pick(i, 3).join(" ")}` });
    msgs.push({ role: "assistant", content: `Answer ${i}: ${pick(i * 5 + 1, 2).join(" ")}` });
  }
  msgs.push({ role: "user", content: "Which of these stories is the oldest? Answer in one sentence." });
  return msgs;
}

/** Run a stream; ``onStep(step)`` may act (abort); returns the progress steps, the token steps and the wall time. */
async function run(stream, onStep = () => {}) {
  const progress = [];
  const tokens = [];
  const t0 = performance.now();
  let abortAt = null;
  for await (const step of stream) {
    if ("promptDone" in step) progress.push({ ...step, at: performance.now() - t0 });
    else tokens.push(step);
    if (onStep(step)) abortAt = performance.now();
  }
  const end = performance.now();
  return { progress, tokens, ms: end - t0, stopMs: abortAt === null ? null : end - abortAt };
}

const ids = (r) => r.tokens.filter((s) => s.token >= 0).map((s) => s.token);
const out = { promptChunk: PROMPT_CHUNK };
const engine = await EmberEngine.boot({ indexURL, wheelURL: wheel });
await engine.load(model, { nCtx: 2048 });

// (d) short prompts: the same greedy ids as the native engine
out.completeIds = ids(await run(engine.complete(prompt, { nPredict: 8, temperature: 0 })));
const hi = await run(engine.chat([{ role: "user", content: prompt }], { nPredict: 8, temperature: 0 }));
out.chatIds = ids(hi);
out.shortProgress = hi.progress.map((p) => [p.promptDone, p.promptTotal]);

// (b) a long conversation, aborted right after the first progress step
const long = conversation(19); // ~1,500 tokens
let first = true;
const aborted = await run(engine.chat(long, { nPredict: 8, temperature: 0 }), (step) => {
  if (!("promptDone" in step) || !first) return false;
  first = false;
  engine.abort();
  return true;
});
out.aborted = { progress: aborted.progress.map((p) => p.promptDone), total: aborted.progress[0]?.promptTotal,
  finishReason: aborted.tokens.at(-1)?.finishReason, tokens: aborted.tokens.length, stopMs: aborted.stopMs,
  timings: engine.lastTimings() };

// (a) the same conversation read to the end: increasing progress up to the whole prompt, the aborted piece reused
const full = await run(engine.chat(long, { nPredict: 8, temperature: 0 }));
out.full = { progress: full.progress.map((p) => [p.promptDone, p.promptTotal]), timings: engine.lastTimings(),
  finishReason: full.tokens.at(-1)?.finishReason, gapsMs: full.progress.map((p, i, a) => p.at - (i ? a[i - 1].at : 0)) };

// the last message alone longer than the context: a clear error
try {
  await run(engine.chat([{ role: "user", content: SENTENCES.join(" ").repeat(30) }], { nPredict: 8 }));
  out.tooLong = "accepted";
} catch (err) {
  out.tooLong = String(err.message ?? err);
}

// (c) a conversation longer than a small context: the oldest turns go instead of an error
await engine.load(model, { nCtx: 512 });
const small = await run(engine.chat(conversation(12), { nPredict: 8, temperature: 0 }));
out.small = { finishReason: small.tokens.at(-1)?.finishReason, ids: ids(small), timings: engine.lastTimings(),
  progress: small.progress.map((p) => [p.promptDone, p.promptTotal]) };
try {
  await run(engine.chat(conversation(12), { nPredict: 8, temperature: 0, fitContext: false }));
  out.unfitted = "accepted";
} catch (err) {
  out.unfitted = String(err.message ?? err);
}
engine.unload();
console.log(JSON.stringify(out));
