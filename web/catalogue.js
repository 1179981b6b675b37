// Recommended instruction-tuned GGUFs for the in-browser engine: small chat models of architectures emberllm runs,
// each small enough for wasm32's 4 GiB with its KV cache.  The page offers them under Models with one-click
// download into browser storage (OPFS); the files come from Hugging Face, not from this site.

/** The catalogue: name, size in bytes (approximate, for display), licence, architecture and download URL. */
export const CATALOGUE = Object.freeze([
  {
    name: "SmolLM2 360M Instruct (Q8_0)", sizeBytes: 386e6, licence: "Apache-2.0", architecture: "llama",
    url: "https://huggingface.co/HuggingFaceTB/SmolLM2-360M-Instruct-GGUF/resolve/main/smollm2-360m-instruct-q8_0.gguf",
  },
  {
    name: "Qwen2.5 0.5B Instruct (Q4_K_M)", sizeBytes: 398e6, licence: "Apache-2.0", architecture: "qwen2",
    url: "https://huggingface.co/second-state/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",
  },
  {
    name: "Gemma 3 1B IT (Q4_K_M)", sizeBytes: 806e6, licence: "Gemma Terms of Use", architecture: "gemma3",
    url: "https://huggingface.co/unsloth/gemma-3-1b-it-GGUF/resolve/main/gemma-3-1b-it-Q4_K_M.gguf",
  },
  {
    name: "Llama 3.2 1B Instruct (Q4_K_M)", sizeBytes: 808e6, licence: "Llama 3.2 Community License",
    architecture: "llama",
    url: "https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
  },
]);

const BASE_WORDS = /(^|[^a-z])(base|pretrain(ed)?|pt)([^a-z]|$)/i;

/** Whether a loaded model looks like a base (not instruction-tuned) model: its GGUF has no chat template, or its
 * name or fine-tune label says base/pretrained. */
export function looksLikeBaseModel(info) {
  if (!info) return false;
  if (info.hasChatTemplate === false) return true;
  return BASE_WORDS.test([info.name, info.finetune].filter(Boolean).join(" "));
}
