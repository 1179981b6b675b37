"""Tensor types of the C kernels: conversions, (de)quantization and dot products at every SIMD level.

References: gguf-py (``gguf.quants``) for block decoding and for the quantizers it has, small numpy
re-statements of ggml's reference algorithms where gguf-py has none (Q8_K, Q8_1), and float64 dot
products of the dequantized rows.  Every SIMD level this CPU supports is checked against the scalar twin.
"""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # noqa: E402

from emberllm._kernels import ffi, lib  # noqa: E402

T = GGMLQuantizationType
QK_K = 256

LEGACY = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
KQUANTS = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
# the grid-based I-quants: weights only (no quantizer), dotted with Q8_K
IQ_GRID = [T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M]
IQ4_TERNARY = [T.IQ4_NL, T.IQ4_XS, T.TQ1_0, T.TQ2_0]
FLOATS = [T.F32, T.F16, T.BF16]
WEIGHT_TYPES = FLOATS + LEGACY + KQUANTS + IQ_GRID + IQ4_TERNARY
ALL_TYPES = WEIGHT_TYPES + [T.Q8_1, T.Q8_K]

EXPECTED_VEC_DOT_TYPE = {
    T.F32: T.F32,
    T.F16: T.F16,
    T.BF16: T.BF16,
    **{t: T.Q8_0 for t in LEGACY},
    **{t: T.Q8_K for t in KQUANTS},
    **{t: T.Q8_K for t in IQ_GRID},
    T.IQ4_NL: T.Q8_0,
    T.IQ4_XS: T.Q8_K,
    T.TQ1_0: T.Q8_K,
    T.TQ2_0: T.Q8_K,
    T.Q8_1: T.Q8_1,
    T.Q8_K: T.Q8_K,
}

# Byte offsets of the f16 scale fields of a K-quant, I-quant or ternary block (overwritten in random blocks).
K_SCALE_OFFSETS = {T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
                   **{t: (0,) for t in IQ_GRID if t != T.IQ1_M}, T.IQ4_NL: (0,), T.IQ4_XS: (0,), T.TQ1_0: (52,),
                   T.TQ2_0: (64,)}
# IQ1_M keeps its f16 scale in the top nibbles of the four little-endian u16 at these byte offsets.
IQ1_M_SCALE_WORDS = (48, 50, 52, 54)

LEVELS = [lv for lv in range(7) if lib.emb_kernel_level_supported(lv)]
SIMD_LEVELS = [lv for lv in LEVELS if lv != 0]


def _level_id(level: int) -> str:
    return ffi.string(lib.emb_kernel_level_name(level)).decode()


# ---------------------------------------------------------------------------------------------
# Thin wrappers over the C API
# ---------------------------------------------------------------------------------------------


def type_sizes(qtype: int) -> tuple[int, int]:
    """(elements, bytes) per block.  gguf-py still lists Q8_1 with float d and s (40 bytes); ggml's
    block_q8_1, and ours, holds two halves (36 bytes)."""
    if qtype == T.Q8_1:
        return 32, 36
    return GGML_QUANT_SIZES[T(qtype)]


def block_size(qtype: int) -> int:
    """Elements per block of ``qtype``."""
    return type_sizes(qtype)[0]


def dequantize(qtype: int, raw: bytes | np.ndarray, n: int, level: int = 0) -> np.ndarray:
    """Our ``emb_dequantize_row``."""
    src = np.frombuffer(bytes(raw), dtype=np.uint8)
    out = np.empty(n, dtype=np.float32)
    rc = lib.emb_dequantize_row(level, int(qtype), ffi.from_buffer(src), ffi.from_buffer("float[]", out), n)
    assert rc == 0
    return out


