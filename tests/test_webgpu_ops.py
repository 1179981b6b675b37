"""Every WGSL kernel of the ``webgpu`` backend against the C scalar kernels, on random data (llama.cpp's
test-backend-ops, in small).

The kernels run on the native wgpu adapter (lavapipe on a server), once with weights multiplied in ``f32`` and once
in ``f16`` where the adapter has ``shader-f16``.  Matmuls are compared with float64 numpy on the C-dequantized
weights (the C matmul quantizes its activations to 8 bits, too coarse a reference), with an error bound relative to
each output's ``|w|.|x|``; the other ops with the C kernel of the same name.  Matrices are kept small: a software
adapter runs a matmul on one CPU thread per row.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from emberllm.backends.binding import load_kernels
from emberllm.backends.webgpu.backend import WebGpuBackend
from emberllm.backends.webgpu.device import GpuUnavailableError, Readback
from emberllm.backends.webgpu.shaders import quant_types
from emberllm.gguf.types import BY_NAME
from emberllm.models.base import Weight
from emberllm.models.spec import ACT_GELU_TANH, ACT_SILU, ROPE_NEOX, ROPE_NORMAL

K = load_kernels()
LIB = K.lib
TYPES = quant_types()

#: byte offsets of the f16 scale (and min) fields in a block, overwritten in random blocks to keep them sane
_SCALE_FIELDS = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
    "IQ2_XXS": (0,), "IQ2_XS": (0,), "IQ2_S": (0,), "IQ3_XXS": (0,), "IQ3_S": (0,), "IQ1_S": (0,), "IQ1_M": (),
    "IQ4_NL": (0,), "IQ4_XS": (0,), "TQ1_0": (52,), "TQ2_0": (64,),
}
#: IQ1_M keeps its f16 scale in the top nibbles of the four u16 at these byte offsets
_IQ1_M_SCALE_WORDS = (48, 50, 52, 54)
#: the f16 mins of Q4_1 / Q5_1 are added (any sign); every other field is a positive scale
_SIGNED_FIELDS = {("Q4_1", 2), ("Q5_1", 2)}
#: max |error| / (|w|.|x|) of a matmul output
MATMUL_TOL = {"f32": 1e-5, "f16": 2e-3}


class ShapedDevice:
    """The native device seen with other limits or as a hardware GPU (the matmul's threads-per-row path)."""

    def __init__(self, device: Any, **overrides: Any) -> None:
        self._device = device
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._device, name)


@pytest.fixture(scope="module")
def device():
    from emberllm.backends.webgpu.native import NativeDevice

    try:
        dev = NativeDevice()
    except GpuUnavailableError as exc:
        pytest.skip(str(exc))
    yield dev
    dev.close()


@pytest.fixture(scope="module", params=["f32", "f16"])
def gpu(request, device) -> WebGpuBackend:
    """The backend in one precision (``f16`` only where the adapter has ``shader-f16``)."""
    if request.param == "f16" and not device.has_f16:
        pytest.skip(f"{device.adapter_name} has no shader-f16")
    backend = WebGpuBackend(device, K, f16=request.param == "f16")
    assert backend.precision == request.param
    return backend


@pytest.fixture(scope="module")
def ctx():
    c = LIB.emb_ctx_new(1, 0)
    yield c
    LIB.emb_ctx_free(c)


def shaped(gpu: WebGpuBackend, **overrides: Any) -> WebGpuBackend:
    """A backend of the same precision over the same device with ``overrides`` (limits, is_software)."""
    return WebGpuBackend(ShapedDevice(gpu.device, **overrides), K, f16=gpu.f16)


# -- host helpers ----------------------------------------------------------------------------------------------

def host_f32(arr: np.ndarray):
    """A kernel float32 buffer holding ``arr``: (buffer, numpy view)."""
    b = K.f32(arr.size)
    view = np.frombuffer(b.view, dtype=np.float32)
    view[:] = np.asarray(arr, dtype=np.float32).ravel()
    return b, view


def host_i32(arr) -> Any:
    b = K.i32(len(arr))
    np.frombuffer(b.view, dtype=np.int32)[:] = arr
    return b


