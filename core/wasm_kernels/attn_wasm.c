/*
 * attn_wasm.c - WebAssembly SIMD128 twins of the row helpers attention uses (ops.c's *_scalar functions).
 *
 * Every result equals the scalar twin's bit for bit: conversions between half and float are exact or round
 * the same way (to nearest even, subnormals and overflow included), element-wise products and sums are the
 * same operations, and dot products add the lane products into one running sum in index order, as the
 * scalar loop does.  The fused multiply-add of mad_h16 (llama.cpp's ggml_vec_mad_f16) is computed exactly
 * without an fma instruction: in double the product of a half and a float is exact, the sum's rounding error
 * comes from TwoSum, and rounding that sum to odd before narrowing to float gives the single rounding of fmaf.
 * tests/pyodide/check_kernels.py compares them with the scalar level.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <math.h>

#if (defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__)
#include <wasm_simd128.h>

static inline v128_t load_h4(const emb_f16 *p) { return wasm_u32x4_load16x4(p); }

/* Four floats to halves (in i32 lanes), rounding exactly like emb_f32_to_f16. */
static inline v128_t f32_to_h4(v128_t f) {
    const v128_t sign = wasm_v128_and(wasm_u32x4_shr(f, 16), wasm_i32x4_splat(0x8000));
    const v128_t ax = wasm_v128_and(f, wasm_i32x4_splat(0x7fffffff));
    /* normal half: round to nearest even at bit 13 */
    const v128_t r = wasm_i32x4_add(wasm_i32x4_add(ax, wasm_i32x4_splat(0x0fff)),
                                    wasm_v128_and(wasm_u32x4_shr(ax, 13), wasm_i32x4_splat(1)));
    const v128_t normal = wasm_u32x4_shr(wasm_i32x4_sub(r, wasm_i32x4_splat(112 << 23)), 13);
    /* subnormal half: |f| * 2^24 rounded to the nearest integer, ties to even (exact scaling) */
    const v128_t sub = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(ax, wasm_f32x4_splat(16777216.0f))));
    /* unsigned compares through signed ones: ax < 2^31 */
    v128_t h = wasm_v128_bitselect(normal, sub, wasm_i32x4_ge(ax, wasm_i32x4_splat(0x38800000)));
    h = wasm_v128_andnot(h, wasm_i32x4_le(ax, wasm_i32x4_splat(0x33000000)));
    h = wasm_v128_bitselect(wasm_i32x4_splat(0x7c00), h, wasm_i32x4_ge(ax, wasm_i32x4_splat(0x477ff000)));
    h = wasm_v128_bitselect(wasm_i32x4_splat(0x7e00), h, wasm_i32x4_gt(ax, wasm_i32x4_splat(0x7f800000)));
    return wasm_v128_or(h, sign);
}

/* Store the four i32 lanes of h as halves. */
static inline void store_h4(emb_f16 *p, v128_t h) {
    const v128_t packed = wasm_u16x8_narrow_i32x4(h, h);
    wasm_v128_store64_lane(p, packed, 0);
}

float emb_attn_dot_f16_simd128(const emb_f16 *a, const emb_f16 *b, int64_t n) {
    float sum = 0.0f;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) sum = emb_wasm_add_lanes_f32(sum, wasm_f32x4_mul(emb_wasm_f16x4_to_f32(load_h4(a + i)), emb_wasm_f16x4_to_f32(load_h4(b + i))));
    for (; i < n; i++) sum += emb_f16_to_f32(a[i]) * emb_f16_to_f32(b[i]);
    return sum;
}

void emb_attn_scale_h16_simd128(emb_f16 *acc, float s, int64_t n) {
    const v128_t vs = wasm_f32x4_splat(s);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) store_h4(acc + i, f32_to_h4(wasm_f32x4_mul(emb_wasm_f16x4_to_f32(load_h4(acc + i)), vs)));
    for (; i < n; i++) acc[i] = emb_f32_to_f16(emb_f16_to_f32(acc[i]) * s);
}

/* fmaf(x, a, c) for two lanes of doubles holding floats (x a half, c a half): the exact sum p + c, p = x a
 * (exact in double), rounded to odd at double precision, then to float: the same as one rounding to float. */
