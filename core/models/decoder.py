"""The pre-norm decoder block every supported architecture shares, written once over a backend's named ops.

RMSNorm (none in OLMo 2) -> Q/K/V (separate or fused ``attn_qkv``; optional biases; optional QK-norm per head or
per row) -> RoPE (NORMAL or NEOX, optional ``rope_freqs`` / long-rope factors) -> attention over each sequence's KV
cache (optional sliding window and score soft-capping) -> output projection -> residual (or post-norm into it) ;
RMSNorm -> gated unit (SiLU or GELU-tanh; separate gate/up or fused ``ffn_up``) -> down projection, or the
mixture-of-experts block of ``models/moe.py`` in layers with ``ffn_gate_inp`` -> residual (or post-norm).  An
``ArchSpec`` states what a family does differently.  Logits are computed only for the rows asked for, through the
final norm and the output projection (``output.weight``, or tied to ``token_embd``), soft-capped for Gemma 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from emberllm.backends.binding import Buffer
from emberllm.backends.kv_cache import KVCache
from emberllm.gguf.reader import GGUFFile
from emberllm.models import UnsupportedModelError
from emberllm.models.base import HParams, MatrixGroup, Weight, WeightStore
from emberllm.models.moe import MoeConfig, MoeFFN, MoeScratch, alloc_scratch, expert_ffn_width
from emberllm.models.spec import ArchSpec

#: Logit rows computed per output matmul.
LOGIT_GROUP = 16


class ContextFullError(RuntimeError):
    """The tokens do not fit in the KV cache."""


@dataclass
class Segment:
    """Rows ``start .. start + n`` of a micro-batch belong to the sequence cached in ``kv``, from ``pos0`` on."""

    kv: KVCache
    start: int
    n: int
    pos0: int


@dataclass
class Activations:
    """Scratch activations for one micro-batch of up to ``n_batch`` tokens."""

    x: Buffer
    h: Buffer
    h2: Buffer
    q: Buffer
    k: Buffer
    v: Buffer
    att: Buffer
    gate: Buffer
    up: Buffer
    ids: Buffer
    pos: Buffer
    logits: Buffer


@dataclass
class Layer:
    """One block's weights (optional parts ``None``), its attention settings and the backend that runs it."""

    ops: Any
    attn_norm: Any
    qkv: MatrixGroup
    bq: Any
    bk: Any
    bv: Any
    q_norm: Any
    k_norm: Any
    wo: Weight
    post_attn_norm: Any
    ffn_norm: Any
    gate_up: MatrixGroup | None
    w_down: Weight | None
    post_ffn_norm: Any
    window: int
    rope_base: float
    rope_scale: float
    #: a mixture-of-experts FFN in place of gate_up / w_down (layers with ``ffn_gate_inp``)
    moe: MoeFFN | None = None


