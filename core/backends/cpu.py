"""The ``cpu`` backend: the C kernels of ``wasm_kernels/`` (cffi natively, ctypes in Pyodide) on host memory.

It owns one kernel context (thread pool, SIMD level, call counter) and offers the named ops a model's forward pass
is made of.  Buffers are host arrays (``Buffer``); weights point into the memory-mapped GGUF file.  This is the
only place outside the bindings that turns buffers into kernel pointers and offsets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from emberllm.backends.binding import Buffer, KernelError, Kernels
from emberllm.backends.kv_cache import KVCache
from emberllm.models.base import MatrixGroup, Weight, WeightStore


class CpuBackend:
    """Named ops over host buffers, computed by the C kernels at one SIMD level with ``n_threads`` threads."""

    name = "cpu"

    def __init__(self, kernels: Kernels, n_threads: int, level: int) -> None:
        self.kernels = kernels
        self.lib = kernels.lib
        self.level = level
        self.n_threads = n_threads
        self.ctx = self.lib.emb_ctx_new(n_threads, level)
        if not self.ctx:
            raise KernelError(f"cannot create a kernel context (level {kernels.level_name(level)})")

    def close(self) -> None:
        """Free the kernel context (thread pool and scratch memory)."""
        if self.ctx:
            self.lib.emb_ctx_free(self.ctx)
            self.ctx = None

    @property
    def level_name(self) -> str:
        """The SIMD level in use (``avx512``, ``neon-dotprod``, ``wasm-relaxed``...)."""
        return self.kernels.level_name(self.level)

    @property
    def calls(self) -> int:
        """Kernel calls made so far on this backend."""
        return int(self.lib.emb_ctx_calls(self.ctx))

    # -- memory --------------------------------------------------------------------------------------------
    def f32(self, n: int) -> Buffer:
        """A zeroed float32 buffer."""
        return self.kernels.f32(n)

    def i32(self, n: int) -> Buffer:
        """A zeroed int32 buffer."""
        return self.kernels.i32(n)

    def new_kv_cache(self, n_layer: int, n_ctx: int, kv_dim: int, device: Any = None,
                     device_layers: range = range(0), type_k: str = "f16", type_v: str = "f16") -> KVCache:
        """An empty KV cache of ``n_ctx`` positions in host memory (``device_layers`` on ``device``), K rows of
        ``type_k`` and V rows of ``type_v`` (llama.cpp's cache type names)."""
        return KVCache(self.kernels, n_layer, n_ctx, kv_dim, device, device_layers, type_k, type_v)

    def load_matrix(self, store: WeightStore, name: str, n_in: int, n_out: int | None = None) -> Weight:
        """A weight matrix of the file, used in place (memory-mapped)."""
        return store.matrix(name, n_in, n_out)

    def load_split(self, store: WeightStore, name: str, n_in: int, sizes: list[int], names: list[str]) -> list[Weight]:
        """A fused matrix of the file as views of its consecutive row blocks."""
        return self.split_rows(store.matrix(name, n_in, sum(sizes)), sizes, names)

    def load_vector(self, store: WeightStore, name: str, n: int) -> Any:
        """A 1-D tensor of the file as a float32 pointer."""
        return store.vector_f32(name, n)

    def read(self, buf: Buffer, n: int) -> memoryview:
        """The first ``n`` values of a buffer (host memory already)."""
        return buf.view[:n]

    def write(self, buf: Buffer, data: Any) -> None:
        """Copy host values into the start of a buffer."""
        mv = memoryview(data).cast("B")
        buf.view.cast("B")[: len(mv)] = mv

    def row(self, buf: Buffer, row: int, width: int) -> Any:
        """Pointer to row ``row`` of ``buf`` seen as rows of ``width`` elements."""
        return self.kernels.at(buf, row * width)

    def group(self, weights: list[Weight], outputs: list[Buffer]) -> MatrixGroup:
        """Matrices applied to one input in one call, each writing its own output buffer."""
        return MatrixGroup.build(self.kernels, weights, [b.ptr for b in outputs])

    def split_rows(self, fused: Weight, sizes: list[int], names: list[str]) -> list[Weight]:
        """Views of consecutive row blocks of a fused matrix (rows are contiguous in every GGML type)."""
        if sum(sizes) != fused.n_out:
            raise ValueError(f"{fused.name}: {fused.n_out} rows cannot be split into {sizes}")
        row_bytes = int(self.lib.emb_row_size(fused.type, fused.n_in))
        parts, row = [], 0
        for size, name in zip(sizes, names, strict=True):
            parts.append(Weight(name, fused.ptr + row * row_bytes, fused.type, size, fused.n_in))
            row += size
        return parts

    @contextlib.contextmanager
    def row_by_row(self, n_tokens: int, enabled: bool = True) -> Iterator[None]:
        """While active (and ``enabled``), products of up to ``n_tokens`` tokens stay on the row-by-row kernels
        instead of the batched GEMM, so each row gets exactly the result it would get alone."""
        if not enabled:
            yield
            return
        old = self.lib.emb_ctx_set_gemm_min_tokens(self.ctx, n_tokens + 1)
        try:
            yield
        finally:
            self.lib.emb_ctx_set_gemm_min_tokens(self.ctx, old)

    # -- ops -----------------------------------------------------------------------------------------------
    def get_rows(self, table: Weight, ids: Buffer, n: int, scale: float, out: Buffer) -> None:
        """``out[i] = table[ids[i]] * scale`` (embedding lookup, dequantized)."""
        rc = self.lib.emb_get_rows(self.ctx, table.ptr, table.type, table.n_in, ids.ptr, n, scale, out.ptr)
        if rc != 0:
            raise KernelError(f"get_rows failed for {table.name} (code {rc})")

    def rms_norm(self, x: Any, w: Any, out: Any, n_rows: int, dim: int, eps: float) -> None:
        """``out = x / rms(x) * w`` per row (``x``/``out`` buffers or row pointers; ``w`` a loaded vector)."""
        self.lib.emb_rmsnorm(self.ctx, _ptr(x), w, _ptr(out), n_rows, dim, eps)

    def rms_norm_add(self, x: Buffer, w: Any, acc: Buffer, n_rows: int, dim: int, eps: float) -> None:
        """``acc += x / rms(x) * w`` per row (a post-norm into the residual)."""
        self.lib.emb_rmsnorm_add(self.ctx, x.ptr, w, acc.ptr, n_rows, dim, eps)

    def add(self, x: Buffer, acc: Buffer, n: int) -> None:
        """``acc += x`` over ``n`` elements (the residual)."""
        self.lib.emb_add(self.ctx, x.ptr, acc.ptr, n)

    def add_rows(self, bias: Any, x: Buffer, n_rows: int, dim: int) -> None:
        """``x[i] += bias`` for each row."""
        self.lib.emb_add_rows(self.ctx, bias, x.ptr, n_rows, dim)

    def matmul(self, w: Weight, x: Any, n: int, out: Any) -> None:
        """``out[n, w.n_out] = x[n, w.n_in] @ w.T`` (``x``/``out`` buffers or row pointers)."""
        rc = self.lib.emb_matmul(self.ctx, w.ptr, w.type, w.n_out, w.n_in, _ptr(x), n, _ptr(out))
        if rc != 0:
            raise KernelError(f"matmul failed for {w.name} (code {rc})")

    def matmul_group(self, g: MatrixGroup, x: Buffer, n: int) -> None:
        """Every matrix of ``g`` applied to ``x`` in one call."""
        rc = self.lib.emb_matmul_multi(self.ctx, len(g.weights), g.ws, g.types, g.n_outs, g.weights[0].n_in, x.ptr,
                                       n, g.ys)
        if rc != 0:
            raise KernelError(f"matmul failed for {', '.join(w.name for w in g.weights)} (code {rc})")

    def add_rows_scaled(self, x: Buffer, rows: Buffer, scales: Buffer, acc: Buffer, n_rows: int, dim: int) -> None:
        """``acc[rows[i]] += scales[i] * x[i]`` for ``n_rows`` rows of ``dim`` (experts' weighted outputs)."""
        self.lib.emb_add_rows_scaled(self.ctx, x.ptr, rows.ptr, scales.ptr, acc.ptr, n_rows, dim)

    def softcap(self, x: Buffer, n: int, cap: float) -> None:
        """``x = tanh(x / cap) * cap`` over ``n`` values (final logit soft-capping)."""
        self.lib.emb_softcap(self.ctx, x.ptr, n, cap)

    def rope(self, x: Buffer, n: int, n_heads: int, head_dim: int, n_rot: int, pos: Buffer, base: float,
             scale: float, mode: int, freq_factors: Any = None) -> None:
        """Rotary position embedding of ``n`` rows of ``n_heads`` heads in place (optional frequency factors)."""
        if freq_factors is None:
            self.lib.emb_rope(self.ctx, x.ptr, n, n_heads, head_dim, n_rot, pos.ptr, base, scale, mode)
        else:
            self.lib.emb_rope_ff(self.ctx, x.ptr, n, n_heads, head_dim, n_rot, pos.ptr, base, scale, mode,
                                 freq_factors)

    def glu(self, gate: Buffer, up: Buffer, n: int, n_ff: int, act: int) -> None:
        """``gate = act(gate) * up`` over ``n`` rows of ``n_ff`` (SiLU or GELU gated units)."""
        self.lib.emb_glu(self.ctx, gate.ptr, up.ptr, gate.ptr, n, n_ff, n_ff, n_ff, act)

    def attention(self, kv: KVCache, layer: int, q: Any, k: Any, v: Any, out: Any, n: int, pos0: int, n_head: int,
                  n_head_kv: int, head_dim: int, window: int, scale: float, softcap: float = 0.0) -> None:
        """Store ``n`` rows of K/V at ``pos0`` in layer ``layer`` of ``kv``, then causal attention of the ``n``
        query rows over positions ``0 .. pos0 + n`` (``window`` > 0: sliding window; ``softcap`` > 0: scores
        soft-capped before the softmax) into ``out``."""
        kc, vc = kv.k_ptrs[layer], kv.v_ptrs[layer]
        tk, tv = kv.type_ids
        kv_dim = n_head_kv * head_dim
        rc = self.lib.emb_kv_store_typed(self.ctx, k, v, kc, vc, tk, tv, n, n_head_kv, head_dim, kv_dim, kv_dim, pos0)
        if rc == 0:
            rc = self.lib.emb_attention_typed(self.ctx, q, kc, vc, tk, tv, out, n, n_head, n_head_kv, head_dim,
                                              n_head * head_dim, pos0, window, scale, softcap)
        if rc != 0:
            raise KernelError(f"attention failed in layer {layer} (code {rc})")

    def batch_path_min_rows(self) -> int:
        """The fewest rows a decode needs for the kernels' batch paths (the int8 GEMM, the float attention): a
        prompt evaluated in pieces of at least this many rows gives the same logits as in one micro-batch.  Read
        from the kernel context, whose setters return the value they replace."""
        gemm = self.lib.emb_ctx_set_gemm_min_tokens(self.ctx, 1)
        self.lib.emb_ctx_set_gemm_min_tokens(self.ctx, gemm)
        half = self.lib.emb_ctx_set_attn_half_rows(self.ctx, 0)
        self.lib.emb_ctx_set_attn_half_rows(self.ctx, half)
        return int(max(gemm, half))

    def argmax(self, row: Any, n: int) -> int:
        """The index of the largest of ``n`` values of a row (a ``row()`` pointer; the first on ties)."""
        return int(self.lib.emb_argmax(row, n))

    def log_softmax_at(self, row: Any, n: int, index: int) -> float:
        """``log softmax(row)[index]`` of a row of ``n`` logits (a ``row()`` pointer), in double precision."""
        return float(self.lib.emb_log_softmax_at(row, n, index))

    def kv_shift(self, kv: KVCache, layer: int, n_keep: int, n_discard: int, n_head_kv: int, head_dim: int,
                 n_rot: int, base: float, scale: float, mode: int, freq_factors: Any = None) -> None:
        """Drop positions ``[n_keep, n_keep + n_discard)`` of one layer and re-rotate the later keys."""
        kc, vc = kv.k_ptrs[layer], kv.v_ptrs[layer]
        tk, tv = kv.type_ids
        ff = self.kernels.null if freq_factors is None else freq_factors
        rc = self.lib.emb_kv_shift_typed(self.ctx, kc, vc, tk, tv, kv.n_past, n_keep, n_discard, n_head_kv, head_dim,
                                         n_rot, base, scale, mode, ff)
        if rc != 0:
            raise KernelError(f"context shift failed in layer {layer} (code {rc})")


def _ptr(x: Any) -> Any:
    """A buffer's pointer, or ``x`` itself when it already is one (a row pointer)."""
    return x.ptr if isinstance(x, Buffer) else x
