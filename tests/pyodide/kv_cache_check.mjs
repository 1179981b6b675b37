// pyodide_pkg/emberllm.mjs with a quantized KV cache under Node: load({ cacheTypeK, cacheTypeV }), greedy ids, the
// cache estimate the 4 GiB check uses, and the refusals (an unknown type, a quantized cache on WebGPU).
// Prints one JSON object.  Usage: node kv_cache_check.mjs <pyodide-dir> <wheel> <model.gguf> <prompt> <type>
import { EmberEngine, KV_CACHE_TYPES } from "../../pyodide_pkg/emberllm.mjs";

const [indexURL, wheel, model, prompt, type] = process.argv.slice(2);
const out = { types: KV_CACHE_TYPES };
const engine = await EmberEngine.boot({ indexURL, wheelURL: wheel });
await engine.load(model, { nCtx: 128, cacheTypeK: type, cacheTypeV: type });
out.ids = [];
for await (const step of engine.complete(prompt, { nPredict: 8, temperature: 0 })) {
  if (!("promptDone" in step)) out.ids.push(step.token);
}
out.kvBytes = { [type]: engine.api.kv_bytes(4096, type, type), f16: engine.api.kv_bytes(4096, "f16", "f16") };
out.device = engine.info().device;
out.kvCache = engine.info().kvCache;
for (const [name, opts] of [["badType", { cacheTypeK: "q5_1" }], ["onGpu", { cacheTypeV: type, device: "webgpu" }]]) {
  try {
    await engine.load(model, { nCtx: 128, ...opts });
    out[name] = "loaded";
  } catch (err) {
    out[name] = String(err.message);
  }
}
engine.unload();
console.log(JSON.stringify(out));