class Decoder:
    """A loaded decoder: weights (zero-copy from the GGUF file), hyper-parameters and scratch buffers on ``ops``."""

    def __init__(self, gguf: GGUFFile, spec: ArchSpec, ops: Any, n_batch: int = 512, device: Any = None,
                 n_device_layers: int = 0) -> None:
        self.gguf = gguf
        self.spec = spec
        self.n_batch = n_batch
        #: KV cache types of the sequences made by ``new_cache`` (llama.cpp's -ctk/-ctv; set by the model)
        self.cache_type_k = self.cache_type_v = "f16"
        md = gguf.metadata
        self.hp = hp = HParams.from_gguf(gguf)
        self.n_rot = hp.head_dim if spec.rope_full_head else int(md.get(f"{hp.arch}.rope.dimension_count",
                                                                          hp.head_dim))
        self.n_ctx_orig = int(md.get(f"{hp.arch}.rope.scaling.original_context_length", hp.n_ctx_train))
        # long-rope's attention factor scales cos and sin (llama.cpp), i.e. q and k: the scores by its square
        attn_factor = float(md.get(f"{hp.arch}.rope.scaling.attn_factor", 1.0))
        self.attn_scale = attn_factor * attn_factor * (spec.query_scale(hp) if spec.query_scale is not None
                                                        else 1.0 / math.sqrt(hp.head_dim))
        # Gemma 2's soft-capping of attention scores and final logits (0: none)
        self.attn_softcap = float(md.get(f"{hp.arch}.attn_logit_softcapping", 50.0)) if spec.softcap else 0.0
        self.final_softcap = float(md.get(f"{hp.arch}.final_logit_softcapping", 30.0)) if spec.softcap else 0.0
        # offload like llama.cpp's -ngl: the last n_device_layers layers on the device; all of them -> the
        # embeddings, the final norm and the output projection too
        n_dev = min(max(n_device_layers, 0), hp.n_layer) if device is not None else 0
        self.host_ops = ops
        self.device = device if n_dev else None
        self.device_layers = range(hp.n_layer - n_dev, hp.n_layer)
        self.ops = device if n_dev == hp.n_layer else ops
        # every backend holds weights (the host keeps its RoPE factors for the context shift); activations live
        # where layers run: one backend, or both for a partial offload
        self._backends = [ops] + ([device] if n_dev else [])
        running = self._backends if 0 < n_dev < hp.n_layer else [self.ops]
        self._bufs = {id(b): self._alloc_activations(b) for b in running}
        self.buf = self._bufs[id(self.ops)]
        self.weights = WeightStore(gguf, ops.kernels)
        self._moe_scratch: MoeScratch | None = None
        self._load_io(self.weights)
        self.layers = [self._load_layer(self.weights, il) for il in range(hp.n_layer)]
        self._host_logits: Buffer | None = None
        self._host_rows: set[int] = set()

    # -- loading -------------------------------------------------------------------------------------------
    def _alloc_activations(self, ops: Any) -> Activations:
        hp, nb = self.hp, self.n_batch
        return Activations(
            x=ops.f32(nb * hp.n_embd), h=ops.f32(nb * max(hp.n_embd, hp.q_dim)), h2=ops.f32(nb * hp.n_embd),
            q=ops.f32(nb * hp.q_dim), k=ops.f32(nb * hp.kv_dim), v=ops.f32(nb * hp.kv_dim),
            att=ops.f32(nb * hp.q_dim), gate=ops.f32(nb * hp.n_ff), up=ops.f32(nb * hp.n_ff),
            ids=ops.i32(nb), pos=ops.i32(nb), logits=ops.f32(LOGIT_GROUP * hp.n_vocab),
        )

    def _optional(self, w: WeightStore, ops: Any, name: str, n: int, required: bool = False) -> Any:
        return ops.load_vector(w, name, n) if required or w.has(name) else None

    def _load_io(self, w: WeightStore) -> None:
        """Token embeddings, final norm, output projection (tied when absent) and RoPE frequency factors."""
        hp, ops = self.hp, self.ops
        self.tok_embd = ops.load_matrix(w, "token_embd.weight", hp.n_embd, hp.n_vocab)
        self.output = (ops.load_matrix(w, "output.weight", hp.n_embd, hp.n_vocab) if w.has("output.weight")
                       else self.tok_embd)
        self.output_norm = ops.load_vector(w, "output_norm.weight", hp.n_embd)
        self.embd_scale = math.sqrt(hp.n_embd) if self.spec.scale_embeddings else 1.0
        half = self.n_rot // 2
        # per backend: rope_freqs, then Phi-3 long-rope's short and long factors (chosen per context size)
        self._rope_sets = {id(b): tuple(self._optional(w, b, name, half) for name in (
            "rope_freqs.weight", "rope_factors_short.weight", "rope_factors_long.weight")) for b in self._backends}
        self._rope_long = False

    def _freq_factors(self, ops: Any) -> Any:
        """The RoPE frequency factors in use on ``ops`` (``None`` when the model has none)."""
        freqs, short, long = self._rope_sets[id(ops)]
        if short is not None and long is not None:
            return long if self._rope_long else short
        return freqs if freqs is not None else short

    @property
    def rope_freqs(self) -> Any:
        """The host copy of the RoPE frequency factors in use."""
        return self._freq_factors(self.host_ops)

    def _load_layer(self, w: WeightStore, il: int) -> Layer:
        hp, spec = self.hp, self.spec
        ops = self.device if il in self.device_layers else self.host_ops
        b = self._bufs[id(ops)]
        p = f"blk.{il}."
        if w.has(p + "attn_qkv.weight"):
            wq, wk, wv = ops.load_split(w, p + "attn_qkv.weight", hp.n_embd, [hp.q_dim, hp.kv_dim, hp.kv_dim],
                                        [p + "q", p + "k", p + "v"])
        else:
            wq = ops.load_matrix(w, p + "attn_q.weight", hp.n_embd, hp.q_dim)
            wk = ops.load_matrix(w, p + "attn_k.weight", hp.n_embd, hp.kv_dim)
            wv = ops.load_matrix(w, p + "attn_v.weight", hp.n_embd, hp.kv_dim)
        moe, gate_up, w_down = None, None, None
        if w.has(p + "ffn_gate_inp.weight"):
            moe = self._load_moe(w, ops, p)
        else:
            if w.has(p + "ffn_gate.weight"):
                w_gate = ops.load_matrix(w, p + "ffn_gate.weight", hp.n_embd, hp.n_ff)
                w_up = ops.load_matrix(w, p + "ffn_up.weight", hp.n_embd, hp.n_ff)
            else:
                w_gate, w_up = ops.load_split(w, p + "ffn_up.weight", hp.n_embd, [hp.n_ff, hp.n_ff],
                                              [p + "gate", p + "up"])
            gate_up = ops.group([w_gate, w_up], [b.gate, b.up])
            w_down = ops.load_matrix(w, p + "ffn_down.weight", hp.n_ff, hp.n_embd)
        is_swa = spec.swa_pattern > 0 and hp.sliding_window > 0 and (il + 1) % spec.swa_pattern != 0
        swa_base = float(self.gguf.metadata.get(f"{hp.arch}.rope.freq_base_swa", spec.swa_rope_base or hp.rope_base))
        q_norm_dim, k_norm_dim = (hp.q_dim, hp.kv_dim) if spec.qk_norm_whole else (hp.head_dim, hp.head_dim)
        return Layer(
            ops=ops,
            attn_norm=self._optional(w, ops, p + "attn_norm.weight", hp.n_embd, spec.pre_norms),
            qkv=ops.group([wq, wk, wv], [b.q, b.k, b.v]),
            bq=self._optional(w, ops, p + "attn_q.bias", hp.q_dim),
            bk=self._optional(w, ops, p + "attn_k.bias", hp.kv_dim),
            bv=self._optional(w, ops, p + "attn_v.bias", hp.kv_dim),
            q_norm=self._optional(w, ops, p + "attn_q_norm.weight", q_norm_dim, spec.qk_norm),
            k_norm=self._optional(w, ops, p + "attn_k_norm.weight", k_norm_dim, spec.qk_norm),
            wo=ops.load_matrix(w, p + "attn_output.weight", hp.q_dim, hp.n_embd),
            post_attn_norm=self._optional(w, ops, p + "post_attention_norm.weight", hp.n_embd, spec.post_norms),
            ffn_norm=self._optional(w, ops, p + "ffn_norm.weight", hp.n_embd, spec.pre_norms),
            gate_up=gate_up,
            w_down=w_down,
            post_ffn_norm=self._optional(w, ops, p + "post_ffw_norm.weight", hp.n_embd, spec.post_norms),
            window=hp.sliding_window if is_swa else 0,
            rope_base=swa_base if is_swa else hp.rope_base,
            rope_scale=1.0 if is_swa else hp.rope_scale,
            moe=moe,
        )

    def _load_moe(self, w: WeightStore, ops: Any, prefix: str) -> MoeFFN:
        """A layer's router and experts (models/moe.py), run on the host backend."""
        if ops is not self.host_ops:
            raise UnsupportedModelError(f"{self.hp.arch}: mixture-of-experts layers run on the CPU only; "
                                        "offload fewer layers (-ngl 0)")
        cfg = MoeConfig.from_metadata(self.gguf.metadata, self.hp.arch)
        if self._moe_scratch is None:
            self._moe_scratch = alloc_scratch(ops, self.n_batch, self.hp.n_embd, expert_ffn_width(w, prefix),
                                              cfg.n_expert)
        return MoeFFN(ops, w, prefix, self.hp.n_embd, cfg, self._moe_scratch)

    def set_context(self, n_ctx: int) -> None:
        """Pick what depends on the context size: long-rope's factors (long beyond the original context), as
        llama.cpp does per context."""
        self._rope_long = n_ctx > self.n_ctx_orig

    def new_cache(self, n_ctx: int) -> KVCache:
        """An empty KV cache for ``n_ctx`` positions in the cache types (offloaded layers' rows on the device)."""
        return self.host_ops.new_kv_cache(self.hp.n_layer, n_ctx, self.hp.kv_dim, self.device, self.device_layers,
                                          self.cache_type_k, self.cache_type_v)

    # -- the forward pass ----------------------------------------------------------------------------------
    def load_rows(self, entries: list[tuple[KVCache, list[int]]]) -> list[Segment]:
        """Write the ids and positions of ``entries`` into the micro-batch; one segment per entry."""
        ids, pos = self.buf.ids.view, self.buf.pos.view
        segments, row = [], 0
        for kv, toks in entries:
            pos0 = kv.n_past
            for i, t in enumerate(toks):
                ids[row + i] = t
                pos[row + i] = pos0 + i
            segments.append(Segment(kv, row, len(toks), pos0))
            row += len(toks)
        for b in self._bufs.values():
            if b is not self.buf:
                b.pos.view[:row] = pos[:row]
        return segments

    def forward(self, n: int, segments: list[Segment]) -> None:
        """Run every block over the ``n`` rows loaded by ``load_rows``; each segment attends to its own cache."""
        hp, eps = self.hp, self.hp.norm_eps
        self.ops.get_rows(self.tok_embd, self.buf.ids, n, self.embd_scale, self.buf.x)
        here = self.ops
        for il, L in enumerate(self.layers):
            ops = L.ops
            if ops is not here:
                self._move_residual(here, ops, n)
                here = ops
            b = self._bufs[id(ops)]
            ops.matmul_group(L.qkv, self._pre_norm(ops, L.attn_norm, n), n)
            for bias, dst, dim in ((L.bq, b.q, hp.q_dim), (L.bk, b.k, hp.kv_dim), (L.bv, b.v, hp.kv_dim)):
                if bias is not None:
                    ops.add_rows(bias, dst, n, dim)
            whole = self.spec.qk_norm_whole  # one RMSNorm per token row, else one per head
            if L.q_norm is not None:
                ops.rms_norm(b.q, L.q_norm, b.q, n if whole else n * hp.n_head, hp.q_dim if whole else hp.head_dim,
                             eps)
            if L.k_norm is not None:
                ops.rms_norm(b.k, L.k_norm, b.k, n if whole else n * hp.n_head_kv,
                             hp.kv_dim if whole else hp.head_dim, eps)
            self._rope(ops, L, b.q, n, hp.n_head)
            self._rope(ops, L, b.k, n, hp.n_head_kv)
            self._attention(ops, il, L, segments)
            ops.matmul(L.wo, b.att, n, b.h2)
            self._residual(ops, L.post_attn_norm, n)
            h = self._pre_norm(ops, L.ffn_norm, n)
            if L.moe is not None:
                L.moe.forward(ops, h, n, b.h2)
            else:
                ops.matmul_group(L.gate_up, h, n)
                ops.glu(b.gate, b.up, n, hp.n_ff, self.spec.act)
                ops.matmul(L.w_down, b.gate, n, b.h2)
            self._residual(ops, L.post_ffn_norm, n)
        if here is not self.ops:
            self._move_residual(here, self.ops, n)

    def _pre_norm(self, ops: Any, norm: Any, n: int) -> Buffer:
        """The input of a sub-block: the RMSNormed residual in ``h``, or the residual itself without a pre-norm."""
        b = self._bufs[id(ops)]
        if norm is None:
            return b.x
        ops.rms_norm(b.x, norm, b.h, n, self.hp.n_embd, self.hp.norm_eps)
        return b.h

    def _move_residual(self, src: Any, dst: Any, n: int) -> None:
        """Hand the residual stream of ``n`` rows from one backend to the next (host <-> device)."""
        count = n * self.hp.n_embd
        dst.write(self._bufs[id(dst)].x, src.read(self._bufs[id(src)].x, count))

    def _rope(self, ops: Any, L: Layer, x: Buffer, n: int, n_heads: int) -> None:
        hp = self.hp
        ops.rope(x, n, n_heads, hp.head_dim, self.n_rot, self._bufs[id(ops)].pos, L.rope_base, L.rope_scale,
                 self.spec.rope_mode, self._freq_factors(ops))

    def _attention(self, ops: Any, il: int, L: Layer, segments: list[Segment]) -> None:
        """Each sequence's rows store their K/V in its own cache and attend over it."""
        hp, b = self.hp, self._bufs[id(ops)]
        for s in segments:
            ops.attention(s.kv, il, ops.row(b.q, s.start, hp.q_dim), ops.row(b.k, s.start, hp.kv_dim),
                          ops.row(b.v, s.start, hp.kv_dim), ops.row(b.att, s.start, hp.q_dim), s.n, s.pos0,
                          hp.n_head, hp.n_head_kv, hp.head_dim, L.window, self.attn_scale, self.attn_softcap)

    def _residual(self, ops: Any, post_norm: Any, n: int) -> None:
        """``x += h2``, through the post-norm when the family has one."""
        hp, b = self.hp, self._bufs[id(ops)]
        if post_norm is None:
            ops.add(b.h2, b.x, n * hp.n_embd)
        else:
            ops.rms_norm_add(b.h2, post_norm, b.x, n, hp.n_embd, hp.norm_eps)

    # -- outputs and the cache -----------------------------------------------------------------------------
    def final_norm(self, row: int, out: Buffer, out_row: int) -> None:
        """The final RMSNorm of micro-batch row ``row`` into row ``out_row`` of ``out``."""
        hp, ops = self.hp, self.ops
        ops.rms_norm(ops.row(self.buf.x, row, hp.n_embd), self.output_norm, ops.row(out, out_row, hp.n_embd), 1,
                     hp.n_embd, hp.norm_eps)

    def project(self, hidden: Any, first: int, n: int) -> None:
        """Logits of ``n`` normed rows of ``hidden`` from row ``first`` on, into ``buf.logits``."""
        ops = self.ops
        ops.matmul(self.output, ops.row(hidden, first, self.hp.n_embd), n, self.buf.logits)
        if self.final_softcap:
            ops.softcap(self.buf.logits, n * self.hp.n_vocab, self.final_softcap)
        self._host_rows.clear()

    def sync(self) -> None:
        """Run what a device backend has recorded (the CPU computes as it goes)."""
        if self.device is not None:
            self.device.flush()

    def logits_row(self, j: int) -> memoryview:
        """Row ``j`` of the last projection as float32 host memory (read back from a device once)."""
        nv = self.hp.n_vocab
        if self.ops is self.host_ops:
            return self.buf.logits.view[j * nv : (j + 1) * nv]
        host = self._host_logits
        if host is None:
            host = self._host_logits = self.host_ops.f32(LOGIT_GROUP * nv)
        if j not in self._host_rows:
            host.view[j * nv : (j + 1) * nv] = self.ops.read(self.ops.row(self.buf.logits, j, nv), nv)
            self._host_rows.add(j)
        return host.view[j * nv : (j + 1) * nv]

    def logits_handle(self, j: int) -> Any:
        """Row ``j`` of the last projection for the host kernels (the sampler)."""
        nv = self.hp.n_vocab
        if self.ops is self.host_ops:
            return self.ops.row(self.buf.logits, j, nv)
        self.logits_row(j)
        return self.host_ops.row(self._host_logits, j, nv)

    def logits_argmax(self, j: int) -> int:
        """The most likely token of row ``j`` (on a device: computed there, a few bytes read back)."""
        nv = self.hp.n_vocab
        if self.ops is not self.host_ops and j not in self._host_rows:
            return self.ops.argmax(self.ops.row(self.buf.logits, j, nv), nv)
        return self.host_ops.argmax(self.logits_handle(j), nv)

    def shift_cache(self, kv: KVCache, n_keep: int, n_discard: int) -> None:
        """Drop positions [n_keep, n_keep + n_discard) and renumber the later ones (llama.cpp's context shift)."""
        if n_discard <= 0:
            return
        if n_keep < 0 or n_keep + n_discard > kv.n_past:
            raise ValueError(f"cannot discard {n_discard} tokens after {n_keep} of {kv.n_past}")
        hp = self.hp
        for il, L in enumerate(self.layers):
            L.ops.kv_shift(kv, il, n_keep, n_discard, hp.n_head_kv, hp.head_dim, self.n_rot, L.rope_base,
                           L.rope_scale, self.spec.rope_mode, self.rope_freqs)
        del kv.tokens[n_keep : n_keep + n_discard]