def quantize(qtype: int, x: np.ndarray, level: int = 0) -> bytes:
    """Our ``emb_quantize_row``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = bytearray(lib.emb_row_size(int(qtype), x.size))
    rc = lib.emb_quantize_row(level, int(qtype), ffi.from_buffer("float[]", x), ffi.from_buffer(out), x.size)
    assert rc == 0
    return bytes(out)


def vec_dot(qtype: int, n: int, x: bytes, y: bytes, level: int = 0) -> float:
    """Our ``emb_vec_dot`` (``y`` already in the type's vec_dot_type)."""
    out = ffi.new("float *")
    rc = lib.emb_vec_dot(level, int(qtype), n, ffi.from_buffer(x), ffi.from_buffer(y), out)
    assert rc == 0
    return float(out[0])


# ---------------------------------------------------------------------------------------------
# Test data and numpy references
# ---------------------------------------------------------------------------------------------


def random_weights(qtype: int, n: int, rng: np.random.Generator) -> bytes:
    """A row of ``n`` elements of ``qtype``: gguf-py-quantized floats, or random blocks with sane f16 scales."""
    qtype = T(qtype)
    values = rng.standard_normal(n).astype(np.float32)
    if qtype == T.F32:
        return values.tobytes()
    if qtype == T.F16:
        return values.astype(np.float16).tobytes()
    if qtype in K_SCALE_OFFSETS or qtype == T.IQ1_M:
        bs, nbytes = GGML_QUANT_SIZES[qtype]
        blocks = rng.integers(0, 256, size=(n // bs, nbytes), dtype=np.uint8)
        for off in K_SCALE_OFFSETS.get(qtype, ()):
            scale = rng.uniform(1e-3, 5e-2, size=n // bs).astype(np.float16)
            blocks[:, off : off + 2] = scale.view(np.uint8).reshape(-1, 2)
        if qtype == T.IQ1_M:  # random bytes are valid grid indices; only the split f16 scale must be finite
            scale = rng.uniform(1e-3, 5e-2, size=n // bs).astype(np.float16).view(np.uint16)
            for k, off in enumerate(IQ1_M_SCALE_WORDS):
                word = blocks[:, off : off + 2].copy().view(np.uint16).ravel()
                word = (word & 0x0FFF) | (((scale >> (4 * k)) & 0xF) << 12).astype(np.uint16)
                blocks[:, off : off + 2] = word.astype(np.uint16).view(np.uint8).reshape(-1, 2)
        return blocks.tobytes()
    return gguf.quants.quantize(values, qtype).tobytes()


def random_q8k(n: int, rng: np.random.Generator) -> bytes:
    """Random Q8_K blocks (float d, int8 q, consistent bsums)."""
    out = bytearray()
    for _ in range(n // QK_K):
        qs = rng.integers(-127, 128, size=QK_K, dtype=np.int8)
        d = np.float32(rng.uniform(1e-3, 1e-1))
        out += d.tobytes() + qs.tobytes() + qs.reshape(16, 16).sum(axis=1).astype(np.int16).tobytes()
    return bytes(out)


def ref_dequantize(qtype: int, raw: bytes, n: int) -> np.ndarray:
    """gguf-py's dequantization, or numpy's for the types it lacks."""
    qtype = T(qtype)
    data = np.frombuffer(raw, dtype=np.uint8)
    if qtype == T.Q8_K:
        blocks = data.reshape(-1, 292)
        d = blocks[:, :4].copy().view(np.float32)
        return (d * blocks[:, 4:260].copy().view(np.int8).astype(np.float32)).ravel()
    if qtype == T.Q8_1:
        blocks = data.reshape(-1, 36)
        d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
        return (blocks[:, 4:].copy().view(np.int8).astype(np.float32) * d).ravel()
    return np.asarray(gguf.quants.dequantize(data, qtype), dtype=np.float32).ravel()[:n]


def ref_quantize_q8_k(x: np.ndarray) -> bytes:
    """ggml's quantize_row_q8_K_ref, restated in numpy."""
    out = bytearray()
    for blk in x.astype(np.float32).reshape(-1, QK_K):
        amax_i = int(np.argmax(np.abs(blk)))  # first index of the largest magnitude
        mx = blk[amax_i]
        if mx == 0:
            out += bytes(292)
            continue
        iscale = np.float32(-127.0) / mx
        q = np.minimum(np.rint(iscale * blk), 127).astype(np.int8)  # rint: half to even
        bsums = q.astype(np.int32).reshape(16, 16).sum(axis=1).astype(np.int16)
        out += (np.float32(1.0) / iscale).astype(np.float32).tobytes() + q.tobytes() + bsums.tobytes()
    return bytes(out)


def ref_quantize_q8_1(x: np.ndarray) -> bytes:
    """ggml's quantize_row_q8_1_ref, restated in numpy (roundf = half away from zero)."""
    out = bytearray()
    for blk in x.astype(np.float32).reshape(-1, 32):
        d = np.abs(blk).max() / np.float32(127)
        idv = np.float32(1) / d if d else np.float32(0)
        q = gguf.quants.np_roundf(blk * idv).astype(np.int8)
        s = np.float32(int(q.astype(np.int32).sum())) * d
        out += np.float16(d).tobytes() + np.float16(s).tobytes() + q.tobytes()
    return bytes(out)


def activations(qtype: int, n: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Random activations in ``qtype``'s vec_dot_type (quantized by our scalar code) and their values."""
    vt = lib.emb_type_vec_dot_type(int(qtype))
    x = rng.standard_normal(n).astype(np.float32)
    y = quantize(vt, x)
    return y, dequantize(vt, y, n)


def rel_err(a: float, b: float, scale: float) -> float:
    """|a - b| relative to ``scale`` (the sum of the magnitudes of the products)."""
    return abs(a - b) / max(scale, 1e-30)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_type_facts() -> None:
    for t in ALL_TYPES:
        bs, nbytes = type_sizes(t)
        assert lib.emb_type_supported(int(t)) == 1
        assert lib.emb_type_block_size(int(t)) == bs
        assert lib.emb_type_block_bytes(int(t)) == nbytes
        assert lib.emb_row_size(int(t), 4 * bs) == 4 * nbytes
        assert lib.emb_type_vec_dot_type(int(t)) == EXPECTED_VEC_DOT_TYPE[t]
    for bad in (-1, 4, 5, 31, 33, 39, 40, 1000):
        assert lib.emb_type_supported(bad) == 0
        assert lib.emb_type_block_size(bad) == -1
        assert lib.emb_type_block_bytes(bad) == -1
        assert lib.emb_row_size(bad, 256) == -1
        assert lib.emb_type_vec_dot_type(bad) == -1
    assert lib.emb_row_size(int(T.Q4_K), 255) == -1


def test_levels() -> None:
    assert 0 in LEVELS
    preference = [2, 1, 4, 3, 6, 5, 0]  # avx512, avx2, neon-dotprod, neon, wasm-relaxed, wasm-simd128, scalar
    assert lib.emb_kernel_level_best() == next(lv for lv in preference if lv in LEVELS)
    names = [_level_id(lv) for lv in range(7)]
    assert names == ["scalar", "avx2", "avx512", "neon", "neon-dotprod", "wasm-simd128", "wasm-relaxed"]
    assert _level_id(7) == "unknown"
    assert lib.emb_kernel_level_supported(-1) == 0 and lib.emb_kernel_level_supported(7) == 0


def test_f16_conversions_exact() -> None:
    every_half = np.arange(65536, dtype=np.uint16)
    ours = dequantize(T.F16, every_half.tobytes(), 65536)
    ref = every_half.view(np.float16).astype(np.float32)
    finite = ~np.isnan(ref)
    assert np.array_equal(ours[finite].view(np.uint32), ref[finite].view(np.uint32))
    assert np.isnan(ours[~finite]).all()

    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.standard_normal(4096).astype(np.float32) * np.float32(10.0) ** rng.integers(-9, 6, 4096),
            # halfway cases between neighbouring halves (ties to even), subnormals, overflow, zeros
            (
                every_half[:31744].view(np.float16).astype(np.float32)[:-1] * 0.5
                + every_half[1:31744].view(np.float16).astype(np.float32) * 0.5
            ),
            np.array(
                [0.0, -0.0, 65504.0, 65519.99, 65520.0, 1e9, -1e9, 2.0**-25, 2.0**-24, 3 * 2.0**-26, np.inf, -np.inf],
                dtype=np.float32,
            ),
        ]
    ).astype(np.float32)
    x = np.concatenate([x, -x])
    ours16 = np.frombuffer(quantize(T.F16, x), dtype=np.uint16)
    with np.errstate(over="ignore"):  # the values beyond 65504 are meant to become inf
        ref16 = x.astype(np.float16).view(np.uint16)
    assert np.array_equal(ours16, ref16)


def test_bf16_conversions_exact() -> None:
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2**32, size=8192, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[~np.isnan(x)]
    x = x[: x.size - x.size % 32]
    ours = np.frombuffer(quantize(T.BF16, x), dtype=np.uint16)
    ref = np.asarray(gguf.quants.quantize(x, T.BF16)).view(np.uint16).ravel()
    assert np.array_equal(ours, ref)
    back = dequantize(T.BF16, ours.tobytes(), ours.size)
    assert np.array_equal(back.view(np.uint32), ours.astype(np.uint32) << 16)


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_dequantize_matches_reference(qtype: T) -> None:
    rng = np.random.default_rng(int(qtype) + 10)
    n = 8 * max(block_size(qtype), 32)
    if qtype == T.Q8_K:
        raw = random_q8k(n, rng)
    elif qtype == T.Q8_1:
        raw = quantize(T.Q8_1, rng.standard_normal(n).astype(np.float32))
    else:
        raw = random_weights(qtype, n, rng)
    ref = ref_dequantize(qtype, raw, n)
    for level in LEVELS:
        ours = dequantize(qtype, raw, n, level)
        assert np.array_equal(ours, ref), f"{qtype.name} level {_level_id(level)}"


@pytest.mark.parametrize("qtype", [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.BF16, T.F16, T.TQ1_0, T.TQ2_0],
                         ids=lambda t: t.name)
def test_quantize_matches_gguf(qtype: T) -> None:
    rng = np.random.default_rng(int(qtype) + 20)
    x = (rng.standard_normal(64 * 32) * rng.uniform(0.01, 10)).astype(np.float32)
    x[:32] = 0.0  # an all-zero block
    ref = np.asarray(gguf.quants.quantize(x, qtype)).view(np.uint8).tobytes()
    for level in LEVELS:
        assert quantize(qtype, x, level) == ref, f"{qtype.name} level {_level_id(level)}"


@pytest.mark.parametrize("qtype", [T.Q8_K, T.Q8_1], ids=lambda t: t.name)
def test_quantize_matches_ggml_reference(qtype: T) -> None:
    rng = np.random.default_rng(int(qtype) + 30)
    n = 16 * QK_K
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[:QK_K] = 0.0  # an all-zero block
    x[QK_K + 5] = 40.0  # a largest magnitude that appears twice, first positive
    x[QK_K + 9] = -40.0
    x[2 * QK_K + 7] = -50.0  # ... first negative
    x[2 * QK_K + 100] = 50.0
    ref = ref_quantize_q8_k(x) if qtype == T.Q8_K else ref_quantize_q8_1(x)
    for level in LEVELS:
        assert quantize(qtype, x, level) == ref, f"{qtype.name} level {_level_id(level)}"


def test_simd_quantizers_round_like_scalar() -> None:
    """Values that land exactly on .5 after scaling: Q8_0 rounds away from zero, Q8_K to even."""
    base = np.arange(-127, 128, dtype=np.float32)
    x = np.concatenate([base + 0.5, base - 0.5, base])[: 24 * 32]
    x = np.concatenate([x, np.full(32 * 32 - x.size, 127.0, dtype=np.float32)])
    x = x.reshape(-1, 32)
    x[:, 0] = 127.0  # d = 1 exactly: x / d keeps the .5
    x = x.ravel()
    xk = x[: (x.size // QK_K) * QK_K]
    for level in SIMD_LEVELS:
        assert quantize(T.Q8_0, x, level) == quantize(T.Q8_0, x, 0)
        assert quantize(T.Q8_K, xk, level) == quantize(T.Q8_K, xk, 0)


@pytest.mark.parametrize("qtype", WEIGHT_TYPES, ids=lambda t: t.name)
def test_scalar_vec_dot_matches_float64(qtype: T) -> None:
    rng = np.random.default_rng(int(qtype) + 40)
    bs = max(block_size(qtype), 32)
    for nblocks in (1, 3, 10):
        n = nblocks * bs
        x = random_weights(qtype, n, rng)
        y, yf = activations(qtype, n, rng)
        xf = ref_dequantize(qtype, x, n).astype(np.float64)
        prods = xf * yf.astype(np.float64)
        ours = vec_dot(qtype, n, x, y)
        assert rel_err(ours, float(prods.sum()), float(np.abs(prods).sum())) < 2e-6, (qtype.name, n)


def _simd_cases() -> list[tuple[int, T]]:
    return [(lv, t) for lv in SIMD_LEVELS for t in WEIGHT_TYPES]


@pytest.mark.skipif(not SIMD_LEVELS, reason="no SIMD level on this machine")
@pytest.mark.parametrize(("level", "qtype"), _simd_cases(), ids=lambda v: v.name if isinstance(v, T) else _level_id(v))
def test_simd_vec_dot_matches_scalar(level: int, qtype: T) -> None:
    rng = np.random.default_rng(int(qtype) * 7 + level)
    bs = block_size(qtype)
    unit = max(bs, 32)
    # block counts that hit every loop tail (the 512-bit kernels take 4 blocks at a time)
    counts = (1, 2, 3, 5, 7, 20, 64) if unit == 32 else (1, 2, 3, 8)
    for nblocks in counts:
        n = nblocks * unit
        assert n % bs == 0
        x = random_weights(qtype, n, rng)
        y, yf = activations(qtype, n, rng)
        xf = ref_dequantize(qtype, x, n).astype(np.float64)
        scale = float(np.abs(xf * yf).sum())
        ref = vec_dot(qtype, n, x, y, 0)
        ours = vec_dot(qtype, n, x, y, level)
        assert rel_err(ours, ref, scale) < 1e-5, (qtype.name, n, ours, ref)
        if qtype in IQ_GRID:  # exact integer sums, the scalar twin's float arithmetic
            assert ours == ref, (qtype.name, n, ours, ref)


@pytest.mark.skipif(not SIMD_LEVELS, reason="no SIMD level on this machine")
@pytest.mark.parametrize("qtype", IQ_GRID, ids=lambda t: t.name)
def test_simd_grid_iquant_dots_bit_identical_at_extremes(qtype: T) -> None:
    """Activations over the whole int8 range of Q8_K (+-127) and the largest scales: no 16-bit overflow."""
    rng = np.random.default_rng(int(qtype) + 50)
    n = 4 * QK_K
    x = bytearray(random_weights(qtype, n, rng))
    nbytes = GGML_QUANT_SIZES[qtype][1]
    for b in range(4):  # the largest scale fields in block 0, 0x77/0xff elsewhere
        blk = x[b * nbytes : (b + 1) * nbytes]
        if qtype in (T.IQ2_XS, T.IQ2_S):
            blk[-8:] = bytes([0xFF] * 8)
        elif qtype == T.IQ3_S:
            blk[-4:] = bytes([0xFF] * 4)
        x[b * nbytes : (b + 1) * nbytes] = blk
    for trial in range(3):
        y = bytearray(random_q8k(n, rng))
        if trial == 1:  # every activation +-127
            for b in range(4):
                qs = np.where(rng.integers(0, 2, QK_K) == 1, 127, -127).astype(np.int8)
                y[b * 292 + 4 : b * 292 + 260] = qs.tobytes()
                y[b * 292 + 260 : b * 292 + 292] = qs.astype(np.int32).reshape(16, 16).sum(1).astype(np.int16).tobytes()
        ref = vec_dot(qtype, n, bytes(x), bytes(y), 0)
        xf = ref_dequantize(qtype, bytes(x), n).astype(np.float64)
        yf = ref_dequantize(T.Q8_K, bytes(y), n).astype(np.float64)
        assert rel_err(ref, float(xf @ yf), float(np.abs(xf * yf).sum())) < 2e-6
        for level in SIMD_LEVELS:
            assert vec_dot(qtype, n, bytes(x), bytes(y), level) == ref, (qtype.name, _level_id(level), trial)


@pytest.mark.parametrize("qtype", [T.F32, T.F16, T.BF16], ids=lambda t: t.name)
def test_float_vec_dot_odd_lengths(qtype: T) -> None:
    rng = np.random.default_rng(5)
    for n in (1, 7, 9, 31, 33, 100):
        x = random_weights(qtype, n, rng)
        y, yf = activations(qtype, n, rng)
        xf = ref_dequantize(qtype, x, n).astype(np.float64)
        scale = float(np.abs(xf * yf).sum())
        for level in LEVELS:
            assert rel_err(vec_dot(qtype, n, x, y, level), float((xf * yf).sum()), scale) < 1e-5


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q5_0, T.Q4_0], ids=lambda t: t.name)
def test_vec_dot_against_real_quantization(qtype: T) -> None:
    """A weight row quantized by gguf-py: the dot is near the float dot of the originals."""
    rng = np.random.default_rng(6)
    n = 1024
    w = rng.standard_normal(n).astype(np.float32)
    a = rng.standard_normal(n).astype(np.float32)
    x = np.asarray(gguf.quants.quantize(w, qtype)).tobytes()
    y = quantize(lib.emb_type_vec_dot_type(int(qtype)), a)
    for level in LEVELS:
        got = vec_dot(qtype, n, x, y, level)
        assert abs(got - float(w @ a)) < 0.02 * float(np.abs(w * a).sum())


def test_bad_input_returns_minus_one() -> None:
    x = bytes(4096)
    xf = np.zeros(1024, dtype=np.float32)
    out = ffi.new("float *")
    px, pf = ffi.from_buffer(x), ffi.from_buffer("float[]", xf)
    buf = ffi.from_buffer(bytearray(4096))
    for level in LEVELS:
        for bad_type in (-1, 4, 5, 32, 40, 99):
            assert lib.emb_vec_dot(level, bad_type, 32, px, px, out) == -1
            assert lib.emb_dequantize_row(level, bad_type, px, pf, 32) == -1
            assert lib.emb_quantize_row(level, bad_type, pf, buf, 32) == -1
        assert lib.emb_vec_dot(level, int(T.Q8_0), 48, px, px, out) == -1
        assert lib.emb_vec_dot(level, int(T.Q4_K), 128, px, px, out) == -1
        assert lib.emb_vec_dot(level, int(T.Q8_0), -32, px, px, out) == -1
        assert lib.emb_dequantize_row(level, int(T.Q4_0), px, pf, 33) == -1
        assert lib.emb_quantize_row(level, int(T.Q8_K), pf, buf, 128) == -1
        # activation-only types have no dot product; rows of whole blocks only
        assert lib.emb_vec_dot(level, int(T.Q8_K), 256, px, px, out) == -1
        for iq in IQ_GRID:  # the grid I-quants need an importance matrix: no quantizer here
            assert lib.emb_quantize_row(level, int(iq), pf, buf, 256) == -1
        assert lib.emb_quantize_row(level, int(T.IQ4_XS), pf, buf, 128) == -1
        assert lib.emb_vec_dot(level, int(T.TQ1_0), 128, px, px, out) == -1
        assert lib.emb_vec_dot(level, int(T.Q8_0), 0, px, px, out) == 0
    for bad_level in (-1, 7, 100, *[lv for lv in range(7) if lv not in LEVELS]):
        assert lib.emb_vec_dot(bad_level, int(T.Q8_0), 32, px, px, out) == -1
        assert lib.emb_dequantize_row(bad_level, int(T.Q8_0), px, pf, 32) == -1
        assert lib.emb_quantize_row(bad_level, int(T.Q8_0), pf, buf, 32) == -1


def test_generated_grid_tables_are_current() -> None:
    """iq_grids.c and the WGSL grids are what build_scripts/gen_iq_grids.py makes from the installed gguf-py."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "build_scripts" / "gen_iq_grids.py"
    spec = importlib.util.spec_from_file_location("_emb_gen_iq_grids", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path, text in module.generated().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run {script.name}"


#: our weight quantizer -> ggml's function doing what llama-quantize does without an importance matrix
#: (``quantize_iq4_nl`` with no weights takes 7 trial scales either side; ``quantize_row_iq4_nl_ref`` none)
GGML_QUANTIZERS = {T.Q2_K: "quantize_q2_K", T.Q3_K: "quantize_q3_K", T.IQ4_NL: "quantize_iq4_nl",
                   T.IQ4_XS: "quantize_iq4_xs", T.TQ1_0: "quantize_tq1_0", T.TQ2_0: "quantize_tq2_0"}


@pytest.mark.parametrize("qtype", list(GGML_QUANTIZERS), ids=lambda t: t.name)
def test_weight_quantizers_bit_identical_to_ggml(qtype: T) -> None:
    """Our quantizers give the bytes of llama.cpp's ggml-base (its build; skipped without it, failed under CI)."""
    import ctypes

    from . import llamacpp

    ggml = ctypes.CDLL(str(llamacpp.library("ggml-base")))
    fn = getattr(ggml, GGML_QUANTIZERS[qtype])
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    fn.restype = ctypes.c_size_t
    rng = np.random.default_rng(int(qtype) + 50)
    n_per_row = 1024
    for trial in range(6):
        x = (rng.standard_normal(4 * n_per_row) * rng.uniform(1e-3, 10)).astype(np.float32)
        if trial == 1:
            x[:300] = 0.0  # an all-zero block and a partly zero one
        elif trial == 2:
            x = np.abs(x)
        elif trial == 3:
            x = np.round(x * 4) / 4  # ties
        elif trial == 4:
            x[::7] *= 40  # outliers
        ours = quantize(qtype, x)
        theirs = ctypes.create_string_buffer(len(ours))
        fn(x.ctypes.data, theirs, 4, n_per_row, None)
        assert ours == theirs.raw, (qtype.name, trial)
