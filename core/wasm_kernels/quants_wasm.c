/*
 * quants_wasm.c - WebAssembly SIMD128 kernels.
 *
 * Each kernel is the twin of a scalar function in quants.c: integer sums inside a block are exact, and the
 * float part (block scales, running sum) is done in the same order with the same operations, so results
 * equal the scalar level bit for bit (tests/pyodide/check_kernels.py checks it under Pyodide).
 * quants.c puts these into the const table of EMB_LEVEL_WASM_SIMD128 (and of EMB_LEVEL_WASM_RELAXED, which
 * has no kernels of its own yet: Node 20's V8 11.3 runs i32x4.relaxed_dot_i8x16_i7x16_add_s with pre-standard
 * semantics, so relaxed int8 dots cannot be checked there); the other types fall back to scalar.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <math.h>
#include <string.h>

#if (defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__)
#include <wasm_simd128.h>

/* Half to float, inlined here (emb_f16_to_f32 lives in quants.c; a call per block scale is measurable).
 * Exact like it, so the results are the same bits. */
static inline float f16_to_f32_inline(emb_f16 h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t em = h & 0x7fffu;
    uint32_t bits;
    if (em >= 0x7c00u) { /* inf / nan */
        bits = sign | 0x7f800000u | ((em & 0x3ffu) << 13);
    } else if (em >= 0x0400u) { /* normal: rebias the exponent by 127 - 15 */
        bits = sign | ((em << 13) + 0x38000000u);
    } else { /* zero or subnormal: em * 2^-24, exact */
        const float f = (float)em * 5.9604644775390625e-8f;
        memcpy(&bits, &f, sizeof bits);
        bits |= sign;
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

#define F16(h) f16_to_f32_inline(h)

/* Four partial sums of a[i] * b[i] over 16 signed bytes. */
static inline v128_t dot_i8x16(v128_t a, v128_t b) {
    const v128_t lo = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a), wasm_i16x8_extend_low_i8x16(b));
    const v128_t hi = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a), wasm_i16x8_extend_high_i8x16(b));
    return wasm_i32x4_add(lo, hi);
}

static inline int hsum_i32x4(v128_t v) {
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

static inline float hmax_f32x4(v128_t v) {
    const float a = wasm_f32x4_extract_lane(v, 0), b = wasm_f32x4_extract_lane(v, 1);
    const float c = wasm_f32x4_extract_lane(v, 2), d = wasm_f32x4_extract_lane(v, 3);
    const float ab = a > b ? a : b, cd = c > d ? c : d;
    return ab > cd ? ab : cd;
}

/* 0x10 in every lane whose bit (lanes 0-15 <- bits 0-15 of qh >> shift) is set. */
static inline v128_t q5_high_bits(uint32_t qh) {
    const v128_t v = wasm_i32x4_splat((int32_t)qh);
    const v128_t sel = wasm_i8x16_swizzle(v, wasm_i8x16_make(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    const v128_t bits = wasm_u8x16_make(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    return wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(sel, bits), bits), wasm_i8x16_splat(0x10));
}

void emb_vec_dot_q4_0_q8_0_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = (const block_q4_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f), eight = wasm_i8x16_splat(8);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const v128_t q = wasm_v128_load(x[i].qs);
        const v128_t lo = wasm_i8x16_sub(wasm_v128_and(q, m4), eight);
        const v128_t hi = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), eight);
        const v128_t acc = wasm_i32x4_add(dot_i8x16(lo, wasm_v128_load(y[i].qs)),
                                          dot_i8x16(hi, wasm_v128_load(y[i].qs + 16)));
        sum += (float)hsum_i32x4(acc) * (F16(x[i].d) * F16(y[i].d));
    }
    *s = sum;
}

void emb_vec_dot_q5_0_q8_0_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = (const block_q5_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f), sixteen = wasm_i8x16_splat(16);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        const v128_t q = wasm_v128_load(x[i].qs);
        const v128_t lo = wasm_i8x16_sub(wasm_v128_or(wasm_v128_and(q, m4), q5_high_bits(qh)), sixteen);
        const v128_t hi = wasm_i8x16_sub(wasm_v128_or(wasm_u8x16_shr(q, 4), q5_high_bits(qh >> 16)), sixteen);
        const v128_t acc = wasm_i32x4_add(dot_i8x16(lo, wasm_v128_load(y[i].qs)),
                                          dot_i8x16(hi, wasm_v128_load(y[i].qs + 16)));
        sum += (float)hsum_i32x4(acc) * (F16(x[i].d) * F16(y[i].d));
    }
    *s = sum;
}

/* Sum of 16 signed bytes, as four i32 partial sums. */
static inline v128_t sum_i8x16(v128_t v) {
    return wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_extadd_pairwise_i8x16(v));
}

