"""Record exact embeddings of the recorded texts into ``exact_embeddings.json``: Gemma 3's forward pass in float64
numpy on the GGUF's dequantized weights (PyPI ``gguf``'s dequantizers), no activation quantization, no half
precision; then mean and last pooling, L2-normalised.  The yardstick for emberllm and llama.cpp alike.

    python tests/references/exact_embeddings.py        # about a minute; needs numpy and gguf (the test extra)

Gemma 3 only (the default model): embeddings scaled by sqrt(n_embd), pre- and post-norms (the GGUF's norm weights
already hold Gemma's ``1 + w``), QK-norm, RoPE NEOX on the whole head (base 1e4 for the sliding-window layers, 1e6
for every sixth, global one), GeGLU with tanh, causal attention scaled by 1/sqrt(head_dim).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

HERE = Path(__file__).resolve().parent
OUT = HERE / "exact_embeddings.json"
LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_q_norm", "attn_k_norm", "attn_output",
                 "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm")


class Gemma3:
    """The dequantized weights and the float64 forward pass to the final norm."""

    def __init__(self, path: Path) -> None:
        reader = GGUFReader(path)
        self.md = {f.name: f.contents() for f in reader.fields.values() if f.name.startswith("gemma3.")}
        self.tensors = {t.name: t for t in reader.tensors}
        self.n_embd = int(self.md["gemma3.embedding_length"])
        self.n_head = int(self.md["gemma3.attention.head_count"])
        self.n_kv = int(self.md["gemma3.attention.head_count_kv"])
        self.head_dim = int(self.md["gemma3.attention.key_length"])
        self.eps = float(self.md["gemma3.attention.layer_norm_rms_epsilon"])
        self.window = int(self.md["gemma3.attention.sliding_window"])
        self.base = float(self.md["gemma3.rope.freq_base"])
        self.emb = self.weight("token_embd.weight", np.float32)
        n_layer = int(self.md["gemma3.block_count"])
        self.layers = [{k: self.weight(f"blk.{il}.{k}.weight") for k in LAYER_TENSORS} for il in range(n_layer)]
        self.out_norm = self.weight("output_norm.weight")

    def weight(self, name: str, dtype: Any = np.float64) -> np.ndarray:
        t = self.tensors[name]
        return dequantize(t.data, t.tensor_type).astype(dtype)

    def rms(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x: np.ndarray, pos: np.ndarray, base: float) -> np.ndarray:
        half = self.head_dim // 2
        ang = pos[:, None] * base ** (-np.arange(half) * 2.0 / self.head_dim)[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)

    def hidden(self, tokens: list[int]) -> np.ndarray:
        """Every token's hidden state after the final norm."""
        n, hd = len(tokens), self.head_dim
        x = self.emb[tokens].astype(np.float64) * math.sqrt(self.n_embd)
        pos = np.arange(n, dtype=np.float64)
        dist = np.subtract.outer(np.arange(n), np.arange(n))
        for il, L in enumerate(self.layers):
            is_global = (il + 1) % 6 == 0
            allowed = (dist >= 0) & (is_global | (dist < self.window))
            mask = np.where(allowed, 0.0, -np.inf)
            h = self.rms(x, L["attn_norm"])
            q = self.rms((h @ L["attn_q"].T).reshape(n, self.n_head, hd), L["attn_q_norm"])
            k = self.rms((h @ L["attn_k"].T).reshape(n, self.n_kv, hd), L["attn_k_norm"])
            v = (h @ L["attn_v"].T).reshape(n, self.n_kv, hd)
            base = self.base if is_global else 10000.0
            q, k = self.rope(q, pos, base), self.rope(k, pos, base)
            att = np.empty((n, self.n_head, hd))
            for head in range(self.n_head):
                kv = head * self.n_kv // self.n_head
                s = q[:, head, :] @ k[:, kv, :].T / math.sqrt(hd) + mask
                p = np.exp(s - s.max(axis=1, keepdims=True))
                att[:, head, :] = (p / p.sum(axis=1, keepdims=True)) @ v[:, kv, :]
            x = x + self.rms(att.reshape(n, -1) @ L["attn_output"].T, L["post_attention_norm"])
            h = self.rms(x, L["ffn_norm"])
            g = h @ L["ffn_gate"].T
            g = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g**3)))
            x = x + self.rms((g * (h @ L["ffn_up"].T)) @ L["ffn_down"].T, L["post_ffw_norm"])
        return self.rms(x, self.out_norm)


def main() -> int:
    """Write the exact mean and last embeddings of llamacpp_embeddings.json's texts."""
    recorded = json.loads((HERE / "llamacpp_embeddings.json").read_text(encoding="utf-8"))
    sys.path.insert(0, str(HERE.parent.parent))
    from emberllm.runtime.model_store import default_model_path

    model = Gemma3(default_model_path())
    out: dict[str, list[list[float]]] = {"mean": [], "last": []}
    for t in recorded["texts"]:
        hs = model.hidden(t["tokens"])
        for pooling, v in (("mean", hs.mean(axis=0)), ("last", hs[-1])):
            out[pooling].append([round(float(x), 8) for x in v / np.linalg.norm(v)])
    sets = [f'  "{k}": [\n' + ",\n".join("   " + json.dumps(r) for r in rows) + "\n  ]" for k, rows in out.items()]
    head = {"source": "tests/references/exact_embeddings.py: float64 forward pass on the dequantized weights",
            "model": recorded["model"], "texts": "those of llamacpp_embeddings.json, in order", "normalize": 2}
    OUT.write_text(json.dumps(head, indent=1)[:-2] + ',\n "embeddings": {\n' + ",\n".join(sets) + "\n }\n}\n",
                   encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
