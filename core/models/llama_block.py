"""The pre-norm Llama-style decoder block shared by Llama, Qwen2, Qwen3 and Phi-3.

RMSNorm -> Q/K/V (separate or fused ``attn_qkv``; optional biases; optional per-head QK-norm) -> RoPE (NORMAL
or NEOX, optional ``rope_freqs`` frequency factors for Llama 3 rope scaling) -> attention -> output projection
-> residual; RMSNorm -> SiLU GLU (separate gate/up or fused ``ffn_up`` with the gate in its first half) ->
down projection -> residual.  The output projection is ``output.weight`` or, if absent, tied to ``token_embd``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from emberllm.models.base import HParams, MatrixGroup, Weight, WeightStore
from emberllm.models.transformer import Segment, TransformerModel

ROPE_NORMAL = 0
ROPE_NEOX = 2
ACT_SILU = 0


@dataclass
class LlamaLayer:
    """The weights of one block; optional parts are ``None``."""

    attn_norm: Any
    wq: Weight
    wk: Weight
    wv: Weight
    bq: Any
    bk: Any
    bv: Any
    q_norm: Any
    k_norm: Any
    wo: Weight
    ffn_norm: Any
    w_gate: Weight
    w_up: Weight
    w_down: Weight
    qkv: MatrixGroup | None = None
    gate_up: MatrixGroup | None = None


def split_rows(w: WeightStore, fused: Weight, sizes: list[int], names: list[str]) -> list[Weight]:
    """Views of consecutive row blocks of a fused matrix (rows are contiguous in every GGML type)."""
    if sum(sizes) != fused.n_out:
        raise ValueError(f"{fused.name}: {fused.n_out} rows cannot be split into {sizes}")
    row_bytes = int(w.k.lib.emb_row_size(fused.type, fused.n_in))
    parts, row = [], 0
    for size, name in zip(sizes, names, strict=True):
        parts.append(Weight(name, fused.ptr + row * row_bytes, fused.type, size, fused.n_in))
        row += size
    return parts


class LlamaStyleModel(TransformerModel):
    """A Llama-style decoder; subclasses set ``rope_mode`` (NORMAL for Llama, NEOX for Qwen and Phi-3)."""

    rope_mode = ROPE_NORMAL

    def _read_hparams(self) -> HParams:
        hp = HParams.from_gguf(self.gguf)
        md = self.gguf.metadata
        self.n_rot = int(md.get(f"{hp.arch}.rope.dimension_count", hp.head_dim))
        self.n_ctx_orig = int(md.get(f"{hp.arch}.rope.scaling.original_context_length", hp.n_ctx_train))
        # long-rope's attention factor scales cos and sin (llama.cpp), i.e. q and k: the scores by its square
        attn_factor = float(md.get(f"{hp.arch}.rope.scaling.attn_factor", 1.0))
        self.attn_scale = attn_factor * attn_factor / math.sqrt(hp.head_dim)
        return hp

    def _optional_vector(self, w: WeightStore, name: str, n: int) -> Any:
        return w.vector_f32(name, n) if w.has(name) else None

    def _load_layers(self, w: WeightStore) -> None:
        hp = self.hp
        self.tok_embd = w.matrix("token_embd.weight", hp.n_embd, hp.n_vocab)
        self.output = w.matrix("output.weight", hp.n_embd, hp.n_vocab) if w.has("output.weight") else self.tok_embd
        self.output_norm = w.vector_f32("output_norm.weight", hp.n_embd)
        self.rope_freqs = self._optional_vector(w, "rope_freqs.weight", self.n_rot // 2)
        # Phi-3 long-rope: short factors up to the original context, long ones beyond (chosen per cache size)
        self.rope_short = self._optional_vector(w, "rope_factors_short.weight", self.n_rot // 2)
        self.rope_long = self._optional_vector(w, "rope_factors_long.weight", self.n_rot // 2)
        if self.rope_freqs is None and self.rope_short is not None:
            self.rope_freqs = self.rope_short
        self.layers = [self._load_layer(w, f"blk.{il}.") for il in range(hp.n_layer)]

    def _load_layer(self, w: WeightStore, p: str) -> LlamaLayer:
        hp, b, k = self.hp, self.buf, self.k
        if w.has(p + "attn_qkv.weight"):
            fused = w.matrix(p + "attn_qkv.weight", hp.n_embd, hp.q_dim + 2 * hp.kv_dim)
            wq, wk, wv = split_rows(w, fused, [hp.q_dim, hp.kv_dim, hp.kv_dim], [p + "q", p + "k", p + "v"])
        else:
            wq = w.matrix(p + "attn_q.weight", hp.n_embd, hp.q_dim)
            wk = w.matrix(p + "attn_k.weight", hp.n_embd, hp.kv_dim)
            wv = w.matrix(p + "attn_v.weight", hp.n_embd, hp.kv_dim)
        if w.has(p + "ffn_gate.weight"):
            w_gate = w.matrix(p + "ffn_gate.weight", hp.n_embd, hp.n_ff)
            w_up = w.matrix(p + "ffn_up.weight", hp.n_embd, hp.n_ff)
        else:
            fused = w.matrix(p + "ffn_up.weight", hp.n_embd, 2 * hp.n_ff)
            w_gate, w_up = split_rows(w, fused, [hp.n_ff, hp.n_ff], [p + "gate", p + "up"])
        layer = LlamaLayer(
            attn_norm=w.vector_f32(p + "attn_norm.weight", hp.n_embd),
            wq=wq,
            wk=wk,
            wv=wv,
            bq=self._optional_vector(w, p + "attn_q.bias", hp.q_dim),
            bk=self._optional_vector(w, p + "attn_k.bias", hp.kv_dim),
            bv=self._optional_vector(w, p + "attn_v.bias", hp.kv_dim),
            q_norm=self._optional_vector(w, p + "attn_q_norm.weight", hp.head_dim),
            k_norm=self._optional_vector(w, p + "attn_k_norm.weight", hp.head_dim),
            wo=w.matrix(p + "attn_output.weight", hp.q_dim, hp.n_embd),
            ffn_norm=w.vector_f32(p + "ffn_norm.weight", hp.n_embd),
            w_gate=w_gate,
            w_up=w_up,
            w_down=w.matrix(p + "ffn_down.weight", hp.n_ff, hp.n_embd),
        )
        layer.qkv = MatrixGroup.build(k, [layer.wq, layer.wk, layer.wv], [b.q.ptr, b.k.ptr, b.v.ptr])
        layer.gate_up = MatrixGroup.build(k, [layer.w_gate, layer.w_up], [b.gate.ptr, b.up.ptr])
        return layer

    def _rope_params(self, il: int) -> tuple[int, float, float, int]:
        return self.n_rot, self.hp.rope_base, self.hp.rope_scale, self.rope_mode

    def new_cache(self, n_ctx: int) -> Any:
        """An empty KV cache; for long-rope models it also picks the factors for this context size, as
        llama.cpp does per context."""
        if self.rope_short is not None and self.rope_long is not None:
            self.rope_freqs = self.rope_long if n_ctx > self.n_ctx_orig else self.rope_short
        return super().new_cache(n_ctx)

    def shift_cache(self, kv: Any, n_keep: int, n_discard: int) -> None:
        """llama.cpp's context shift; with ``rope_freqs`` the keys are re-rotated with the frequency factors."""
        if self.rope_freqs is None:
            super().shift_cache(kv, n_keep, n_discard)
            return
        if n_discard <= 0:
            return
        if n_keep < 0 or n_keep + n_discard > kv.n_past:
            raise ValueError(f"cannot discard {n_discard} tokens after {n_keep} of {kv.n_past}")
        hp = self.hp
        for il in range(hp.n_layer):
            self.lib.emb_kv_shift_ff(self.ctx, kv.k_ptrs[il], kv.v_ptrs[il], kv.n_past, n_keep, n_discard,
                                     hp.n_head_kv, hp.head_dim, self.n_rot, hp.rope_base, hp.rope_scale,
                                     self.rope_mode, self.rope_freqs)
        del kv.tokens[n_keep : n_keep + n_discard]

    def _rope(self, x: Any, n: int, n_heads: int) -> None:
        hp, lib = self.hp, self.lib
        if self.rope_freqs is None:
            lib.emb_rope(self.ctx, x, n, n_heads, hp.head_dim, self.n_rot, self.buf.pos.ptr, hp.rope_base,
                         hp.rope_scale, self.rope_mode)
        else:
            lib.emb_rope_ff(self.ctx, x, n, n_heads, hp.head_dim, self.n_rot, self.buf.pos.ptr, hp.rope_base,
                            hp.rope_scale, self.rope_mode, self.rope_freqs)

    def _forward_layers(self, n: int, segments: list[Segment]) -> None:
        hp, lib, ctx, b, k_ = self.hp, self.lib, self.ctx, self.buf, self.k
        eps = hp.norm_eps
        x, h, h2 = b.x.ptr, b.h.ptr, b.h2.ptr
        q, k, v, att = b.q.ptr, b.k.ptr, b.v.ptr, b.att.ptr
        gate, up = b.gate.ptr, b.up.ptr
        seg_ptrs = [(k_.at(b.q, s.start * hp.q_dim), k_.at(b.k, s.start * hp.kv_dim), k_.at(b.v, s.start * hp.kv_dim),
                     k_.at(b.att, s.start * hp.q_dim), s) for s in segments]
        lib.emb_get_rows(ctx, self.tok_embd.ptr, self.tok_embd.type, hp.n_embd, b.ids.ptr, n, 1.0, x)
        for il, L in enumerate(self.layers):
            lib.emb_rmsnorm(ctx, x, L.attn_norm, h, n, hp.n_embd, eps)
            self.matmul_group(L.qkv, h, n)
            for bias, dst, dim in ((L.bq, q, hp.q_dim), (L.bk, k, hp.kv_dim), (L.bv, v, hp.kv_dim)):
                if bias is not None:
                    lib.emb_add_rows(ctx, bias, dst, n, dim)
            if L.q_norm is not None:
                lib.emb_rmsnorm(ctx, q, L.q_norm, q, n * hp.n_head, hp.head_dim, eps)
            if L.k_norm is not None:
                lib.emb_rmsnorm(ctx, k, L.k_norm, k, n * hp.n_head_kv, hp.head_dim, eps)
            self._rope(q, n, hp.n_head)
            self._rope(k, n, hp.n_head_kv)
            for sq, sk, sv, satt, seg in seg_ptrs:
                kc, vc = seg.kv.k_ptrs[il], seg.kv.v_ptrs[il]
                lib.emb_kv_store(ctx, sk, sv, kc, vc, seg.n, hp.kv_dim, hp.kv_dim, hp.kv_dim, seg.pos0)
                lib.emb_attention(ctx, sq, kc, vc, satt, seg.n, hp.n_head, hp.n_head_kv, hp.head_dim, hp.q_dim,
                                  seg.pos0, 0, self.attn_scale, 0.0)
            self.matmul(L.wo, att, n, h2)
            lib.emb_add(ctx, h2, x, n * hp.n_embd)
            lib.emb_rmsnorm(ctx, x, L.ffn_norm, h, n, hp.n_embd, eps)
            self.matmul_group(L.gate_up, h, n)
            lib.emb_glu(ctx, gate, up, gate, n, hp.n_ff, hp.n_ff, hp.n_ff, ACT_SILU)
            self.matmul(L.w_down, gate, n, h2)
            lib.emb_add(ctx, h2, x, n * hp.n_embd)
