"""The ``webgpu`` backend: the decoder's named ops recorded as WGSL dispatches and run as one plan per flush.

Weights are uploaded once (a matrix larger than the adapter's binding limit is split into row blocks, each its own
buffer); activations and KV caches live on the device.  Ops only *record* dispatches; the plan runs when something
is read back (logits, an argmax, ``x`` leaving for the CPU layers) or when host data must be written after it.
``ids`` and ``pos`` have a host mirror (the decoder fills them on the host) uploaded before each plan runs.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from emberllm.backends.binding import Buffer, Kernels
from emberllm.backends.webgpu.device import Dispatch, GpuBuffer, GpuDevice, Readback
from emberllm.backends.webgpu.shaders import quant_types, shader
from emberllm.gguf import types as ggml_types
from emberllm.models.base import Weight, WeightStore
from emberllm.models.spec import ROPE_NEOX

_MAX_GROUPS = 65535


class GpuTensor:
    """An f32 or i32 activation buffer on the device, with an optional host mirror (``view``)."""

    def __init__(self, backend: WebGpuBackend, n: int, fmt: str, label: str, mirrored: bool) -> None:
        self.backend = backend
        self.n = n
        self.fmt = fmt
        self.gpu = backend.device.buffer(4 * max(n, 1), label)
        self._host: Buffer | None = None
        if mirrored:
            self._host = backend.kernels.i32(n) if fmt == "i" else backend.kernels.f32(n)

    @property
    def view(self) -> memoryview:
        """The host mirror, to fill before the next plan (it is uploaded then)."""
        if self._host is None:
            raise TypeError(f"{self.gpu.label} has no host mirror")
        self.backend.dirty.add(self)
        return self._host.view

    def upload(self) -> None:
        """Send the host mirror to the device."""
        if self._host is not None:
            self.backend.device.write(self.gpu, 0, self._host.view)


@dataclass(frozen=True)
class GpuRow:
    """Row ``offset`` (in elements) of a device tensor: what ``row()`` hands out."""

    tensor: GpuTensor
    offset: int


@dataclass
class MatrixPart:
    """Rows ``row0 .. row0 + n_rows`` of a matrix, in one buffer."""

    buffer: GpuBuffer
    row0: int
    n_rows: int


@dataclass
class GpuMatrix:
    """A weight matrix on the device: its GGML type and shape, in row blocks that each fit one binding."""

    name: str
    type: int
    n_out: int
    n_in: int
    row_bytes: int
    parts: list[MatrixPart]


@dataclass
class GpuGroup:
    """Matrices applied to one input, each writing its own output tensor."""

    matrices: list[GpuMatrix]
    outputs: list[GpuTensor]


@dataclass
class GpuKV:
    """One layer's K and V cache on the device: ``n_ctx`` rows of ``kv_dim`` halves each."""

    k: GpuBuffer
    v: GpuBuffer


def _params(*values: int | float) -> bytes:
    """A kernel's uniform struct: ints as u32, floats as f32, in declaration order."""
    return b"".join(struct.pack("<f", v) if isinstance(v, float) else struct.pack("<I", v) for v in values)


def _grid(n: int) -> tuple[int, int, int]:
    """``n`` workgroups as an x-by-y grid within the per-dimension limit."""
    x = min(max(n, 1), _MAX_GROUPS)
    return (x, math.ceil(max(n, 1) / x), 1)


