// Drives engine.embed of pyodide_pkg/emberllm.mjs under Node: mean and last pooling of texts (an array of them and
// a lone string), per-token vectors with pooling "none", and a bad pooling's error.  Prints one JSON object.
// Usage: node embed_check.mjs <pyodide-dir> <wheel> <model.gguf> <texts as a JSON array>
import { EmberEngine } from "../../pyodide_pkg/emberllm.mjs";

const [indexURL, wheel, model, textsJson] = process.argv.slice(2);
const texts = JSON.parse(textsJson);
const engine = await EmberEngine.boot({ indexURL, wheelURL: wheel });
await engine.load(model, { nCtx: 256 });
const out = {};
const t0 = performance.now();
out.mean = await engine.embed(texts, { pooling: "mean" });
out.embedMs = performance.now() - t0;
out.last = await engine.embed(texts, { pooling: "last" });
out.single = await engine.embed(texts[0], { pooling: "mean" });
out.none = await engine.embed(texts[0], { pooling: "none", normalize: -1 });
out.lastAlone = await engine.embed(texts[0], { pooling: "last" });
try {
  await engine.embed(texts[0], { pooling: "rank" });
  out.badPooling = "accepted";
} catch (err) {
  out.badPooling = String(err.message);
}
engine.unload();
console.log(JSON.stringify(out));
