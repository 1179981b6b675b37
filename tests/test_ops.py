"""The transformer ops of the kernels against numpy definitions, at every kernel level this CPU has.

Each op is checked against a float64 numpy version of its definition; the SIMD levels are also checked
against the scalar twin.  Batched matmuls (the int8 GEMM path) are checked against the per-row dot products
and against gguf-py's dequantized weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants

from emberllm.backends.binding import load_kernels

K = load_kernels()
LIB = K.lib
LEVELS = K.supported_levels()


def buf(arr: np.ndarray):
    """A kernel float32 buffer holding ``arr``; returns (buffer, numpy view)."""
    b = K.f32(arr.size)
    view = np.frombuffer(b.view, dtype=np.float32)
    view[:] = arr.ravel()
    return b, view


def f16_buf(arr: np.ndarray):
    b = K.u16(arr.size)
    view = np.frombuffer(b.view, dtype=np.uint16)
    view[:] = arr.astype(np.float16).view(np.uint16).ravel()
    return b, view


@pytest.fixture(params=LEVELS, ids=lambda lv: K.level_name(lv))
def ctx(request):
    c = LIB.emb_ctx_new(2, request.param)
    yield c
    LIB.emb_ctx_free(c)


def test_rmsnorm_matches_definition(ctx):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 640)).astype(np.float32)
    w = rng.standard_normal(640).astype(np.float32)
    xb, _ = buf(x)
    wb, _ = buf(w)
    ob, out = buf(np.zeros_like(x))
    LIB.emb_rmsnorm(ctx, xb.ptr, wb.ptr, ob.ptr, 5, 640, 1e-6)
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64 * x64).mean(axis=1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(out.reshape(5, 640), ref, rtol=1e-5, atol=1e-5)
    acc_b, acc = buf(np.ones_like(x))
    LIB.emb_rmsnorm_add(ctx, xb.ptr, wb.ptr, acc_b.ptr, 5, 640, 1e-6)
    np.testing.assert_allclose(acc.reshape(5, 640), ref + 1.0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", [0, 2], ids=["normal", "neox"])
def test_rope_matches_definition(ctx, mode):
    rng = np.random.default_rng(2)
    n_tok, n_head, hd = 3, 2, 64
    x = rng.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    pos = np.array([0, 7, 300], dtype=np.int32)
    xb, out = buf(x)
    pb = K.i32(n_tok)
    np.frombuffer(pb.view, dtype=np.int32)[:] = pos
    LIB.emb_rope(ctx, xb.ptr, n_tok, n_head, hd, hd, pb.ptr, 10000.0, 1.0, mode)
    ref = x.astype(np.float64).copy()
    half = hd // 2
    for t in range(n_tok):
        for i in range(half):
            theta = pos[t] * 10000.0 ** (-2.0 * i / hd)
            c, s = math.cos(theta), math.sin(theta)
            i0, i1 = (i, i + half) if mode == 2 else (2 * i, 2 * i + 1)
            a, b = x[t, :, i0].astype(np.float64), x[t, :, i1].astype(np.float64)
            ref[t, :, i0] = a * c - b * s
            ref[t, :, i1] = a * s + b * c
    np.testing.assert_allclose(out.reshape(n_tok, n_head, hd), ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kind", [0, 1, 2, 3], ids=["silu", "gelu_tanh", "gelu_erf", "relu"])
def test_glu_matches_definition(ctx, kind):
    rng = np.random.default_rng(3)
    g = (rng.standard_normal((2, 100)) * 4).astype(np.float32)
    g[0, :4] = [-12.0, 12.0, 0.0, -0.5]
    u = rng.standard_normal((2, 100)).astype(np.float32)
    gb, _ = buf(g)
    ub, _ = buf(u)
    ob, out = buf(np.zeros_like(g))
    LIB.emb_glu(ctx, gb.ptr, ub.ptr, ob.ptr, 2, 100, 100, 100, kind)
    x = g.astype(np.float64)
    erf = np.vectorize(math.erf)
    act = {
        0: x / (1 + np.exp(-x)),
        1: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        2: 0.5 * x * (1 + erf(x / math.sqrt(2))),
        3: np.maximum(x, 0),
    }[kind]
    # GELU(tanh) goes through a half-precision table (llama.cpp's), so allow half-precision error there.
    tol = 2e-3 if kind == 1 else 1e-5
    np.testing.assert_allclose(out.reshape(2, 100), act * u, rtol=tol, atol=tol)


def attention_reference(q, k, v, pos0, window, scale):
    n_tok, n_head, hd = q.shape
    n_kv_head = k.shape[1]
    out = np.zeros_like(q, dtype=np.float64)
    for t in range(n_tok):
        p = pos0 + t
        lo = max(0, p - window + 1) if window > 0 else 0
        for h in range(n_head):
            kh = h // (n_head // n_kv_head)
            s = (k[lo : p + 1, kh].astype(np.float64) @ q[t, h].astype(np.float64)) * scale
            w = np.exp(s - s.max())
            w /= w.sum()
            out[t, h] = w @ v[lo : p + 1, kh].astype(np.float64)
    return out


@pytest.mark.parametrize("n_tok", [1, 5, 70])
@pytest.mark.parametrize("window", [0, 16])
def test_attention_gqa_window_matches_definition(ctx, n_tok, window):
    rng = np.random.default_rng(4)
    n_head, n_kv, hd, past = 4, 2, 32, 40
    n_ctx = past + n_tok
    q = rng.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    k = rng.standard_normal((n_ctx, n_kv, hd)).astype(np.float16)
    v = rng.standard_normal((n_ctx, n_kv, hd)).astype(np.float16)
    qb, _ = buf(q)
    kb, _ = f16_buf(k)
    vb, _ = f16_buf(v)
    ob, out = buf(np.zeros_like(q))
    scale = 1 / math.sqrt(hd)
    rc = LIB.emb_attention(ctx, qb.ptr, kb.ptr, vb.ptr, ob.ptr, n_tok, n_head, n_kv, hd, n_head * hd, past, window,
                           scale, 0.0)
    assert rc == 0
    ref = attention_reference(q, k, v, past, window, scale)
    # the small-batch path accumulates in half precision, like llama.cpp's flash attention
    np.testing.assert_allclose(out.reshape(n_tok, n_head, hd), ref, rtol=0, atol=2e-2 if n_tok < 64 else 1e-4)


def test_kv_store_rounds_to_half(ctx):
    rng = np.random.default_rng(5)
    k = rng.standard_normal((3, 8)).astype(np.float32)
    v = rng.standard_normal((3, 8)).astype(np.float32)
    kb, _ = buf(k)
    vb, _ = buf(v)
    kc, kview = f16_buf(np.zeros((10, 8)))
    vc, vview = f16_buf(np.zeros((10, 8)))
    LIB.emb_kv_store(ctx, kb.ptr, vb.ptr, kc.ptr, vc.ptr, 3, 8, 8, 8, 4)
    np.testing.assert_array_equal(kview.reshape(10, 8)[4:7], k.astype(np.float16).view(np.uint16))
    np.testing.assert_array_equal(vview.reshape(10, 8)[4:7], v.astype(np.float16).view(np.uint16))
    assert not kview.reshape(10, 8)[:4].any() and not kview.reshape(10, 8)[7:].any()


def test_top_k_argmax_log_softmax():
    rng = np.random.default_rng(6)
    x = rng.standard_normal(1000).astype(np.float32)
    xb, _ = buf(x)
    assert LIB.emb_argmax(xb.ptr, 1000) == int(np.argmax(x))
    ids, vals = K.i32(10), K.f32(10)
    assert LIB.emb_top_k(xb.ptr, 1000, 10, ids.ptr, vals.ptr) == 10
    order = np.argsort(-x, kind="stable")[:10]
    assert list(ids.view) == list(order)
    lse = np.log(np.exp(x.astype(np.float64)).sum())
    assert LIB.emb_log_softmax_at(xb.ptr, 1000, 17) == pytest.approx(x[17] - lse, abs=1e-6)


# -- batched matmul ------------------------------------------------------------------------------------

IQ_GRID_TYPES = [T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M]
GEMM_TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, *IQ_GRID_TYPES,
              T.IQ4_NL, T.IQ4_XS, T.TQ1_0, T.TQ2_0]


def random_weights(qtype: T, n_out: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    """Raw bytes of an ``n_out`` x ``n_in`` matrix: quantized by gguf-py where it can, random blocks otherwise."""
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    try:
        return quants.quantize(w, qtype)
    except NotImplementedError:
        block, size = quants.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(n_out, n_in // block * size), dtype=np.uint8)
        # the f16 scales sit at the end of every K-quant block except Q2_K..Q5_K where they lead; fix them all
        blocks = raw.reshape(n_out, n_in // block, size)
        d_offsets = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ1_M: [],
                     **{t: [0] for t in IQ_GRID_TYPES if t != T.IQ1_M}, T.IQ4_NL: [0], T.IQ4_XS: [0]}[qtype]
        for off in d_offsets:
            blocks[:, :, off : off + 2] = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)
        if qtype == T.IQ1_M:  # its f16 scale is the top nibbles of the u16 at bytes 48, 50, 52, 54
            h = int(np.float16(0.01).view(np.uint16))
            for k in range(4):
                blocks[:, :, 49 + 2 * k] = (blocks[:, :, 49 + 2 * k] & 0x0F) | (((h >> (4 * k)) & 0xF) << 4)
        return raw


@pytest.mark.parametrize("qtype", GEMM_TYPES, ids=lambda t: t.name)
def test_batched_matmul_equals_rowwise_and_reference(ctx, qtype):
    rng = np.random.default_rng(int(qtype))
    n_out, n_in, n_tok = 37, 512, 41
    raw = random_weights(qtype, n_out, n_in, rng)
    wbuf = bytearray(raw.tobytes())
    w_ptr = K.bytes_ptr(wbuf)
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    xb, _ = buf(x)
    yb, y = buf(np.zeros((n_tok, n_out), dtype=np.float32))
    assert LIB.emb_matmul(ctx, w_ptr, int(qtype), n_out, n_in, xb.ptr, n_tok, yb.ptr) == 0
    batched = y.reshape(n_tok, n_out).copy()
    rowwise = np.zeros_like(batched)
    for t in range(n_tok):
        assert LIB.emb_matmul(ctx, w_ptr, int(qtype), n_out, n_in, K.at(xb, t * n_in), 1, yb.ptr) == 0
        rowwise[t] = y[:n_out]
    dense = quants.dequantize(raw, qtype).reshape(n_out, n_in).astype(np.float64)
    ref = x.astype(np.float64) @ dense.T
    scale = np.abs(ref).max()
    # activations are quantized to int8 (as llama.cpp does), so compare at that precision
    assert np.abs(batched - ref).max() < 0.02 * scale
    assert np.abs(rowwise - ref).max() < 0.02 * scale
    # the two paths use the same activation quantization: they differ only in summation order
    assert np.abs(batched - rowwise).max() < 1e-3 * scale


def test_kv_shift_moves_rows_and_re_rotates_keys(ctx):
    rng = np.random.default_rng(7)
    n_past, n_keep, n_discard, n_kv, hd = 12, 2, 4, 2, 64
    raw = rng.standard_normal((n_past, n_kv, hd)).astype(np.float32)
    # keys as RoPE(p) leaves them: rotate each row by its position
    pos = np.arange(n_past, dtype=np.int32)
    rot_b, rotated = buf(raw)
    pb = K.i32(n_past)
    np.frombuffer(pb.view, dtype=np.int32)[:] = pos
    LIB.emb_rope(ctx, rot_b.ptr, n_past, n_kv, hd, hd, pb.ptr, 10000.0, 1.0, 2)
    kc, kview = f16_buf(rotated.reshape(n_past, n_kv, hd))
    vals = rng.standard_normal((n_past, n_kv * hd)).astype(np.float16)
    vc, vview = f16_buf(vals)
    LIB.emb_kv_shift(ctx, kc.ptr, vc.ptr, n_past, n_keep, n_discard, n_kv, hd, hd, 10000.0, 1.0, 2)
    # expected: the surviving raw rows rotated to their new positions
    keep = np.r_[0:n_keep, n_keep + n_discard : n_past]
    exp_b, expected = buf(raw[keep])
    new_pos = K.i32(len(keep))
    np.frombuffer(new_pos.view, dtype=np.int32)[:] = np.arange(len(keep))
    LIB.emb_rope(ctx, exp_b.ptr, len(keep), n_kv, hd, hd, new_pos.ptr, 10000.0, 1.0, 2)
    got = kview[: len(keep) * n_kv * hd].view(np.float16).astype(np.float32)
    np.testing.assert_allclose(got, expected, atol=2e-2)
    np.testing.assert_array_equal(vview.reshape(n_past, -1)[: len(keep)], vals[keep].view(np.uint16))


@pytest.mark.parametrize("n_tok", [1, 2, 6])
def test_matmul_multi_equals_separate_matmuls(ctx, n_tok):
    rng = np.random.default_rng(8)
    n_in = 512
    specs = [(T.Q5_0, 40), (T.Q4_K, 24), (T.Q8_0, 17)]
    raws = [random_weights(t, n_out, n_in, rng) for t, n_out in specs]
    keep = [bytearray(r.tobytes()) for r in raws]
    ptrs = [K.bytes_ptr(b) for b in keep]
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    xb, _ = buf(x)
    outs = [buf(np.zeros((n_tok, n_out), dtype=np.float32)) for _, n_out in specs]
    rc = LIB.emb_matmul_multi(ctx, 3, K.array("void *", ptrs), K.array("int", [int(t) for t, _ in specs]),
                              K.array("int64_t", [n for _, n in specs]), n_in, xb.ptr, n_tok,
                              K.array("float *", [o[0].ptr for o in outs]))
    assert rc == 0
    for (qtype, n_out), ptr, (_, got) in zip(specs, ptrs, outs, strict=True):
        yb, y = buf(np.zeros((n_tok, n_out), dtype=np.float32))
        assert LIB.emb_matmul(ctx, ptr, int(qtype), n_out, n_in, xb.ptr, n_tok, yb.ptr) == 0
        np.testing.assert_array_equal(got, y)