static inline v128_t fma_odd_f64x2(v128_t x, v128_t a, v128_t c) {
    const v128_t p = wasm_f64x2_mul(x, a);
    const v128_t s = wasm_f64x2_add(p, c);
    const v128_t bb = wasm_f64x2_sub(s, p);
    const v128_t e = wasm_f64x2_add(wasm_f64x2_sub(p, wasm_f64x2_sub(s, bb)), wasm_f64x2_sub(c, bb));
    /* inexact (e != 0) and s even: step one ulp toward the exact value (up in magnitude when e and s agree in
     * sign).  e != 0 implies s is finite and non-zero. */
    const v128_t inexact = wasm_v128_not(wasm_f64x2_eq(e, wasm_f64x2_splat(0.0)));
    const v128_t even = wasm_i64x2_eq(wasm_v128_and(s, wasm_i64x2_splat(1)), wasm_i64x2_splat(0));
    const v128_t same_sign = wasm_i64x2_ge(wasm_v128_xor(s, e), wasm_i64x2_splat(0));
    const v128_t step = wasm_v128_bitselect(wasm_i64x2_splat(1), wasm_i64x2_splat(-1), same_sign);
    return wasm_i64x2_add(s, wasm_v128_and(step, wasm_v128_and(inexact, even)));
}

void emb_attn_mad_h16_simd128(emb_f16 *acc, const emb_f16 *v, float a, int64_t n) {
    const v128_t va = wasm_f64x2_splat((double)a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const v128_t x = emb_wasm_f16x4_to_f32(load_h4(v + i)), c = emb_wasm_f16x4_to_f32(load_h4(acc + i));
        const v128_t lo = fma_odd_f64x2(wasm_f64x2_promote_low_f32x4(x), va, wasm_f64x2_promote_low_f32x4(c));
        const v128_t hi = fma_odd_f64x2(wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(x, x, 1, 0)), va,
                                        wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(c, c, 1, 0)));
        const v128_t f = wasm_i64x2_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 2);
        store_h4(acc + i, f32_to_h4(f));
    }
    for (; i < n; i++) acc[i] = emb_f32_to_f16(fmaf(emb_f16_to_f32(v[i]), a, emb_f16_to_f32(acc[i])));
}

void emb_attn_cvt_h_simd128(const emb_f16 *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, emb_wasm_f16x4_to_f32(load_h4(x + i)));
    for (; i < n; i++) y[i] = emb_f16_to_f32(x[i]);
}

void emb_attn_axpy_f32_simd128(float *y, const float *x, float a, int64_t n) {
    const v128_t va = wasm_f32x4_splat(a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(va, wasm_v128_load(x + i))));
    }
    for (; i < n; i++) y[i] += a * x[i];
}

/* out[j] = q . k[j ld ..]: lane j keeps row j's running sum in index order (4x4 transposes of the rows). */
void emb_attn_dot4_f32_simd128(const float *q, const float *k, int64_t ld, int64_t n, float *out) {
    v128_t acc = wasm_f32x4_splat(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const v128_t r0 = wasm_v128_load(k + i), r1 = wasm_v128_load(k + ld + i);
        const v128_t r2 = wasm_v128_load(k + 2 * ld + i), r3 = wasm_v128_load(k + 3 * ld + i);
        const v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5);
        const v128_t t2 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7), t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
        const v128_t c0 = wasm_i64x2_shuffle(t0, t1, 0, 2), c1 = wasm_i64x2_shuffle(t0, t1, 1, 3);
        const v128_t c2 = wasm_i64x2_shuffle(t2, t3, 0, 2), c3 = wasm_i64x2_shuffle(t2, t3, 1, 3);
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(q[i]), c0));
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(q[i + 1]), c1));
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(q[i + 2]), c2));
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(q[i + 3]), c3));
    }
    float s[4];
    wasm_v128_store(s, acc);
    for (; i < n; i++) {
        for (int j = 0; j < 4; j++) s[j] += q[i] * k[j * ld + i];
    }
    for (int j = 0; j < 4; j++) out[j] = s[j];
}

void emb_attn_axpy4_f32_simd128(float *y, const float *x, int64_t ld, const float *a, int64_t n) {
    const v128_t a0 = wasm_f32x4_splat(a[0]), a1 = wasm_f32x4_splat(a[1]);
    const v128_t a2 = wasm_f32x4_splat(a[2]), a3 = wasm_f32x4_splat(a[3]);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v128_t t = wasm_f32x4_add(wasm_f32x4_mul(a0, wasm_v128_load(x + i)), wasm_f32x4_mul(a1, wasm_v128_load(x + ld + i)));
        t = wasm_f32x4_add(t, wasm_f32x4_mul(a2, wasm_v128_load(x + 2 * ld + i)));
        t = wasm_f32x4_add(t, wasm_f32x4_mul(a3, wasm_v128_load(x + 3 * ld + i)));
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), t));
    }
    for (; i < n; i++) y[i] += a[0] * x[i] + a[1] * x[ld + i] + a[2] * x[2 * ld + i] + a[3] * x[3 * ld + i];
}

#endif