def host_u16(arr: np.ndarray):
    b = K.u16(arr.size)
    view = np.frombuffer(b.view, dtype=np.uint16)
    view[:] = arr.ravel()
    return b, view


def to_gpu(gpu: WebGpuBackend, arr: np.ndarray):
    t = gpu.f32(arr.size)
    gpu.write(t, np.ascontiguousarray(arr, dtype=np.float32))
    return t


def from_gpu(gpu: WebGpuBackend, t: Any, n: int) -> np.ndarray:
    return np.frombuffer(gpu.read(t, n), dtype=np.float32).copy()


def ids_tensor(gpu: WebGpuBackend, values) -> Any:
    t = gpu.i32(len(values))
    np.frombuffer(t.view, dtype=np.int32)[:] = values
    return t


def random_matrix(name: str, n_out: int, n_in: int, rng: np.random.Generator) -> bytes:
    """The GGUF bytes of a random ``n_out`` x ``n_in`` matrix: normal floats, or random blocks (every bit pattern of
    the quants) with sane f16 scales."""
    if name in ("F32", "F16", "BF16"):
        x = rng.standard_normal(n_out * n_in).astype(np.float32)
        if name == "F16":
            return x.astype(np.float16).tobytes()
        if name == "BF16":
            return (x.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        return x.tobytes()
    t = BY_NAME[name]
    blocks = rng.integers(0, 256, size=(n_out * n_in // t.block_size, t.block_bytes), dtype=np.uint8)
    for off in _SCALE_FIELDS[name]:
        lo = -0.3 if (name, off) in _SIGNED_FIELDS else 1e-3
        value = rng.uniform(lo, 5e-2 if lo > 0 else 0.3, size=len(blocks)).astype(np.float16)
        blocks[:, off : off + 2] = value.view(np.uint8).reshape(-1, 2)
    if name == "IQ1_M":
        scale = rng.uniform(1e-3, 5e-2, size=len(blocks)).astype(np.float16).view(np.uint16)
        for k, off in enumerate(_IQ1_M_SCALE_WORDS):
            blocks[:, off + 1] = (blocks[:, off + 1] & 0x0F) | (((scale >> (4 * k)) & 0xF) << 4).astype(np.uint8)
    return blocks.tobytes()


def dequantize(name: str, raw: bytes, n: int) -> np.ndarray:
    """The C scalar dequantization (``emb_dequantize_row`` at level 0) of ``n`` elements."""
    out, view = host_f32(np.zeros(n, dtype=np.float32))
    assert LIB.emb_dequantize_row(0, BY_NAME[name].id, K.bytes_ptr(raw), out.ptr, n) == 0
    return view.copy()


def upload(gpu: WebGpuBackend, name: str, n_out: int, n_in: int, seed: int):
    raw = random_matrix(name, n_out, n_in, np.random.default_rng(seed))
    w = gpu.matrix(Weight(name, None, BY_NAME[name].id, n_out, n_in), raw)
    return w, dequantize(name, raw, n_out * n_in).reshape(n_out, n_in).astype(np.float64)


def check_matmul(gpu: WebGpuBackend, w: Any, dense: np.ndarray, n_toks=(1, 3, 9, 17), seed: int = 0) -> None:
    """``matmul`` of 1, 3, 9 and 17 tokens (8-token tiles, ragged) against float64, one plan for all; the 3 tokens
    are read at a row offset of ``x`` and written at a row offset of their output (rows as the decoder passes
    them)."""
    n_out, n_in = dense.shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((20, n_in)).astype(np.float32)
    xt = to_gpu(gpu, x)
    outs = []
    for n in n_toks:
        out = gpu.f32((n + 1) * n_out)
        if n == 3:
            gpu.matmul(w, gpu.row(xt, 2, n_in), n, gpu.row(out, 1, n_out))
            outs.append((n, out, 2, 1))
        else:
            gpu.matmul(w, xt, n, out)
            outs.append((n, out, 0, 0))
    for n, out, x0, y0 in outs:
        got = from_gpu(gpu, out, (n + y0) * n_out).reshape(-1, n_out)
        xs = x[x0 : x0 + n].astype(np.float64)
        ref = xs @ dense.T
        mag = np.abs(xs) @ np.abs(dense).T
        err = np.abs(got[y0:] - ref) / mag
        assert err.max() < MATMUL_TOL[gpu.precision], (n, float(err.max()))
        if y0:
            assert not got[:y0].any()


# -- matmul and get_rows ----------------------------------------------------------------------------------------

def _width(name: str) -> int:
    return 512 if BY_NAME[name].block_size == 256 else 256


@pytest.mark.parametrize("name", TYPES)
def test_matmul(gpu, name):
    w, dense = upload(gpu, name, 83, _width(name), seed=BY_NAME[name].id)
    assert len(w.parts) == 1
    check_matmul(gpu, w, dense)


@pytest.mark.parametrize("name", ["F16", "Q4_0", "Q5_1", "Q3_K", "Q6_K"])
def test_matmul_threads_per_row(gpu, name):
    """The hardware-GPU shape: several threads per row reduced through workgroup memory."""
    hw = shaped(gpu, is_software=False)
    w, dense = upload(hw, name, 83, _width(name), seed=100 + BY_NAME[name].id)
    check_matmul(hw, w, dense, n_toks=(1, 9))


def test_matmul_wide_rows(gpu):
    """64 threads per row (rows of 8192) on the hardware shape, and one on the software shape."""
    for is_software in (False, True):
        hw = shaped(gpu, is_software=is_software)
        w, dense = upload(hw, "Q8_0", 70, 8192, seed=7)
        check_matmul(hw, w, dense, n_toks=(1, 9))


@pytest.mark.parametrize("name", ["F32", "Q4_0", "Q5_0", "Q3_K", "Q6_K"])
def test_split_matrix(gpu, name):
    """A matrix bigger than a binding: three row blocks (40, 40, 3 rows), for matmul and get_rows."""
    n_out, n_in = 83, _width(name)
    row_bytes = BY_NAME[name].row_bytes(n_in)
    small = shaped(gpu, limits=dataclasses.replace(gpu.device.limits, max_binding=40 * row_bytes + 7))
    w, dense = upload(small, name, n_out, n_in, seed=200 + BY_NAME[name].id)
    assert [(p.row0, p.n_rows) for p in w.parts] == [(0, 40), (40, 40), (80, 3)]
    check_matmul(small, w, dense, n_toks=(1, 3, 9))
    ids = [82, 0, 39, 40, 41, 79, 80, 81, 5, 82]
    out = small.f32(len(ids) * n_in)
    small.get_rows(w, ids_tensor(small, ids), len(ids), 1.0, out)
    got = from_gpu(small, out, len(ids) * n_in).reshape(len(ids), n_in)
    np.testing.assert_array_equal(got, dense[ids].astype(np.float32))


@pytest.mark.parametrize("name", TYPES)
def test_get_rows(gpu, name):
    n_out, n_in = 37, _width(name)
    w, dense = upload(gpu, name, n_out, n_in, seed=300 + BY_NAME[name].id)
    ids = [3, 36, 0, 3, 17]
    ids_t = ids_tensor(gpu, ids)
    plain, scaled = gpu.f32(len(ids) * n_in), gpu.f32(len(ids) * n_in)
    gpu.get_rows(w, ids_t, len(ids), 1.0, plain)
    gpu.get_rows(w, ids_t, len(ids), 22.627417, scaled)
    rows = dense[ids].astype(np.float32)
    np.testing.assert_array_equal(from_gpu(gpu, plain, len(ids) * n_in).reshape(len(ids), n_in), rows)
    np.testing.assert_allclose(from_gpu(gpu, scaled, len(ids) * n_in).reshape(len(ids), n_in),
                               rows * np.float32(22.627417), rtol=1e-6, atol=1e-30)


# -- element-wise ops and norms ---------------------------------------------------------------------------------

def test_rms_norm(gpu, ctx):
    rng = np.random.default_rng(1)
    n_rows, dim, eps = 5, 320, 1e-6
    x = (rng.standard_normal((n_rows, dim)) * 3).astype(np.float32)
    w = rng.standard_normal(dim).astype(np.float32)
    xb, _ = host_f32(x)
    wb, _ = host_f32(w)
    wv = gpu.vector(w, "norm")

    def c_norm(weight, add_to=None):
        if add_to is None:
            ob, out = host_f32(np.zeros_like(x))
            LIB.emb_rmsnorm(ctx, xb.ptr, weight, ob.ptr, n_rows, dim, eps)
        else:
            ob, out = host_f32(add_to)
            LIB.emb_rmsnorm_add(ctx, xb.ptr, weight, ob.ptr, n_rows, dim, eps)
        return out.reshape(n_rows, dim)

    xt = to_gpu(gpu, x)
    # separate output, with and without a weight
    out_w, out_nw = gpu.f32(x.size), gpu.f32(x.size)
    gpu.rms_norm(xt, wv, out_w, n_rows, dim, eps)
    gpu.rms_norm(xt, None, out_nw, n_rows, dim, eps)
    # rows 1..3 of x into rows 2..4 of a bigger output (offsets on both sides)
    out_rows = gpu.f32((n_rows + 1) * dim)
    gpu.rms_norm(gpu.row(xt, 1, dim), wv, gpu.row(out_rows, 2, dim), 3, dim, eps)
    # post-norm into a residual
    acc0 = rng.standard_normal((n_rows, dim)).astype(np.float32)
    acc = to_gpu(gpu, acc0)
    gpu.rms_norm_add(xt, wv, acc, n_rows, dim, eps)
    # in place (q/k norms), with and without a weight
    inplace_w, inplace_nw = to_gpu(gpu, x), to_gpu(gpu, x)
    gpu.rms_norm(inplace_w, wv, inplace_w, n_rows, dim, eps)
    gpu.rms_norm(inplace_nw, None, inplace_nw, n_rows, dim, eps)

    tol = {"rtol": 2e-6, "atol": 1e-6}
    ref_w, ref_nw = c_norm(wb.ptr), c_norm(K.null)
    np.testing.assert_allclose(from_gpu(gpu, out_w, x.size).reshape(n_rows, dim), ref_w, **tol)
    np.testing.assert_allclose(from_gpu(gpu, out_nw, x.size).reshape(n_rows, dim), ref_nw, **tol)
    got_rows = from_gpu(gpu, out_rows, (n_rows + 1) * dim).reshape(-1, dim)
    assert not got_rows[:2].any() and not got_rows[5:].any()
    np.testing.assert_allclose(got_rows[2:5], ref_w[1:4], **tol)
    np.testing.assert_allclose(from_gpu(gpu, acc, x.size).reshape(n_rows, dim), c_norm(wb.ptr, acc0), **tol)
    np.testing.assert_allclose(from_gpu(gpu, inplace_w, x.size).reshape(n_rows, dim), ref_w, **tol)
    np.testing.assert_allclose(from_gpu(gpu, inplace_nw, x.size).reshape(n_rows, dim), ref_nw, **tol)


def test_rms_norm_many_rows(gpu, ctx):
    """More rows than one grid dimension holds (65535 workgroups): the second dimension and the ragged end."""
    rng = np.random.default_rng(2)
    n_rows, dim = 70001, 8
    x = rng.standard_normal((n_rows, dim)).astype(np.float32)
    xb, _ = host_f32(x)
    ob, ref = host_f32(np.zeros_like(x))
    LIB.emb_rmsnorm(ctx, xb.ptr, K.null, ob.ptr, n_rows, dim, 1e-5)
    xt = to_gpu(gpu, x)
    gpu.rms_norm(xt, None, xt, n_rows, dim, 1e-5)
    np.testing.assert_allclose(from_gpu(gpu, xt, x.size), ref, rtol=2e-6, atol=1e-6)


def test_add_and_add_rows(gpu, ctx):
    rng = np.random.default_rng(3)
    n_rows, dim = 3, 333
    x, acc0 = rng.standard_normal((2, n_rows * dim)).astype(np.float32)
    bias = rng.standard_normal(dim).astype(np.float32)
    xt, acc = to_gpu(gpu, x), to_gpu(gpu, acc0)
    gpu.add(xt, acc, n_rows * dim - 5)  # a ragged count: the tail stays
    biased = to_gpu(gpu, x)
    gpu.add_rows(gpu.vector(bias, "bias"), biased, n_rows, dim)

    xb, _ = host_f32(x)
    ab, ref_add = host_f32(acc0)
    LIB.emb_add(ctx, xb.ptr, ab.ptr, n_rows * dim - 5)
    bb, _ = host_f32(bias)
    LIB.emb_add_rows(ctx, bb.ptr, xb.ptr, n_rows, dim)
    np.testing.assert_array_equal(from_gpu(gpu, acc, x.size), ref_add)
    np.testing.assert_array_equal(from_gpu(gpu, biased, x.size), np.frombuffer(xb.view, dtype=np.float32))


@pytest.mark.parametrize("mode", [ROPE_NORMAL, ROPE_NEOX], ids=["normal", "neox"])
@pytest.mark.parametrize("freq_factors", [False, True], ids=["plain", "ff"])
def test_rope(gpu, ctx, mode, freq_factors):
    rng = np.random.default_rng(4 + mode)
    pos = [0, 1, 7, 4097, 23456, 30000]
    cases = [(4, 128, 128, 10000.0, 1.0), (2, 64, 32, 500000.0, 0.25)]  # heads, head_dim, n_rot, base, scale
    for n_heads, head_dim, n_rot, base, scale in cases:
        x = rng.standard_normal((len(pos), n_heads, head_dim)).astype(np.float32)
        ff = rng.uniform(1.0, 40.0, n_rot // 2).astype(np.float32) if freq_factors else None
        xt = to_gpu(gpu, x)
        pos_t = ids_tensor(gpu, pos)
        gpu.rope(xt, len(pos), n_heads, head_dim, n_rot, pos_t, base, scale, mode,
                 gpu.vector(ff, "ff") if freq_factors else None)
        got = from_gpu(gpu, xt, x.size)
        xb, ref = host_f32(x)
        pb = host_i32(pos)
        if freq_factors:
            fb, _ = host_f32(ff)
            LIB.emb_rope_ff(ctx, xb.ptr, len(pos), n_heads, head_dim, n_rot, pb.ptr, base, scale, mode, fb.ptr)
        else:
            LIB.emb_rope(ctx, xb.ptr, len(pos), n_heads, head_dim, n_rot, pb.ptr, base, scale, mode)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("act", [ACT_SILU, ACT_GELU_TANH], ids=["silu", "gelu_tanh"])
def test_glu(gpu, ctx, act):
    rng = np.random.default_rng(5)
    n, n_ff = 3, 301
    gate = (rng.standard_normal((n, n_ff)) * 4).astype(np.float32)
    gate[0, :8] = [-12.0, 12.0, 0.0, -0.5, 9.999, -9.999, 10.0, -10.0]
    up = rng.standard_normal((n, n_ff)).astype(np.float32)
    gt, ut = to_gpu(gpu, gate), to_gpu(gpu, up)
    gpu.glu(gt, ut, n, n_ff, act)
    gb, _ = host_f32(gate)
    ub, _ = host_f32(up)
    ob, ref = host_f32(np.zeros_like(gate))
    LIB.emb_glu(ctx, gb.ptr, ub.ptr, ob.ptr, n, n_ff, n_ff, n_ff, act)
    # GELU(tanh) is rounded to half precision on both sides (the C table): a tanh a hair apart may round one f16 ulp
    tol = {"rtol": 2e-3, "atol": 1e-6} if act == ACT_GELU_TANH else {"rtol": 2e-6, "atol": 1e-7}
    np.testing.assert_allclose(from_gpu(gpu, gt, gate.size), ref, **tol)


def test_softcap(gpu, ctx):
    """Final logit soft-capping of a row at an offset equals the C kernel (and cap * tanh(x / cap))."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(1003) * 40).astype(np.float32)
    xt = to_gpu(gpu, x)
    gpu.softcap(gpu.row(xt, 3, 1), 997, 30.0)
    xb, ref = host_f32(x)
    LIB.emb_softcap(ctx, K.at(xb, 3), 997, 30.0)
    got = from_gpu(gpu, xt, 1003)
    np.testing.assert_array_equal(got[:3], x[:3])
    np.testing.assert_array_equal(got[1000:], x[1000:])
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(ref[3:1000], 30.0 * np.tanh(x[3:1000].astype(np.float64) / 30.0), rtol=0, atol=1e-5)


def test_argmax(gpu):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(1000).astype(np.float32)
    assert gpu.argmax(to_gpu(gpu, x), 1000) == LIB.emb_argmax(host_f32(x)[0].ptr, 1000) == int(np.argmax(x))
    x[[900, 17, 300, 511, 18]] = 7.5  # ties: the first index, as the C kernel
    xt = to_gpu(gpu, np.concatenate([np.zeros(3, np.float32), x]))
    assert gpu.argmax(gpu.row(xt, 3, 1), 1000) == LIB.emb_argmax(host_f32(x)[0].ptr, 1000) == 17
    assert gpu.argmax(to_gpu(gpu, np.full(300, -2.0, np.float32)), 300) == 0
    assert gpu.argmax(to_gpu(gpu, np.full(300, -np.inf, np.float32)), 300) == 0
    y = np.full(5, -np.inf, np.float32)
    y[3] = -1e30
    assert gpu.argmax(to_gpu(gpu, y), 5) == 3


# -- attention and the KV cache ---------------------------------------------------------------------------------

def attention_reference(q, kc, vc, n_head_kv, head_dim, pos0, window, scale, softcap=0.0):
    """float64 attention of ``q`` (tokens x heads x dim) at ``pos0..`` over the f16 caches (positions x kv_dim),
    scores soft-capped when ``softcap`` > 0."""
    n_tok, n_head, _ = q.shape
    k = kc.view(np.float16).astype(np.float64).reshape(-1, n_head_kv, head_dim)
    v = vc.view(np.float16).astype(np.float64).reshape(-1, n_head_kv, head_dim)
    out = np.zeros(q.shape)
    for t in range(n_tok):
        p = pos0 + t
        lo = max(0, p + 1 - window) if window > 0 else 0
        for h in range(n_head):
            kh = h // (n_head // n_head_kv)
            s = k[lo : p + 1, kh] @ q[t, h].astype(np.float64) * scale
            if softcap > 0:
                s = softcap * np.tanh(s / softcap)
            e = np.exp(s - s.max())
            out[t, h] = e / e.sum() @ v[lo : p + 1, kh]
    return out


@pytest.mark.parametrize("head_dim", [64, 256])
@pytest.mark.parametrize("window, softcap", [(0, 0.0), (24, 0.0), (24, 2.0)], ids=["causal", "swa", "swa-softcap"])
def test_attention(gpu, ctx, head_dim, window, softcap):
    """A prefill of 70 tokens (two 64-position tiles), then 5 tokens at position 70, then one at 75, in layer 1 of a
    two-layer cache; the q/k/v/out rows of the later calls sit at row offsets of the same tensors."""
    rng = np.random.default_rng(7 + head_dim + window)
    n_head, n_head_kv, n_ctx = 8, 2, 80
    q_dim, kv_dim = n_head * head_dim, n_head_kv * head_dim
    calls = [(0, 70), (70, 5), (75, 1)]
    n_all = 76
    scale = 1.0 / math.sqrt(head_dim)
    q = rng.standard_normal((n_all, n_head, head_dim)).astype(np.float32)
    k = rng.standard_normal((n_all, kv_dim)).astype(np.float32)
    v = rng.standard_normal((n_all, kv_dim)).astype(np.float32)
    qt, kt, vt = to_gpu(gpu, q), to_gpu(gpu, k), to_gpu(gpu, v)
    out = gpu.f32(n_all * q_dim)
    kv = SimpleNamespace(layers=[gpu.kv_layer(n_ctx, kv_dim), gpu.kv_layer(n_ctx, kv_dim)], n_past=0)

    qb, _ = host_f32(q)
    kb, _ = host_f32(k)
    vb, _ = host_f32(v)
    ob, ref_out = host_f32(np.zeros(n_all * q_dim))
    kc, kc_view = host_u16(np.zeros(n_ctx * kv_dim, np.uint16))
    vc, vc_view = host_u16(np.zeros(n_ctx * kv_dim, np.uint16))
    for pos0, n in calls:
        def rows(t, width, pos0=pos0):
            return gpu.row(t, pos0, width) if pos0 else t

        gpu.attention(kv, 1, rows(qt, q_dim), rows(kt, kv_dim), rows(vt, kv_dim), rows(out, q_dim), n, pos0,
                      n_head, n_head_kv, head_dim, window, scale, softcap)
        kv.n_past = pos0 + n
        LIB.emb_kv_store(ctx, K.at(kb, pos0 * kv_dim), K.at(vb, pos0 * kv_dim), kc.ptr, vc.ptr, n, kv_dim, kv_dim,
                         kv_dim, pos0)
        assert LIB.emb_attention(ctx, K.at(qb, pos0 * q_dim), kc.ptr, vc.ptr, K.at(ob, pos0 * q_dim), n, n_head,
                                 n_head_kv, head_dim, q_dim, pos0, window, scale, softcap) == 0

    cache = kv.layers[1]
    nbytes = 2 * n_all * kv_dim
    k_gpu, v_gpu, other = gpu.flush([Readback(cache.k, 0, nbytes), Readback(cache.v, 0, nbytes),
                                     Readback(kv.layers[0].k, 0, nbytes)])
    np.testing.assert_array_equal(np.frombuffer(k_gpu, np.uint16), kc_view[: n_all * kv_dim])
    np.testing.assert_array_equal(np.frombuffer(v_gpu, np.uint16), vc_view[: n_all * kv_dim])
    assert not np.frombuffer(other, np.uint16).any()
    got = from_gpu(gpu, out, n_all * q_dim).reshape(n_all, n_head, head_dim)
    ref = ref_out.reshape(n_all, n_head, head_dim)
    exact = attention_reference(q, kc_view, vc_view, n_head_kv, head_dim, 0, window, scale, softcap)
    # the C kernel's small-batch path accumulates in half precision (as llama.cpp's flash attention)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-2)
    np.testing.assert_allclose(got, exact, rtol=0, atol=2e-5)


@pytest.mark.parametrize("mode", [ROPE_NORMAL, ROPE_NEOX], ids=["normal", "neox"])
def test_kv_shift(gpu, ctx, mode):
    rng = np.random.default_rng(8 + mode)
    n_ctx, n_past, n_keep, n_discard, n_head_kv, head_dim = 16, 13, 2, 5, 2, 64
    kv_dim = n_head_kv * head_dim
    k = rng.standard_normal((n_ctx, kv_dim)).astype(np.float16).view(np.uint16)
    v = rng.standard_normal((n_ctx, kv_dim)).astype(np.float16).view(np.uint16)
    layer = gpu.kv_layer(n_ctx, kv_dim)
    gpu.device.write(layer.k, 0, k.tobytes())
    gpu.device.write(layer.v, 0, v.tobytes())
    kv = SimpleNamespace(layers=[layer], n_past=n_past)
    ff = rng.uniform(1.0, 8.0, head_dim // 2).astype(np.float32) if mode == ROPE_NEOX else None
    fb = host_f32(ff)[0] if ff is not None else None
    gpu.kv_shift(kv, 0, n_keep, n_discard, n_head_kv, head_dim, head_dim, 10000.0, 1.0, mode,
                 fb.ptr if fb is not None else None)

    kc, ref_k = host_u16(k)
    vc, ref_v = host_u16(v)
    if fb is None:
        LIB.emb_kv_shift(ctx, kc.ptr, vc.ptr, n_past, n_keep, n_discard, n_head_kv, head_dim, head_dim, 10000.0, 1.0,
                         mode)
    else:
        LIB.emb_kv_shift_ff(ctx, kc.ptr, vc.ptr, n_past, n_keep, n_discard, n_head_kv, head_dim, head_dim, 10000.0,
                            1.0, mode, fb.ptr)
    k_gpu, v_gpu = gpu.flush([Readback(layer.k, 0, k.nbytes), Readback(layer.v, 0, v.nbytes)])
    np.testing.assert_array_equal(np.frombuffer(k_gpu, np.uint16), ref_k)
    np.testing.assert_array_equal(np.frombuffer(v_gpu, np.uint16), ref_v)
    assert not np.array_equal(ref_k, k.ravel())  # the shift did something
