"""Gemma 3 (``general.architecture = gemma3``).

Pre- and post-norms around attention and the feed-forward block, QK-norm, GeGLU with GELU(tanh),
embeddings scaled by sqrt(n_embd), sliding-window attention on 5 of every 6 layers (local RoPE base 1e4,
global base from the file), output projection tied to the token embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from emberllm.models.base import HParams, MatrixGroup, Weight, WeightStore
from emberllm.models.transformer import Segment, TransformerModel

ROPE_NEOX = 2
ACT_GELU_TANH = 1
SWA_PATTERN = 6
LOCAL_ROPE_BASE = 10000.0


@dataclass
class Gemma3Layer:
    """The weights of one block and its attention settings."""

    attn_norm: Any
    wq: Weight
    wk: Weight
    wv: Weight
    q_norm: Any
    k_norm: Any
    wo: Weight
    post_attn_norm: Any
    ffn_norm: Any
    w_gate: Weight
    w_up: Weight
    w_down: Weight
    post_ffn_norm: Any
    window: int
    rope_base: float
    rope_scale: float
    qkv: MatrixGroup | None = None
    gate_up: MatrixGroup | None = None


class Gemma3(TransformerModel):
    """Gemma 3 forward pass driven from Python, computed by the kernels."""

    def _read_hparams(self) -> HParams:
        hp = HParams.from_gguf(self.gguf)
        md = self.gguf.metadata
        self.attn_scale = 1.0 / math.sqrt(float(md.get("gemma3.attention.key_length", hp.head_dim)))
        return hp

    def _load_layers(self, w: WeightStore) -> None:
        hp = self.hp
        md = self.gguf.metadata
        swa_base = float(md.get("gemma3.rope.freq_base_swa", LOCAL_ROPE_BASE))
        self.tok_embd = w.matrix("token_embd.weight", hp.n_embd, hp.n_vocab)
        self.output = w.matrix("output.weight", hp.n_embd, hp.n_vocab) if w.has("output.weight") else self.tok_embd
        self.output_norm = w.vector_f32("output_norm.weight", hp.n_embd)
        self.embd_scale = math.sqrt(hp.n_embd)
        self.layers = []
        for il in range(hp.n_layer):
            p = f"blk.{il}."
            is_swa = hp.sliding_window > 0 and (il + 1) % SWA_PATTERN != 0
            self.layers.append(
                Gemma3Layer(
                    attn_norm=w.vector_f32(p + "attn_norm.weight", hp.n_embd),
                    wq=w.matrix(p + "attn_q.weight", hp.n_embd, hp.q_dim),
                    wk=w.matrix(p + "attn_k.weight", hp.n_embd, hp.kv_dim),
                    wv=w.matrix(p + "attn_v.weight", hp.n_embd, hp.kv_dim),
                    q_norm=w.vector_f32(p + "attn_q_norm.weight", hp.head_dim),
                    k_norm=w.vector_f32(p + "attn_k_norm.weight", hp.head_dim),
                    wo=w.matrix(p + "attn_output.weight", hp.q_dim, hp.n_embd),
                    post_attn_norm=w.vector_f32(p + "post_attention_norm.weight", hp.n_embd),
                    ffn_norm=w.vector_f32(p + "ffn_norm.weight", hp.n_embd),
                    w_gate=w.matrix(p + "ffn_gate.weight", hp.n_embd, hp.n_ff),
                    w_up=w.matrix(p + "ffn_up.weight", hp.n_embd, hp.n_ff),
                    w_down=w.matrix(p + "ffn_down.weight", hp.n_ff, hp.n_embd),
                    post_ffn_norm=w.vector_f32(p + "post_ffw_norm.weight", hp.n_embd),
                    window=hp.sliding_window if is_swa else 0,
                    rope_base=swa_base if is_swa else hp.rope_base,
                    rope_scale=1.0 if is_swa else hp.rope_scale,
                )
            )
            layer = self.layers[-1]
            b, k = self.buf, self.k
            layer.qkv = MatrixGroup.build(k, [layer.wq, layer.wk, layer.wv], [b.q.ptr, b.k.ptr, b.v.ptr])
            layer.gate_up = MatrixGroup.build(k, [layer.w_gate, layer.w_up], [b.gate.ptr, b.up.ptr])

    def _rope_params(self, il: int) -> tuple[int, float, float, int]:
        layer = self.layers[il]
        return self.hp.head_dim, layer.rope_base, layer.rope_scale, ROPE_NEOX

    def _forward_layers(self, n: int, segments: list[Segment]) -> None:
        hp, lib, ctx, b, k_ = self.hp, self.lib, self.ctx, self.buf, self.k
        eps = hp.norm_eps
        x, h, h2 = b.x.ptr, b.h.ptr, b.h2.ptr
        q, k, att = b.q.ptr, b.k.ptr, b.att.ptr
        gate, up = b.gate.ptr, b.up.ptr
        pos = b.pos.ptr
        # per sequence: its rows of q/k/v/att and its cache
        seg_ptrs = [(k_.at(b.q, s.start * hp.q_dim), k_.at(b.k, s.start * hp.kv_dim), k_.at(b.v, s.start * hp.kv_dim),
                     k_.at(b.att, s.start * hp.q_dim), s) for s in segments]
        lib.emb_get_rows(ctx, self.tok_embd.ptr, self.tok_embd.type, hp.n_embd, b.ids.ptr, n, self.embd_scale, x)
        for il, L in enumerate(self.layers):
            lib.emb_rmsnorm(ctx, x, L.attn_norm, h, n, hp.n_embd, eps)
            self.matmul_group(L.qkv, h, n)
            lib.emb_rmsnorm(ctx, q, L.q_norm, q, n * hp.n_head, hp.head_dim, eps)
            lib.emb_rmsnorm(ctx, k, L.k_norm, k, n * hp.n_head_kv, hp.head_dim, eps)
            lib.emb_rope(ctx, q, n, hp.n_head, hp.head_dim, hp.head_dim, pos, L.rope_base, L.rope_scale, ROPE_NEOX)
            lib.emb_rope(ctx, k, n, hp.n_head_kv, hp.head_dim, hp.head_dim, pos, L.rope_base, L.rope_scale, ROPE_NEOX)
            for sq, sk, sv, satt, seg in seg_ptrs:
                kc, vc = seg.kv.k_ptrs[il], seg.kv.v_ptrs[il]
                lib.emb_kv_store(ctx, sk, sv, kc, vc, seg.n, hp.kv_dim, hp.kv_dim, hp.kv_dim, seg.pos0)
                lib.emb_attention(ctx, sq, kc, vc, satt, seg.n, hp.n_head, hp.n_head_kv, hp.head_dim, hp.q_dim,
                                  seg.pos0, L.window, self.attn_scale, 0.0)
            self.matmul(L.wo, att, n, h2)
            lib.emb_rmsnorm_add(ctx, h2, L.post_attn_norm, x, n, hp.n_embd, eps)
            lib.emb_rmsnorm(ctx, x, L.ffn_norm, h, n, hp.n_embd, eps)
            self.matmul_group(L.gate_up, h, n)
            lib.emb_glu(ctx, gate, up, gate, n, hp.n_ff, hp.n_ff, hp.n_ff, ACT_GELU_TANH)
            self.matmul(L.w_down, gate, n, h2)
            lib.emb_rmsnorm_add(ctx, h2, L.post_ffn_norm, x, n, hp.n_embd, eps)