void emb_vec_dot_q4_1_q8_0_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = (const block_q4_1 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const v128_t q = wasm_v128_load(x[i].qs);
        const v128_t y0 = wasm_v128_load(y[i].qs), y1 = wasm_v128_load(y[i].qs + 16);
        const int isum = hsum_i32x4(wasm_i32x4_add(dot_i8x16(wasm_v128_and(q, m4), y0),
                                                   dot_i8x16(wasm_u8x16_shr(q, 4), y1)));
        const int ysum = hsum_i32x4(wasm_i32x4_add(sum_i8x16(y0), sum_i8x16(y1)));
        const float dy = F16(y[i].d);
        sum += (float)isum * (F16(x[i].d) * dy) + (float)ysum * (F16(x[i].m) * dy);
    }
    *s = sum;
}

void emb_vec_dot_q5_1_q8_0_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = (const block_q5_1 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        const v128_t q = wasm_v128_load(x[i].qs);
        const v128_t y0 = wasm_v128_load(y[i].qs), y1 = wasm_v128_load(y[i].qs + 16);
        const v128_t lo = wasm_v128_or(wasm_v128_and(q, m4), q5_high_bits(qh));
        const v128_t hi = wasm_v128_or(wasm_u8x16_shr(q, 4), q5_high_bits(qh >> 16));
        const int isum = hsum_i32x4(wasm_i32x4_add(dot_i8x16(lo, y0), dot_i8x16(hi, y1)));
        const int ysum = hsum_i32x4(wasm_i32x4_add(sum_i8x16(y0), sum_i8x16(y1)));
        const float dy = F16(y[i].d);
        sum += (float)isum * (F16(x[i].d) * dy) + (float)ysum * (F16(x[i].m) * dy);
    }
    *s = sum;
}

/* Lane k of the result = the sum of the four lanes of v[k] (four horizontal sums at once). */
static inline v128_t hsum4_i32x4(v128_t a, v128_t b, v128_t c, v128_t d) {
    const v128_t ab = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
    const v128_t cd = wasm_i32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 1, 5), wasm_i32x4_shuffle(c, d, 2, 6, 3, 7));
    /* ab = (a0+a2, b0+b2, a1+a3, b1+b3), likewise cd */
    return wasm_i32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5), wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7));
}

static inline v128_t dot_q8_0_block(const block_q8_0 *x, const block_q8_0 *y) {
    return wasm_i32x4_add(dot_i8x16(wasm_v128_load(x->qs), wasm_v128_load(y->qs)),
                          dot_i8x16(wasm_v128_load(x->qs + 16), wasm_v128_load(y->qs + 16)));
}

void emb_vec_dot_q8_0_q8_0_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = (const block_q8_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    float sum = 0.0f;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) { /* four blocks' integer sums at once; the float sum keeps block order */
        const v128_t isums = hsum4_i32x4(dot_q8_0_block(&x[i], &y[i]), dot_q8_0_block(&x[i + 1], &y[i + 1]),
                                         dot_q8_0_block(&x[i + 2], &y[i + 2]), dot_q8_0_block(&x[i + 3], &y[i + 3]));
        const v128_t d = wasm_f32x4_make(F16(x[i].d) * F16(y[i].d), F16(x[i + 1].d) * F16(y[i + 1].d),
                                         F16(x[i + 2].d) * F16(y[i + 2].d), F16(x[i + 3].d) * F16(y[i + 3].d));
        const v128_t p = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isums), d);
        sum += wasm_f32x4_extract_lane(p, 0);
        sum += wasm_f32x4_extract_lane(p, 1);
        sum += wasm_f32x4_extract_lane(p, 2);
        sum += wasm_f32x4_extract_lane(p, 3);
    }
    for (; i < nb; i++) sum += (float)hsum_i32x4(dot_q8_0_block(&x[i], &y[i])) * (F16(x[i].d) * F16(y[i].d));
    *s = sum;
}

/* The 6-bit scale and min of sub-block j of a Q4_K block (as quants.c's get_scale_min_k4). */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

