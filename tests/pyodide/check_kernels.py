"""Every SIMD kernel level against the scalar twin on random blocks of every tensor type (pure Python, no numpy).

Runs inside Pyodide (or natively with ``EMBERLLM_BINDING=ctypes``): pointers are plain addresses (ctypes).
The WASM kernels keep the scalar order of float operations, so everything must match bit for bit (but attention
over a quantized V cache, accumulated unfused on WebAssembly: within 1e-5).
Prints one ``FAIL`` line per mismatch and a final ``SUMMARY levels=... checked=N failed=M`` line.
"""

from __future__ import annotations

import random
import struct

from emberllm.backends.binding import load_kernels

F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 = 0, 1, 2, 3, 6, 7, 8, 9
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, BF16 = 10, 11, 12, 13, 14, 15, 30
IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, IQ3_S, IQ2_S, IQ1_M = 16, 17, 18, 19, 21, 22, 29
IQ_GRID = (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M)  # weights only: random blocks, no quantizer
IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 = 20, 23, 34, 35
IQ4_TERNARY = (IQ4_NL, IQ4_XS, TQ1_0, TQ2_0)
NAMES = {F32: "f32", F16: "f16", Q4_0: "q4_0", Q4_1: "q4_1", Q5_0: "q5_0", Q5_1: "q5_1", Q8_0: "q8_0",
         Q8_1: "q8_1", Q2_K: "q2_K", Q3_K: "q3_K", Q4_K: "q4_K", Q5_K: "q5_K", Q6_K: "q6_K", Q8_K: "q8_K",
         BF16: "bf16", IQ2_XXS: "iq2_xxs", IQ2_XS: "iq2_xs", IQ2_S: "iq2_s", IQ3_XXS: "iq3_xxs", IQ3_S: "iq3_s",
         IQ1_S: "iq1_s", IQ1_M: "iq1_m", IQ4_NL: "iq4_nl", IQ4_XS: "iq4_xs", TQ1_0: "tq1_0", TQ2_0: "tq2_0"}
# Byte offsets of the f16 scale fields of a K-quant, I-quant or ternary block (set to sane values in random blocks).
K_SCALE_OFFSETS = {Q2_K: (80, 82), Q3_K: (108,), Q4_K: (0, 2), Q5_K: (0, 2), Q6_K: (208,),
                   **{t: (0,) for t in IQ_GRID if t != IQ1_M}, IQ4_NL: (0,), IQ4_XS: (0,), TQ1_0: (52,),
                   TQ2_0: (64,)}
N = 1024  # elements per row: whole blocks of every type

k = load_kernels()
lib = k.lib
rng = random.Random(1234)
failures: list[str] = []
checked = 0


def floats(n: int, scale: float = 1.0) -> bytearray:
    """``n`` random normal float32 values."""
    return bytearray(struct.pack(f"{n}f", *(rng.gauss(0.0, scale) for _ in range(n))))


def f16_bits(x: float) -> bytes:
    """A float as IEEE half bytes."""
    return struct.pack("<e", x)


def quantize(level: int, qtype: int, src: bytearray, n: int) -> bytearray:
    """``emb_quantize_row`` into a new buffer."""
    out = bytearray(lib.emb_row_size(qtype, n))
    rc = lib.emb_quantize_row(level, qtype, k.bytes_ptr(src), k.bytes_ptr(out), n)
    if rc != 0:
        raise RuntimeError(f"quantize {NAMES[qtype]} level {level} failed")
    return out