class WebGpuBackend:
    """Named ops (those of ``backends/cpu.py``) as WGSL dispatches on ``device``."""

    name = "webgpu"

    def __init__(self, device: GpuDevice, kernels: Kernels, f16: bool | None = None) -> None:
        self.device = device
        self.kernels = kernels
        self.f16 = device.has_f16 if f16 is None else (f16 and device.has_f16)
        self.plan: list[Dispatch] = []
        #: tensors whose host mirror changed since the last plan
        self.dirty: set[GpuTensor] = set()
        #: dispatches recorded so far (the cpu backend's ``calls``: kernel calls)
        self.calls = 0
        self.bytes_read = 0
        self.bytes_uploaded = 0
        self._dummy = device.buffer(4, "dummy")
        self._argmax_out = device.buffer(8, "argmax")
        self._supported = set(quant_types())
        self._shift_ctx: Any = None  # a host kernel context for the context shift, made on first use

    @property
    def precision(self) -> str:
        """``f16`` when dequantized weights are multiplied in half precision, else ``f32``."""
        return "f16" if self.f16 else "f32"

    def close(self) -> None:
        """Release the device (and the host context of the context shift)."""
        self.plan.clear()
        self.device.close()
        if self._shift_ctx is not None:
            self.kernels.lib.emb_ctx_free(self._shift_ctx)
            self._shift_ctx = None

    def supports(self, type_id: int) -> bool:
        """Whether a weight of this GGML type can live on the device."""
        return ggml_types.type_by_id(type_id).name in self._supported

    # -- recording and running -----------------------------------------------------------------------------
    def _pipeline(self, kernel: str, quant: str | None = None, f16: bool = False, inplace: bool = False,
                  **consts: int) -> str:
        key = f"{kernel}:{quant or ''}:{'f16' if f16 else 'f32'}:{'inplace' if inplace else ''}:{consts or ''}"
        if not self.device.has_pipeline(key):
            self.device.pipeline(key, shader(kernel, quant, f16, inplace, consts))
        return key

    def _record(self, pipeline: str, buffers: tuple[GpuBuffer, ...], params: bytes,
                groups: tuple[int, int, int]) -> None:
        self.plan.append(Dispatch(pipeline, buffers, params, groups))
        self.calls += 1

    def flush(self, reads: list[Readback] | None = None) -> list[memoryview]:
        """Upload dirty host mirrors, run the recorded plan, and read ``reads`` back."""
        for t in list(self.dirty):
            t.upload()
        self.dirty.clear()
        plan, self.plan = self.plan, []
        out = self.device.run(plan, reads or [])
        self.bytes_read += sum(len(m) for m in out)
        return out

    # -- memory --------------------------------------------------------------------------------------------
    def f32(self, n: int) -> GpuTensor:
        """A zeroed float32 tensor on the device."""
        return GpuTensor(self, n, "f", "f32", mirrored=False)

    def i32(self, n: int) -> GpuTensor:
        """An int32 tensor on the device with a host mirror (token ids, positions)."""
        return GpuTensor(self, n, "i", "i32", mirrored=True)

    def kv_layer(self, n_ctx: int, kv_dim: int) -> GpuKV:
        """One layer's F16 K/V cache of ``n_ctx`` positions on the device."""
        return GpuKV(self.device.buffer(2 * n_ctx * kv_dim, "k_cache"), self.device.buffer(2 * n_ctx * kv_dim,
                                                                                            "v_cache"))

    def row(self, buf: GpuTensor | GpuRow, row: int, width: int) -> GpuRow:
        """Row ``row`` of ``buf`` seen as rows of ``width`` elements."""
        t, off = _at(buf)
        return GpuRow(t, off + row * width)

    def read(self, buf: GpuTensor | GpuRow, n: int) -> memoryview:
        """``n`` values from a tensor or row, after running what was recorded."""
        t, off = _at(buf)
        (data,) = self.flush([Readback(t.gpu, 4 * off, 4 * n)])
        return data.cast(t.fmt)

    def write(self, buf: GpuTensor | GpuRow, data: Any) -> None:
        """Copy host values into a tensor or row (after running what was recorded, which may read it)."""
        t, off = _at(buf)
        self.flush()
        mv = memoryview(data).cast("B")
        self.device.write(t.gpu, 4 * off, mv)
        self.bytes_uploaded += len(mv)

    # -- weights -------------------------------------------------------------------------------------------
    def matrix(self, w: Weight, data: Any) -> GpuMatrix:
        """Upload a weight matrix (``data``: its GGUF bytes), split into row blocks no larger than a binding."""
        t = ggml_types.type_by_id(w.type)
        if t.name not in self._supported:
            raise ValueError(f"{w.name}: type {t.name} has no WebGPU kernel")
        row_bytes = w.n_in // t.block_size * t.block_bytes
        lim = self.device.limits
        max_rows = max(1, min(lim.max_binding, lim.max_buffer) // row_bytes)
        mv = memoryview(data).cast("B")
        parts = []
        for row0 in range(0, w.n_out, max_rows):
            n = min(max_rows, w.n_out - row0)
            buf = self.device.buffer(n * row_bytes, w.name)
            self.device.write(buf, 0, mv[row0 * row_bytes : (row0 + n) * row_bytes])
            self.bytes_uploaded += n * row_bytes
            parts.append(MatrixPart(buf, row0, n))
        return GpuMatrix(w.name, w.type, w.n_out, w.n_in, row_bytes, parts)

    def load_matrix(self, store: WeightStore, name: str, n_in: int, n_out: int | None = None) -> GpuMatrix:
        """A weight matrix of the file, uploaded."""
        return self.matrix(store.matrix(name, n_in, n_out), store.tensor_bytes(name))

    def load_split(self, store: WeightStore, name: str, n_in: int, sizes: list[int],
                   names: list[str]) -> list[GpuMatrix]:
        """A fused matrix of the file, uploaded as one matrix per block of rows."""
        fused, data = store.matrix(name, n_in, sum(sizes)), store.tensor_bytes(name)
        t = ggml_types.type_by_id(fused.type)
        row_bytes = n_in // t.block_size * t.block_bytes
        parts, row = [], 0
        for size, part_name in zip(sizes, names, strict=True):
            parts.append(self.matrix(Weight(part_name, None, fused.type, size, n_in),
                                     data[row * row_bytes : (row + size) * row_bytes]))
            row += size
        return parts

    def load_vector(self, store: WeightStore, name: str, n: int) -> GpuBuffer:
        """A 1-D tensor of the file as float32, uploaded."""
        return self.vector(store.vector(name, n).view, name)

    def vector(self, data: Any, label: str) -> GpuBuffer:
        """Upload a float32 vector (norm weights, biases, RoPE factors)."""
        mv = memoryview(data).cast("B")
        buf = self.device.buffer(len(mv), label)
        self.device.write(buf, 0, mv)
        self.bytes_uploaded += len(mv)
        return buf

    def group(self, matrices: list[GpuMatrix], outputs: list[GpuTensor]) -> GpuGroup:
        """Matrices applied to one input, each writing its own output tensor."""
        return GpuGroup(matrices, outputs)

    @contextlib.contextmanager
    def row_by_row(self, n_tokens: int, enabled: bool = True) -> Iterator[None]:
        """Every row is computed alone already (the same reduction whatever the batch): nothing to switch."""
        yield

    # -- ops -----------------------------------------------------------------------------------------------
    def get_rows(self, table: GpuMatrix, ids: GpuTensor, n: int, scale: float, out: GpuTensor) -> None:
        """``out[i] = table[ids[i]] * scale`` (embedding lookup, dequantized)."""
        pipe = self._pipeline("get_rows", _qname(table))
        for part in table.parts:
            self._record(pipe, (part.buffer, ids.gpu, out.gpu),
                         _params(table.n_in, part.n_rows, n, table.row_bytes, part.row0, float(scale)), (n, 1, 1))

    def rms_norm(self, x: Any, w: GpuBuffer | None, out: Any, n_rows: int, dim: int, eps: float) -> None:
        """``out = x / rms(x) * w`` per row (tensors or rows; in place when they are the same)."""
        self._norm(x, w, out, n_rows, dim, eps, add=False)

    def rms_norm_add(self, x: Any, w: GpuBuffer | None, acc: Any, n_rows: int, dim: int, eps: float) -> None:
        """``acc += x / rms(x) * w`` per row (a post-norm into the residual)."""
        self._norm(x, w, acc, n_rows, dim, eps, add=True)

    def _norm(self, x: Any, w: GpuBuffer | None, out: Any, n_rows: int, dim: int, eps: float, add: bool) -> None:
        (xt, xo), (ot, oo) = _at(x), _at(out)
        inplace = xt is ot
        pipe = self._pipeline("rms_norm", inplace=inplace)
        bufs = (w or self._dummy, ot.gpu) if inplace else (w or self._dummy, ot.gpu, xt.gpu)
        self._record(pipe, bufs, _params(dim, n_rows, float(eps), xo, oo, int(w is not None), int(add)),
                     _grid(n_rows))

    def add(self, x: GpuTensor, acc: GpuTensor, n: int) -> None:
        """``acc += x`` over ``n`` elements (the residual)."""
        self._record(self._pipeline("add"), (x.gpu, acc.gpu), _params(n, n), _grid(math.ceil(n / 256)))

    def add_rows(self, bias: GpuBuffer, x: GpuTensor, n_rows: int, dim: int) -> None:
        """``x[i] += bias`` for each row."""
        n = n_rows * dim
        self._record(self._pipeline("add"), (bias, x.gpu), _params(n, dim), _grid(math.ceil(n / 256)))

    def matmul(self, w: GpuMatrix, x: Any, n: int, out: Any) -> None:
        """``out[n, w.n_out] = x[n, w.n_in] @ w.T`` (tensors or rows)."""
        (xt, xo), (ot, oo) = _at(x), _at(out)
        tpr = 1 if self.device.is_software else _threads_per_row(w.n_in)
        # half-precision arithmetic for quantized and F16 weights; F32 and BF16 (whose range f16 lacks) stay f32
        f16 = self.f16 and _qname(w) not in ("F32", "BF16")
        pipe = self._pipeline("matmul", _qname(w), f16, TPR=tpr)
        tiles = math.ceil(n / 8)
        for part in w.parts:
            gx, gy, _ = _grid(math.ceil(part.n_rows * tpr / 64))
            self._record(pipe, (part.buffer, xt.gpu, ot.gpu),
                         _params(w.n_in, part.n_rows, n, w.row_bytes, part.row0, w.n_out, xo, oo), (gx, gy, tiles))

    def matmul_group(self, g: GpuGroup, x: GpuTensor, n: int) -> None:
        """Every matrix of ``g`` applied to ``x``."""
        for w, out in zip(g.matrices, g.outputs, strict=True):
            self.matmul(w, x, n, out)

    def rope(self, x: GpuTensor, n: int, n_heads: int, head_dim: int, n_rot: int, pos: GpuTensor, base: float,
             scale: float, mode: int, freq_factors: GpuBuffer | None = None) -> None:
        """Rotary position embedding of ``n`` rows of ``n_heads`` heads in place (optional frequency factors)."""
        n_rot = min(n_rot, head_dim)
        theta_scale = struct.unpack("<f", struct.pack("<f", base ** (-2.0 / n_rot)))[0]
        count = n * n_heads * (n_rot // 2)
        self._record(self._pipeline("rope"), (x.gpu, pos.gpu, freq_factors or self._dummy),
                     _params(n, n_heads, head_dim, n_rot, float(theta_scale), float(scale), int(mode == ROPE_NEOX),
                             int(freq_factors is not None), 0, 0), _grid(math.ceil(count / 64)))

    def glu(self, gate: GpuTensor, up: GpuTensor, n: int, n_ff: int, act: int) -> None:
        """``gate = act(gate) * up`` over ``n`` rows of ``n_ff`` (SiLU or GELU gated units)."""
        count = n * n_ff
        self._record(self._pipeline("glu"), (gate.gpu, up.gpu), _params(count, act), _grid(math.ceil(count / 256)))

    def attention(self, kv: Any, layer: int, q: Any, k: Any, v: Any, out: Any, n: int, pos0: int, n_head: int,
                  n_head_kv: int, head_dim: int, window: int, scale: float, softcap: float = 0.0) -> None:
        """Store ``n`` rows of K/V at ``pos0`` in layer ``layer`` of ``kv``, then causal attention of the ``n``
        query rows over positions ``0 .. pos0 + n`` (``window`` > 0: sliding window; ``softcap`` > 0: scores
        soft-capped before the softmax) into ``out``."""
        cache: GpuKV = kv.layers[layer]
        (qt, qo), (kt, ko), (vt, vo), (ot, oo) = _at(q), _at(k), _at(v), _at(out)
        kv_dim = n_head_kv * head_dim
        words = n * kv_dim // 2
        self._record(self._pipeline("kv_store"), (kt.gpu, vt.gpu, cache.k, cache.v),
                     _params(words, kv_dim, pos0, ko, vo), _grid(math.ceil(words / 256)))
        self._record(self._pipeline("attention"), (qt.gpu, cache.k, cache.v, ot.gpu),
                     _params(n, n_head, n_head_kv, head_dim, pos0, window, float(scale), qo, oo, n_head * head_dim,
                             float(softcap)),
                     (n_head, n, 1))

    def softcap(self, x: GpuTensor | GpuRow, n: int, cap: float) -> None:
        """``x = tanh(x / cap) * cap`` over ``n`` values (final logit soft-capping)."""
        t, off = _at(x)
        self._record(self._pipeline("softcap"), (t.gpu,), _params(n, off, float(1.0 / cap), float(cap)),
                     _grid(math.ceil(n / 256)))

    def argmax(self, row: Any, n: int) -> int:
        """The index of the largest of ``n`` values of a row (8 bytes read back)."""
        t, off = _at(row)
        self._record(self._pipeline("argmax"), (t.gpu, self._argmax_out), _params(n, off), (1, 1, 1))
        (data,) = self.flush([Readback(self._argmax_out, 0, 8)])
        return int(data.cast("I")[0])

    def kv_shift(self, kv: Any, layer: int, n_keep: int, n_discard: int, n_head_kv: int, head_dim: int,
                 n_rot: int, base: float, scale: float, mode: int, freq_factors: Any = None) -> None:
        """Context shift of one layer: its rows come to the host, the C kernel shifts and re-rotates them (with
        the host ``freq_factors`` pointer), they go back."""
        cache: GpuKV = kv.layers[layer]
        n_half = kv.n_past * n_head_kv * head_dim
        if n_half == 0:
            return
        k_data, v_data = self.flush([Readback(cache.k, 0, 2 * n_half), Readback(cache.v, 0, 2 * n_half)])
        kh, vh = self.kernels.u16(n_half), self.kernels.u16(n_half)
        kh.view.cast("B")[:] = k_data
        vh.view.cast("B")[:] = v_data
        lib = self.kernels.lib
        if self._shift_ctx is None:
            self._shift_ctx = lib.emb_ctx_new(1, 0)
        ctx = self._shift_ctx
        if freq_factors is None:
            lib.emb_kv_shift(ctx, kh.ptr, vh.ptr, kv.n_past, n_keep, n_discard, n_head_kv, head_dim, n_rot, base,
                             scale, mode)
        else:
            lib.emb_kv_shift_ff(ctx, kh.ptr, vh.ptr, kv.n_past, n_keep, n_discard, n_head_kv, head_dim, n_rot, base,
                                scale, mode, freq_factors)
        self.device.write(cache.k, 0, kh.view)
        self.device.write(cache.v, 0, vh.view)



def _at(x: GpuTensor | GpuRow) -> tuple[GpuTensor, int]:
    """A tensor and an element offset into it."""
    return (x.tensor, x.offset) if isinstance(x, GpuRow) else (x, 0)


def _threads_per_row(n_in: int) -> int:
    """Threads sharing one row of the matmul on a GPU: about four 32-element chunks each, a power of two <= 64."""
    want = max(1, n_in // 32 // 4)
    return min(64, 1 << (want.bit_length() - 1))


def _qname(m: GpuMatrix) -> str:
    return ggml_types.type_by_id(m.type).name