void emb_vec_dot_q4_k_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = (const block_q4_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc = wasm_i32x4_splat(0);
        int msum = 0;
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < 4; j++, q8 += 64) {
            const uint8_t *q = x[i].qs + 32 * j;
            int sc0, m0, sc1, m1;
            scale_min_k4(2 * j, x[i].scales, &sc0, &m0);
            scale_min_k4(2 * j + 1, x[i].scales, &sc1, &m1);
            const v128_t qa = wasm_v128_load(q), qb = wasm_v128_load(q + 16);
            const v128_t s0 = wasm_i32x4_add(dot_i8x16(wasm_v128_and(qa, m4), wasm_v128_load(q8)),
                                             dot_i8x16(wasm_v128_and(qb, m4), wasm_v128_load(q8 + 16)));
            const v128_t s1 = wasm_i32x4_add(dot_i8x16(wasm_u8x16_shr(qa, 4), wasm_v128_load(q8 + 32)),
                                             dot_i8x16(wasm_u8x16_shr(qb, 4), wasm_v128_load(q8 + 48)));
            acc = wasm_i32x4_add(acc, wasm_i32x4_add(wasm_i32x4_mul(s0, wasm_i32x4_splat(sc0)),
                                                     wasm_i32x4_mul(s1, wasm_i32x4_splat(sc1))));
            msum += m0 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) +
                    m1 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
        }
        const int isum = hsum_i32x4(acc);
        sum += y[i].d * F16(x[i].d) * (float)isum - y[i].d * F16(x[i].dmin) * (float)msum;
    }
    *s = sum;
}

void emb_vec_dot_q5_k_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = (const block_q5_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f), one = wasm_i8x16_splat(1);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc = wasm_i32x4_splat(0);
        int msum = 0;
        const int8_t *q8 = y[i].qs;
        const v128_t ha = wasm_v128_load(x[i].qh), hb = wasm_v128_load(x[i].qh + 16);
        for (int j = 0; j < 4; j++, q8 += 64) {
            const uint8_t *q = x[i].qs + 32 * j;
            int sc0, m0, sc1, m1;
            scale_min_k4(2 * j, x[i].scales, &sc0, &m0);
            scale_min_k4(2 * j + 1, x[i].scales, &sc1, &m1);
            const v128_t qa = wasm_v128_load(q), qb = wasm_v128_load(q + 16);
            const v128_t ha0 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(ha, 2 * j), one), 4);
            const v128_t hb0 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(hb, 2 * j), one), 4);
            const v128_t ha1 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(ha, 2 * j + 1), one), 4);
            const v128_t hb1 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(hb, 2 * j + 1), one), 4);
            const v128_t la = wasm_v128_or(wasm_v128_and(qa, m4), ha0), lb = wasm_v128_or(wasm_v128_and(qb, m4), hb0);
            const v128_t ua = wasm_v128_or(wasm_u8x16_shr(qa, 4), ha1), ub = wasm_v128_or(wasm_u8x16_shr(qb, 4), hb1);
            const v128_t s0 = wasm_i32x4_add(dot_i8x16(la, wasm_v128_load(q8)), dot_i8x16(lb, wasm_v128_load(q8 + 16)));
            const v128_t s1 =
                wasm_i32x4_add(dot_i8x16(ua, wasm_v128_load(q8 + 32)), dot_i8x16(ub, wasm_v128_load(q8 + 48)));
            acc = wasm_i32x4_add(acc, wasm_i32x4_add(wasm_i32x4_mul(s0, wasm_i32x4_splat(sc0)),
                                                     wasm_i32x4_mul(s1, wasm_i32x4_splat(sc1))));
            msum += m0 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) +
                    m1 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
        }
        const int isum = hsum_i32x4(acc);
        sum += y[i].d * F16(x[i].d) * (float)isum - y[i].d * F16(x[i].dmin) * (float)msum;
    }
    *s = sum;
}

void emb_vec_dot_q6_k_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = (const block_q6_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f), m30 = wasm_i8x16_splat(0x30), m3 = wasm_i8x16_splat(3);
    const v128_t k32 = wasm_i8x16_splat(32);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc = wasm_i32x4_splat(0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            for (int k = 0; k < 2; k++) {
                const int l = 16 * k;
                const v128_t a = wasm_v128_load(ql + l), b = wasm_v128_load(ql + l + 32);
                const v128_t hb = wasm_v128_load(qh + l);
                const v128_t q1 = wasm_i8x16_sub(
                    wasm_v128_or(wasm_v128_and(a, m4), wasm_i8x16_shl(wasm_v128_and(hb, m3), 4)), k32);
                const v128_t q2 = wasm_i8x16_sub(
                    wasm_v128_or(wasm_v128_and(b, m4), wasm_v128_and(wasm_i8x16_shl(hb, 2), m30)), k32);
                const v128_t q3 = wasm_i8x16_sub(wasm_v128_or(wasm_u8x16_shr(a, 4), wasm_v128_and(hb, m30)), k32);
                const v128_t q4 = wasm_i8x16_sub(
                    wasm_v128_or(wasm_u8x16_shr(b, 4), wasm_v128_and(wasm_u8x16_shr(hb, 2), m30)), k32);
                v128_t t = wasm_i32x4_mul(dot_i8x16(q1, wasm_v128_load(q8 + l)), wasm_i32x4_splat(sc[k]));
                t = wasm_i32x4_add(t, wasm_i32x4_mul(dot_i8x16(q2, wasm_v128_load(q8 + l + 32)),
                                                     wasm_i32x4_splat(sc[k + 2])));
                t = wasm_i32x4_add(t, wasm_i32x4_mul(dot_i8x16(q3, wasm_v128_load(q8 + l + 64)),
                                                     wasm_i32x4_splat(sc[k + 4])));
                t = wasm_i32x4_add(t, wasm_i32x4_mul(dot_i8x16(q4, wasm_v128_load(q8 + l + 96)),
                                                     wasm_i32x4_splat(sc[k + 6])));
                acc = wasm_i32x4_add(acc, t);
            }
        }
        sum += y[i].d * F16(x[i].d) * (float)hsum_i32x4(acc);
    }
    *s = sum;
}