def random_row(qtype: int, n: int) -> bytearray:
    """A row of ``qtype``: quantized random floats, or random K-quant blocks with sane f16 scales."""
    if qtype in K_SCALE_OFFSETS or qtype == IQ1_M:
        nbytes = lib.emb_type_block_bytes(qtype)
        row = bytearray(rng.getrandbits(8) for _ in range(lib.emb_row_size(qtype, n)))
        for b in range(n // lib.emb_type_block_size(qtype)):
            for off in K_SCALE_OFFSETS.get(qtype, ()):
                row[b * nbytes + off : b * nbytes + off + 2] = f16_bits(rng.uniform(1e-3, 5e-2))
            if qtype == IQ1_M:  # the f16 scale: top nibbles of the u16 at bytes 48, 50, 52, 54
                h = struct.unpack("<H", f16_bits(rng.uniform(1e-3, 5e-2)))[0]
                for k in range(4):
                    p = b * nbytes + 49 + 2 * k
                    row[p] = (row[p] & 0x0F) | (((h >> (4 * k)) & 0xF) << 4)
        return row
    return quantize(0, qtype, floats(n), n)


def dequantize(level: int, qtype: int, row: bytearray, n: int) -> list[float]:
    """``emb_dequantize_row`` as a list."""
    out = bytearray(4 * n)
    if lib.emb_dequantize_row(level, qtype, k.bytes_ptr(row), k.bytes_ptr(out), n) != 0:
        raise RuntimeError(f"dequantize {NAMES[qtype]} level {level} failed")
    return list(struct.unpack(f"{n}f", out))


def vec_dot(level: int, qtype: int, x: bytearray, y: bytearray, n: int) -> float:
    """``emb_vec_dot``."""
    out = bytearray(4)
    if lib.emb_vec_dot(level, qtype, n, k.bytes_ptr(x), k.bytes_ptr(y), k.bytes_ptr(out)) != 0:
        raise RuntimeError(f"vec_dot {NAMES[qtype]} level {level} failed")
    return struct.unpack("f", out)[0]


def matmul(level: int, qtype: int, w: bytearray, x: bytearray, n_out: int, n: int, n_tok: int) -> list[float]:
    """``emb_matmul`` of ``n_tok`` activation rows on one thread at ``level``."""
    out = bytearray(4 * n_out * n_tok)
    ctx = lib.emb_ctx_new(1, level)
    try:
        rc = lib.emb_matmul(ctx, k.bytes_ptr(w), qtype, n_out, n, k.bytes_ptr(x), n_tok, k.bytes_ptr(out))
    finally:
        lib.emb_ctx_free(ctx)
    if rc != 0:
        raise RuntimeError(f"matmul {NAMES[qtype]} level {level} failed ({rc})")
    return list(struct.unpack(f"{n_out * n_tok}f", out))


def check(ok: bool, what: str) -> None:
    """Count a check; remember a failure."""
    global checked
    checked += 1
    if not ok:
        failures.append(what)
        print("FAIL", what)


levels = [lv for lv in k.supported_levels() if lv != 0]
for level in levels:
    lname = k.level_name(level)
    # activation quantizers: bit-exact with the scalar twin
    # special rows: rounding ties (scale 1: amax 127), a zero block, a negative extreme first
    ties = [127.0] + [(j % 50) - 24.5 for j in range(255)] + [0.0] * 256 + [-127.0] + [j * 0.5 for j in range(255)]
    ties += [-(j % 9) - 0.5 for j in range(N - len(ties))]
    for qtype in (Q8_0, Q8_K, Q8_1):
        for name, src in (("random", floats(N, scale=3.0)), ("ties", bytearray(struct.pack(f"{N}f", *ties)))):
            check(quantize(level, qtype, src, N) == quantize(0, qtype, src, N),
                  f"{lname} quantize {NAMES[qtype]} {name}")
    for qtype in (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, *IQ_GRID,
                  *IQ4_TERNARY):
        for trial in range(3):
            row = random_row(qtype, N)
            ref = dequantize(0, qtype, row, N)
            got = dequantize(level, qtype, row, N)
            check(got == ref, f"{lname} dequantize {NAMES[qtype]} #{trial}")
            vdt = lib.emb_type_vec_dot_type(qtype)
            if qtype in (Q8_K,):
                continue  # activation-only type: no vec_dot
            y = quantize(0, vdt, floats(N), N)
            want = vec_dot(0, qtype, row, y, N)
            got_dot = vec_dot(level, qtype, row, y, N)
            check(got_dot == want, f"{lname} vec_dot {NAMES[qtype]} #{trial}: {got_dot} != {want}")

    # a row that is not a multiple of 4 or 8 blocks (the kernels' unrolled loops have a tail)
    for qtype in (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL):
        n = 7 * 32
        row = random_row(qtype, n)
        y = quantize(0, Q8_0, floats(n), n)
        check(vec_dot(level, qtype, row, y, n) == vec_dot(0, qtype, row, y, n), f"{lname} vec_dot {NAMES[qtype]} n={n}")

    # batched matmul (the gemm path, n_tok >= 4): every tile kernel against the scalar one, partial tiles
    # included (6 rows, 5 and 11 tokens).  The WASM tile keeps tile_scalar's float order: bit for bit.
    for qtype in (Q4_0, Q4_1, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, *IQ_GRID, *IQ4_TERNARY):
        n_out, n = 6, 512
        w = bytearray().join(random_row(qtype, n) for _ in range(n_out))
        for n_tok in (8, 5, 11):
            x = floats(n * n_tok)
            check(matmul(level, qtype, w, x, n_out, n, n_tok) == matmul(0, qtype, w, x, n_out, n, n_tok),
                  f"{lname} matmul {NAMES[qtype]} n_tok={n_tok}")

    # decoding (n_tok 1..3: the row-by-row path with the 4-row decode tiles), 37 rows so a partial tile is left
    for qtype in (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, *IQ_GRID, *IQ4_TERNARY):
        n_out, n = 37, 512
        w = bytearray().join(random_row(qtype, n) for _ in range(n_out))
        for n_tok in (1, 2, 3):
            x = floats(n * n_tok)
            check(matmul(level, qtype, w, x, n_out, n, n_tok) == matmul(0, qtype, w, x, n_out, n, n_tok),
                  f"{lname} decode matmul {NAMES[qtype]} n_tok={n_tok}")

    # attention (ops.c): the WASM levels take the tiled float path at every batch size (their default
    # attn_half_rows is 0; the scalar level is set to the same for the comparison), over random half keys/values
    # with subnormals, a sliding window and head sizes that leave a tail.  The WASM row helpers are exact twins
    # of the scalar ones: bit for bit.  With the half path asked for (< 64 rows), the WASM level runs the scalar
    # half helpers: also bit for bit.
    # (v_top: the largest exponent field of the values; 2 keeps the half accumulator subnormal)
    for n_tok, pos0, n_head, hd, window, v_top in ((1, 40, 4, 256, 0, 24), (3, 9, 2, 36, 5, 24), (2, 20, 2, 64, 0, 2),
                                                   (66, 3, 2, 64, 0, 24)):
        n_pos = pos0 + n_tok
        kv = [bytearray(2 * n_pos * hd) for _ in range(2)]
        for cache, top in zip(kv, (16, v_top), strict=True):
            for j in range(n_pos * hd):  # exponent field 0 (subnormal) .. top, random sign and mantissa
                cache[2 * j : 2 * j + 2] = struct.pack("<H", rng.getrandbits(1) << 15 | rng.randint(0, top) << 10 |
                                                       rng.getrandbits(10))
        q = floats(n_tok * n_head * hd)
        for half_rows in (0, 64):
            outs = []
            for lv in (0, level):
                out = bytearray(4 * n_tok * n_head * hd)
                ctx = lib.emb_ctx_new(1, lv)
                try:
                    check(lv == 0 or lib.emb_ctx_set_attn_half_rows(ctx, half_rows) == 0,
                          f"{lname} attention: the float path is the default")
                    lib.emb_ctx_set_attn_half_rows(ctx, half_rows)
                    rc = lib.emb_attention(ctx, k.bytes_ptr(q), k.bytes_ptr(kv[0]), k.bytes_ptr(kv[1]),
                                           k.bytes_ptr(out), n_tok, n_head, 1, hd, n_head * hd, pos0, window,
                                           1.0 / 16, 0.0)
                finally:
                    lib.emb_ctx_free(ctx)
                check(rc == 0, f"{lname} attention rc={rc}")
                outs.append(out)
            check(outs[0] == outs[1], f"{lname} attention n_tok={n_tok} hd={hd} window={window} half_rows={half_rows}")

    # KV caches of other types (emb_kv_store_typed / emb_attention_typed / emb_kv_shift_typed): stored rows and
    # shifted keys bit for bit (the same quantizers and Hadamard rotation everywhere); attention bit for bit where V
    # is F16 or F32 (half accumulation, the SIMD128 dots keep the scalar order), and where V is quantized within
    # 1e-5 of the outputs' scale: the WASM levels accumulate V unfused (a * x + y, as ggml's WASM build), the scalar
    # level with fmaf (as ggml on x86 and ARM).
    for tk, tv in ((Q8_0, Q8_0), (Q4_0, Q4_0), (Q8_0, F16), (F16, Q4_0), (F32, F32), (Q4_0, F32)):
        for n_tok, pos0, hd, window in ((1, 40, 256, 0), (3, 9, 64, 5), (70, 3, 128, 0)):
            n_head, n_kv = 4, 2
            n_pos, kv_dim = pos0 + n_tok, n_kv * hd
            kf, vf, q = floats(n_pos * kv_dim), floats(n_pos * kv_dim), floats(n_tok * n_head * hd)
            res = []
            for lv in (0, level):
                kc = bytearray(lib.emb_row_size(tk, kv_dim) * n_pos)
                vc = bytearray(lib.emb_row_size(tv, kv_dim) * n_pos)
                out = bytearray(4 * n_tok * n_head * hd)
                ctx = lib.emb_ctx_new(1, lv)
                try:
                    lib.emb_ctx_set_attn_half_rows(ctx, 0)
                    rc = lib.emb_kv_store_typed(ctx, k.bytes_ptr(kf), k.bytes_ptr(vf), k.bytes_ptr(kc),
                                                k.bytes_ptr(vc), tk, tv, n_pos, n_kv, hd, kv_dim, kv_dim, 0)
                    rc = rc or lib.emb_attention_typed(ctx, k.bytes_ptr(q), k.bytes_ptr(kc), k.bytes_ptr(vc), tk, tv,
                                                       k.bytes_ptr(out), n_tok, n_head, n_kv, hd, n_head * hd, pos0,
                                                       window, 1.0 / 16, 0.0)
                    shifted = [bytearray(kc), bytearray(vc)]
                    rc = rc or lib.emb_kv_shift_typed(ctx, k.bytes_ptr(shifted[0]), k.bytes_ptr(shifted[1]), tk, tv,
                                                      n_pos, 1, n_pos // 3 + 1, n_kv, hd, hd, 10000.0, 1.0, 2, None)
                finally:
                    lib.emb_ctx_free(ctx)
                check(rc == 0, f"{lname} typed kv rc={rc}")
                res.append((kc, vc, out, shifted))
            what = f"{lname} typed kv {NAMES[tk]}/{NAMES[tv]} n_tok={n_tok} hd={hd}"
            check(res[0][0] == res[1][0] and res[0][1] == res[1][1], f"{what}: stored rows")
            check(res[0][3] == res[1][3], f"{what}: shifted rows")
            a = struct.unpack(f"{n_tok * n_head * hd}f", res[0][2])
            b = struct.unpack(f"{n_tok * n_head * hd}f", res[1][2])
            if tv in (F16, F32):
                check(a == b, f"{what}: attention")
            else:
                scale = max(abs(x) for x in a)
                check(max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-5 * scale, f"{what}: attention")

print(f"SUMMARY levels={','.join(k.level_name(lv) for lv in levels) or 'none'} checked={checked} "
      f"failed={len(failures)}")
