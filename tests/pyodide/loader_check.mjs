// Drives pyodide_pkg/emberllm.mjs under Node: boot + wheel, load a GGUF with progress, tokenize, greedy
// completion, abort, JSON-schema-constrained sampling, the size check, unload.  Prints one JSON object.
// Usage: node loader_check.mjs <pyodide-dir> <wheel> <model.gguf> <prompt>
import { EmberEngine, EmberModelTooLargeError } from "../../pyodide_pkg/emberllm.mjs";

const [indexURL, wheel, model, prompt] = process.argv.slice(2);
const out = {};
const engine = await EmberEngine.boot({ indexURL, wheelURL: wheel });
out.timings = engine.timings;
let calls = 0;
let t0 = performance.now();
await engine.load(model, { nCtx: 128, onProgress: () => { calls += 1; } });
out.timings.loadMs = performance.now() - t0;
out.progressCalls = calls;
out.tokens = engine.tokenize(prompt);
const ids = [];
const stamps = [];
for await (const step of engine.complete(prompt, { nPredict: 8, temperature: 0 })) {
  if ("promptDone" in step) continue; // the prompt's progress
  ids.push(step.token);
  stamps.push(performance.now());
}
out.ids = ids;
out.tgTps = (stamps.length - 1) / ((stamps[stamps.length - 1] - stamps[0]) / 1000);
const aborted = [];
for await (const step of engine.complete(prompt, { nPredict: 50, temperature: 0 })) {
  if ("promptDone" in step) continue;
  aborted.push(step);
  if (aborted.length === 2) engine.abort();
}
out.abortSteps = aborted.length;
out.abortReason = aborted[aborted.length - 1].finishReason;
// structured output: a JSON schema constrains sampled text; a keyword it cannot express, and a grammar beside it,
// throw naming them
out.schema = { type: "object", properties: { city: { type: "string", maxLength: 12 },
  nights: { type: "integer", minimum: 1, maximum: 30 } }, required: ["city", "nights"], additionalProperties: false };
out.schemaTexts = [];
for (const seed of [1, 2]) {
  let text = "";
  let reason = null;
  for await (const step of engine.complete("A trip: ", { nPredict: 60, temperature: 0.8, seed, jsonSchema: out.schema })) {
    if ("promptDone" in step) continue;
    text += step.text;
    reason = step.finishReason ?? reason;
  }
  out.schemaTexts.push([text, reason]);
}
out.schemaErrors = [];
for (const opts of [{ jsonSchema: { type: "array", uniqueItems: true } },
  { jsonSchema: out.schema, grammar: 'root ::= "a"' }]) {
  try {
    for await (const step of engine.complete("x", { nPredict: 2, ...opts })) void step;
    out.schemaErrors.push("not refused");
  } catch (err) {
    out.schemaErrors.push(String(err.message));
  }
}
try {
  engine._checkFits(5 * 1024 ** 3, null, 128);
  out.tooLarge = "not refused";
} catch (err) {
  out.tooLarge = err instanceof EmberModelTooLargeError ? err.message : `wrong error: ${err}`;
}
engine.unload();
try {
  engine.tokenize("x");
  out.afterUnload = "still loaded";
} catch (err) {
  out.afterUnload = String(err.message);
}
console.log(JSON.stringify(out));