/* roundf (half away from zero) of every lane: trunc, then one step away from zero when |frac| >= 0.5. */
static inline v128_t round_away_f32x4(v128_t v) {
    const v128_t t = wasm_f32x4_trunc(v);
    const v128_t big = wasm_f32x4_ge(wasm_f32x4_abs(wasm_f32x4_sub(v, t)), wasm_f32x4_splat(0.5f));
    const v128_t one = wasm_v128_or(wasm_v128_and(v, wasm_i32x4_splat((int32_t)0x80000000u)), wasm_f32x4_splat(1.0f));
    return wasm_f32x4_add(t, wasm_v128_and(big, one));
}

/* 16 int8 from four vectors of already integral floats in [-128, 127]. */
static inline v128_t pack_i8(v128_t a, v128_t b, v128_t c, v128_t d) {
    const v128_t ab = wasm_i16x8_narrow_i32x4(wasm_i32x4_trunc_sat_f32x4(a), wasm_i32x4_trunc_sat_f32x4(b));
    const v128_t cd = wasm_i16x8_narrow_i32x4(wasm_i32x4_trunc_sat_f32x4(c), wasm_i32x4_trunc_sat_f32x4(d));
    return wasm_i8x16_narrow_i16x8(ab, cd);
}

void emb_quantize_q8_0_simd128(const float *x, void *dst, int64_t n) {
    block_q8_0 *y = (block_q8_0 *)dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        v128_t v[8];
        v128_t amax = wasm_f32x4_splat(0.0f);
        for (int j = 0; j < 8; j++) {
            v[j] = wasm_v128_load(x + 4 * j);
            amax = wasm_f32x4_pmax(amax, wasm_f32x4_abs(v[j]));
        }
        const float d = hmax_f32x4(amax) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = emb_f32_to_f16(d);
        const v128_t vid = wasm_f32x4_splat(id);
        for (int j = 0; j < 8; j++) v[j] = round_away_f32x4(wasm_f32x4_mul(v[j], vid));
        wasm_v128_store(y[i].qs, pack_i8(v[0], v[1], v[2], v[3]));
        wasm_v128_store(y[i].qs + 16, pack_i8(v[4], v[5], v[6], v[7]));
    }
}

void emb_quantize_q8_k_simd128(const float *x, void *dst, int64_t n) {
    block_q8_K *y = (block_q8_K *)dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        v128_t vmax = wasm_f32x4_splat(0.0f);
        for (int j = 0; j < QK_K; j += 4) vmax = wasm_f32x4_pmax(vmax, wasm_f32x4_abs(wasm_v128_load(x + j)));
        const float amax = hmax_f32x4(vmax);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0.0f; /* the first value of largest magnitude, sign kept */
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const v128_t vs = wasm_f32x4_splat(iscale), cap = wasm_f32x4_splat(127.0f);
        for (int j = 0; j < QK_K; j += 16) {
            v128_t v[4];
            for (int k = 0; k < 4; k++) {
                v[k] = wasm_f32x4_min(wasm_f32x4_nearest(wasm_f32x4_mul(vs, wasm_v128_load(x + j + 4 * k))), cap);
            }
            const v128_t q = pack_i8(v[0], v[1], v[2], v[3]);
            wasm_v128_store(y[i].qs + j, q);
            const v128_t s = wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_extadd_pairwise_i8x16(q));
            y[i].bsums[j / 16] = (int16_t)hsum_i32x4(s);
        }
        y[i].d = 1.0f / iscale;
    }
}

#endif

void emb_traits_wasm(int type, int level, emb_type_traits *t) {
    if (level != EMB_LEVEL_WASM_SIMD128 && level != EMB_LEVEL_WASM_RELAXED) return;
    const emb_type_traits *lt = emb_get_type_traits(type, level);
    if (lt) *t = *lt;
}
