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

#define F16(h) emb_wasm_f16_to_f32(h)

/* The block scales d of four consecutive blocks (any block type with an emb_f16 d), as floats. */
#define F16X4_D(b, i) emb_wasm_f16x4_to_f32(wasm_i32x4_make((b)[i].d, (b)[(i) + 1].d, (b)[(i) + 2].d, (b)[(i) + 3].d))

static inline float hmax_f32x4(v128_t v) {
    const float a = wasm_f32x4_extract_lane(v, 0), b = wasm_f32x4_extract_lane(v, 1);
    const float c = wasm_f32x4_extract_lane(v, 2), d = wasm_f32x4_extract_lane(v, 3);
    const float ab = a > b ? a : b, cd = c > d ? c : d;
    return ab > cd ? ab : cd;
}

/* 0x10 in every lane whose bit (lanes 0-15 <- bits 0-15 of qh >> shift) is set. */
static inline v128_t q5_high_bits(uint32_t qh) {
    const v128_t v = wasm_i32x4_splat((int32_t)qh);
    const v128_t sel = wasm_i8x16_shuffle(v, v, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
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
        const v128_t acc = wasm_i32x4_add(emb_wasm_dot_i8x16(lo, wasm_v128_load(y[i].qs)),
                                          emb_wasm_dot_i8x16(hi, wasm_v128_load(y[i].qs + 16)));
        sum += (float)emb_wasm_hsum_i32x4(acc) * (F16(x[i].d) * F16(y[i].d));
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

/* Byte j of entry b: 0x10 when bit j of b is clear (a Q5_0 value's missing high bit, to subtract). */
static const uint64_t k_q5_missing_high[256] = {
    0x1010101010101010ull, 0x1010101010101000ull, 0x1010101010100010ull, 0x1010101010100000ull,
    0x1010101010001010ull, 0x1010101010001000ull, 0x1010101010000010ull, 0x1010101010000000ull,
    0x1010101000101010ull, 0x1010101000101000ull, 0x1010101000100010ull, 0x1010101000100000ull,
    0x1010101000001010ull, 0x1010101000001000ull, 0x1010101000000010ull, 0x1010101000000000ull,
    0x1010100010101010ull, 0x1010100010101000ull, 0x1010100010100010ull, 0x1010100010100000ull,
    0x1010100010001010ull, 0x1010100010001000ull, 0x1010100010000010ull, 0x1010100010000000ull,
    0x1010100000101010ull, 0x1010100000101000ull, 0x1010100000100010ull, 0x1010100000100000ull,
    0x1010100000001010ull, 0x1010100000001000ull, 0x1010100000000010ull, 0x1010100000000000ull,
    0x1010001010101010ull, 0x1010001010101000ull, 0x1010001010100010ull, 0x1010001010100000ull,
    0x1010001010001010ull, 0x1010001010001000ull, 0x1010001010000010ull, 0x1010001010000000ull,
    0x1010001000101010ull, 0x1010001000101000ull, 0x1010001000100010ull, 0x1010001000100000ull,
    0x1010001000001010ull, 0x1010001000001000ull, 0x1010001000000010ull, 0x1010001000000000ull,
    0x1010000010101010ull, 0x1010000010101000ull, 0x1010000010100010ull, 0x1010000010100000ull,
    0x1010000010001010ull, 0x1010000010001000ull, 0x1010000010000010ull, 0x1010000010000000ull,
    0x1010000000101010ull, 0x1010000000101000ull, 0x1010000000100010ull, 0x1010000000100000ull,
    0x1010000000001010ull, 0x1010000000001000ull, 0x1010000000000010ull, 0x1010000000000000ull,
    0x1000101010101010ull, 0x1000101010101000ull, 0x1000101010100010ull, 0x1000101010100000ull,
    0x1000101010001010ull, 0x1000101010001000ull, 0x1000101010000010ull, 0x1000101010000000ull,
    0x1000101000101010ull, 0x1000101000101000ull, 0x1000101000100010ull, 0x1000101000100000ull,
    0x1000101000001010ull, 0x1000101000001000ull, 0x1000101000000010ull, 0x1000101000000000ull,
    0x1000100010101010ull, 0x1000100010101000ull, 0x1000100010100010ull, 0x1000100010100000ull,
    0x1000100010001010ull, 0x1000100010001000ull, 0x1000100010000010ull, 0x1000100010000000ull,
    0x1000100000101010ull, 0x1000100000101000ull, 0x1000100000100010ull, 0x1000100000100000ull,
    0x1000100000001010ull, 0x1000100000001000ull, 0x1000100000000010ull, 0x1000100000000000ull,
    0x1000001010101010ull, 0x1000001010101000ull, 0x1000001010100010ull, 0x1000001010100000ull,
    0x1000001010001010ull, 0x1000001010001000ull, 0x1000001010000010ull, 0x1000001010000000ull,
    0x1000001000101010ull, 0x1000001000101000ull, 0x1000001000100010ull, 0x1000001000100000ull,
    0x1000001000001010ull, 0x1000001000001000ull, 0x1000001000000010ull, 0x1000001000000000ull,
    0x1000000010101010ull, 0x1000000010101000ull, 0x1000000010100010ull, 0x1000000010100000ull,
    0x1000000010001010ull, 0x1000000010001000ull, 0x1000000010000010ull, 0x1000000010000000ull,
    0x1000000000101010ull, 0x1000000000101000ull, 0x1000000000100010ull, 0x1000000000100000ull,
    0x1000000000001010ull, 0x1000000000001000ull, 0x1000000000000010ull, 0x1000000000000000ull,
    0x0010101010101010ull, 0x0010101010101000ull, 0x0010101010100010ull, 0x0010101010100000ull,
    0x0010101010001010ull, 0x0010101010001000ull, 0x0010101010000010ull, 0x0010101010000000ull,
    0x0010101000101010ull, 0x0010101000101000ull, 0x0010101000100010ull, 0x0010101000100000ull,
    0x0010101000001010ull, 0x0010101000001000ull, 0x0010101000000010ull, 0x0010101000000000ull,
    0x0010100010101010ull, 0x0010100010101000ull, 0x0010100010100010ull, 0x0010100010100000ull,
    0x0010100010001010ull, 0x0010100010001000ull, 0x0010100010000010ull, 0x0010100010000000ull,
    0x0010100000101010ull, 0x0010100000101000ull, 0x0010100000100010ull, 0x0010100000100000ull,
    0x0010100000001010ull, 0x0010100000001000ull, 0x0010100000000010ull, 0x0010100000000000ull,
    0x0010001010101010ull, 0x0010001010101000ull, 0x0010001010100010ull, 0x0010001010100000ull,
    0x0010001010001010ull, 0x0010001010001000ull, 0x0010001010000010ull, 0x0010001010000000ull,
    0x0010001000101010ull, 0x0010001000101000ull, 0x0010001000100010ull, 0x0010001000100000ull,
    0x0010001000001010ull, 0x0010001000001000ull, 0x0010001000000010ull, 0x0010001000000000ull,
    0x0010000010101010ull, 0x0010000010101000ull, 0x0010000010100010ull, 0x0010000010100000ull,
    0x0010000010001010ull, 0x0010000010001000ull, 0x0010000010000010ull, 0x0010000010000000ull,
    0x0010000000101010ull, 0x0010000000101000ull, 0x0010000000100010ull, 0x0010000000100000ull,
    0x0010000000001010ull, 0x0010000000001000ull, 0x0010000000000010ull, 0x0010000000000000ull,
    0x0000101010101010ull, 0x0000101010101000ull, 0x0000101010100010ull, 0x0000101010100000ull,
    0x0000101010001010ull, 0x0000101010001000ull, 0x0000101010000010ull, 0x0000101010000000ull,
    0x0000101000101010ull, 0x0000101000101000ull, 0x0000101000100010ull, 0x0000101000100000ull,
    0x0000101000001010ull, 0x0000101000001000ull, 0x0000101000000010ull, 0x0000101000000000ull,
    0x0000100010101010ull, 0x0000100010101000ull, 0x0000100010100010ull, 0x0000100010100000ull,
    0x0000100010001010ull, 0x0000100010001000ull, 0x0000100010000010ull, 0x0000100010000000ull,
    0x0000100000101010ull, 0x0000100000101000ull, 0x0000100000100010ull, 0x0000100000100000ull,
    0x0000100000001010ull, 0x0000100000001000ull, 0x0000100000000010ull, 0x0000100000000000ull,
    0x0000001010101010ull, 0x0000001010101000ull, 0x0000001010100010ull, 0x0000001010100000ull,
    0x0000001010001010ull, 0x0000001010001000ull, 0x0000001010000010ull, 0x0000001010000000ull,
    0x0000001000101010ull, 0x0000001000101000ull, 0x0000001000100010ull, 0x0000001000100000ull,
    0x0000001000001010ull, 0x0000001000001000ull, 0x0000001000000010ull, 0x0000001000000000ull,
    0x0000000010101010ull, 0x0000000010101000ull, 0x0000000010100010ull, 0x0000000010100000ull,
    0x0000000010001010ull, 0x0000000010001000ull, 0x0000000010000010ull, 0x0000000010000000ull,
    0x0000000000101010ull, 0x0000000000101000ull, 0x0000000000100010ull, 0x0000000000100000ull,
    0x0000000000001010ull, 0x0000000000001000ull, 0x0000000000000010ull, 0x0000000000000000ull,
};

/* The integer dot product of one Q5_0 block with one Q8_0 block, as four i32 partial sums: a value is
 * (low nibble | high bit << 4) - 16 = low nibble - (high bit clear ? 16 : 0). */
static inline v128_t dot_q5_0_block(const block_q5_0 *x, const block_q8_0 *y) {
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    const v128_t h0 = wasm_i64x2_make((int64_t)k_q5_missing_high[x->qh[0]], (int64_t)k_q5_missing_high[x->qh[1]]);
    const v128_t h1 = wasm_i64x2_make((int64_t)k_q5_missing_high[x->qh[2]], (int64_t)k_q5_missing_high[x->qh[3]]);
    const v128_t q = wasm_v128_load(x->qs);
    const v128_t lo = wasm_i8x16_sub(wasm_v128_and(q, m4), h0);
    const v128_t hi = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), h1);
    return wasm_i32x4_add(emb_wasm_dot_i8x16(lo, wasm_v128_load(y->qs)), emb_wasm_dot_i8x16(hi, wasm_v128_load(y->qs + 16)));
}


void emb_vec_dot_q5_0_q8_0_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = (const block_q5_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f), sixteen = wasm_i8x16_splat(16);
    const int64_t nb = n / QK8_0;
    float sum = 0.0f;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) { /* four blocks' integer sums at once; the float sum keeps block order */
        const v128_t isums = hsum4_i32x4(dot_q5_0_block(&x[i], &y[i]), dot_q5_0_block(&x[i + 1], &y[i + 1]),
                                         dot_q5_0_block(&x[i + 2], &y[i + 2]), dot_q5_0_block(&x[i + 3], &y[i + 3]));
        const v128_t d = wasm_f32x4_mul(F16X4_D(x, i), F16X4_D(y, i));
        sum = emb_wasm_add_lanes_f32(sum, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isums), d));
    }
    for (; i < nb; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        const v128_t q = wasm_v128_load(x[i].qs);
        const v128_t lo = wasm_i8x16_sub(wasm_v128_or(wasm_v128_and(q, m4), q5_high_bits(qh)), sixteen);
        const v128_t hi = wasm_i8x16_sub(wasm_v128_or(wasm_u8x16_shr(q, 4), q5_high_bits(qh >> 16)), sixteen);
        const v128_t acc = wasm_i32x4_add(emb_wasm_dot_i8x16(lo, wasm_v128_load(y[i].qs)),
                                          emb_wasm_dot_i8x16(hi, wasm_v128_load(y[i].qs + 16)));
        sum += (float)emb_wasm_hsum_i32x4(acc) * (F16(x[i].d) * F16(y[i].d));
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
        const int isum = emb_wasm_hsum_i32x4(wasm_i32x4_add(emb_wasm_dot_i8x16(wasm_v128_and(q, m4), y0),
                                                   emb_wasm_dot_i8x16(wasm_u8x16_shr(q, 4), y1)));
        const int ysum = emb_wasm_hsum_i32x4(wasm_i32x4_add(sum_i8x16(y0), sum_i8x16(y1)));
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
        const int isum = emb_wasm_hsum_i32x4(wasm_i32x4_add(emb_wasm_dot_i8x16(lo, y0), emb_wasm_dot_i8x16(hi, y1)));
        const int ysum = emb_wasm_hsum_i32x4(wasm_i32x4_add(sum_i8x16(y0), sum_i8x16(y1)));
        const float dy = F16(y[i].d);
        sum += (float)isum * (F16(x[i].d) * dy) + (float)ysum * (F16(x[i].m) * dy);
    }
    *s = sum;
}

static inline v128_t dot_q8_0_block(const block_q8_0 *x, const block_q8_0 *y) {
    return wasm_i32x4_add(emb_wasm_dot_i8x16(wasm_v128_load(x->qs), wasm_v128_load(y->qs)),
                          emb_wasm_dot_i8x16(wasm_v128_load(x->qs + 16), wasm_v128_load(y->qs + 16)));
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
        const v128_t d = wasm_f32x4_mul(F16X4_D(x, i), F16X4_D(y, i));
        sum = emb_wasm_add_lanes_f32(sum, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isums), d));
    }
    for (; i < nb; i++) sum += (float)emb_wasm_hsum_i32x4(dot_q8_0_block(&x[i], &y[i])) * (F16(x[i].d) * F16(y[i].d));
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

/* The scales of sub-blocks 2j and 2j+1 of a Q4_K/Q5_K block; returns their mins' part of the dot product (each
 * min times the activation's sum over its 32 values). */
static inline int k4_pair(const uint8_t *scales, const int16_t *bsums, int j, int *sc0, int *sc1) {
    int m0, m1;
    scale_min_k4(2 * j, scales, sc0, &m0);
    scale_min_k4(2 * j + 1, scales, sc1, &m1);
    return m0 * (bsums[4 * j] + bsums[4 * j + 1]) + m1 * (bsums[4 * j + 2] + bsums[4 * j + 3]);
}

/* One Q4_K/Q5_K super-block's part of the dot product, in the scalar twin's float order. */
static inline float k4_block_sum(float yd, emb_f16 d, emb_f16 dmin, int isum, int msum) {
    return yd * F16(d) * (float)isum - yd * F16(dmin) * (float)msum;
}

/* acc + s0 * sc0 + s1 * sc1 (i32 lanes). */
static inline v128_t add_scaled_pair(v128_t acc, v128_t s0, int sc0, v128_t s1, int sc1) {
    return wasm_i32x4_add(acc, wasm_i32x4_add(wasm_i32x4_mul(s0, wasm_i32x4_splat(sc0)),
                                              wasm_i32x4_mul(s1, wasm_i32x4_splat(sc1))));
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
            int sc0, sc1;
            msum += k4_pair(x[i].scales, y[i].bsums, j, &sc0, &sc1);
            const v128_t qa = wasm_v128_load(q), qb = wasm_v128_load(q + 16);
            const v128_t s0 = wasm_i32x4_add(emb_wasm_dot_i8x16(wasm_v128_and(qa, m4), wasm_v128_load(q8)),
                                             emb_wasm_dot_i8x16(wasm_v128_and(qb, m4), wasm_v128_load(q8 + 16)));
            const v128_t s1 = wasm_i32x4_add(emb_wasm_dot_i8x16(wasm_u8x16_shr(qa, 4), wasm_v128_load(q8 + 32)),
                                             emb_wasm_dot_i8x16(wasm_u8x16_shr(qb, 4), wasm_v128_load(q8 + 48)));
            acc = add_scaled_pair(acc, s0, sc0, s1, sc1);
        }
        const int isum = emb_wasm_hsum_i32x4(acc);
        sum += k4_block_sum(y[i].d, x[i].d, x[i].dmin, isum, msum);
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
            int sc0, sc1;
            msum += k4_pair(x[i].scales, y[i].bsums, j, &sc0, &sc1);
            const v128_t qa = wasm_v128_load(q), qb = wasm_v128_load(q + 16);
            const v128_t ha0 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(ha, 2 * j), one), 4);
            const v128_t hb0 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(hb, 2 * j), one), 4);
            const v128_t ha1 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(ha, 2 * j + 1), one), 4);
            const v128_t hb1 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(hb, 2 * j + 1), one), 4);
            const v128_t la = wasm_v128_or(wasm_v128_and(qa, m4), ha0), lb = wasm_v128_or(wasm_v128_and(qb, m4), hb0);
            const v128_t ua = wasm_v128_or(wasm_u8x16_shr(qa, 4), ha1), ub = wasm_v128_or(wasm_u8x16_shr(qb, 4), hb1);
            const v128_t s0 = wasm_i32x4_add(emb_wasm_dot_i8x16(la, wasm_v128_load(q8)), emb_wasm_dot_i8x16(lb, wasm_v128_load(q8 + 16)));
            const v128_t s1 =
                wasm_i32x4_add(emb_wasm_dot_i8x16(ua, wasm_v128_load(q8 + 32)), emb_wasm_dot_i8x16(ub, wasm_v128_load(q8 + 48)));
            acc = add_scaled_pair(acc, s0, sc0, s1, sc1);
        }
        const int isum = emb_wasm_hsum_i32x4(acc);
        sum += k4_block_sum(y[i].d, x[i].d, x[i].dmin, isum, msum);
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
                v128_t t = wasm_i32x4_mul(emb_wasm_dot_i8x16(q1, wasm_v128_load(q8 + l)), wasm_i32x4_splat(sc[k]));
                t = wasm_i32x4_add(t, wasm_i32x4_mul(emb_wasm_dot_i8x16(q2, wasm_v128_load(q8 + l + 32)),
                                                     wasm_i32x4_splat(sc[k + 2])));
                t = wasm_i32x4_add(t, wasm_i32x4_mul(emb_wasm_dot_i8x16(q3, wasm_v128_load(q8 + l + 64)),
                                                     wasm_i32x4_splat(sc[k + 4])));
                t = wasm_i32x4_add(t, wasm_i32x4_mul(emb_wasm_dot_i8x16(q4, wasm_v128_load(q8 + l + 96)),
                                                     wasm_i32x4_splat(sc[k + 6])));
                acc = wasm_i32x4_add(acc, t);
            }
        }
        sum += y[i].d * F16(x[i].d) * (float)emb_wasm_hsum_i32x4(acc);
    }
    *s = sum;
}

#if defined(__wasm_relaxed_simd__)
/* Relaxed-SIMD kernels (the EMB_LEVEL_WASM_RELAXED build).  i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c) adds
 * the four products a[4k..4k+3] * b[4k..4k+3] to lane k of c; it is exact and the same on every engine while b
 * is in [0, 127] (x86 runs it as pmaddubsw with b unsigned, whose 16-bit pair sums cannot saturate then, or as
 * VNNI vpdpbusd; ARM as sdot).  So b is always a non-negative 7-bit operand here: the unsigned quant values of
 * the weights, with the offsets folded back through sums of the activations.  Integer sums inside a block are
 * exact and the float part is the SIMD128 kernel's, so results are bit-identical to the scalar twins. */
#define RDOT(a, b, c) wasm_i32x4_relaxed_dot_i8x16_i7x16_add((a), (b), (c))

/* Q8_0 . Q8_0: x = (x & 0x7f) - 128 * (x < 0), so x . y = y . (x & 0x7f) - 128 * (y . [x < 0]). */
static inline v128_t dot_q8_0_block_relaxed(const block_q8_0 *x, const block_q8_0 *y) {
    const v128_t m7 = wasm_i8x16_splat(0x7f);
    const v128_t x0 = wasm_v128_load(x->qs), x1 = wasm_v128_load(x->qs + 16);
    const v128_t y0 = wasm_v128_load(y->qs), y1 = wasm_v128_load(y->qs + 16);
    const v128_t low = RDOT(y1, wasm_v128_and(x1, m7), RDOT(y0, wasm_v128_and(x0, m7), wasm_i32x4_splat(0)));
    const v128_t neg = RDOT(y1, wasm_u8x16_shr(x1, 7), RDOT(y0, wasm_u8x16_shr(x0, 7), wasm_i32x4_splat(0)));
    return wasm_i32x4_sub(low, wasm_i32x4_shl(neg, 7));
}

void emb_vec_dot_q8_0_q8_0_relaxed(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = (const block_q8_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    float sum = 0.0f;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        const v128_t isums =
            hsum4_i32x4(dot_q8_0_block_relaxed(&x[i], &y[i]), dot_q8_0_block_relaxed(&x[i + 1], &y[i + 1]),
                        dot_q8_0_block_relaxed(&x[i + 2], &y[i + 2]), dot_q8_0_block_relaxed(&x[i + 3], &y[i + 3]));
        const v128_t d = wasm_f32x4_mul(F16X4_D(x, i), F16X4_D(y, i));
        sum = emb_wasm_add_lanes_f32(sum, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isums), d));
    }
    for (; i < nb; i++) sum += (float)emb_wasm_hsum_i32x4(dot_q8_0_block_relaxed(&x[i], &y[i])) * (F16(x[i].d) * F16(y[i].d));
    *s = sum;
}

/* Q5_0 . Q8_0: the unsigned 5-bit values u (nibble | high bit << 4) are in [0, 31]; x . y = y . u - 16 sum(y). */
static inline v128_t dot_q5_0_block_relaxed(const block_q5_0 *x, const block_q8_0 *y) {
    const v128_t m4 = wasm_i8x16_splat(0x0f), k16 = wasm_i8x16_splat(0x10), ones = wasm_i8x16_splat(1);
    const v128_t h0 = wasm_i64x2_make((int64_t)k_q5_missing_high[x->qh[0]], (int64_t)k_q5_missing_high[x->qh[1]]);
    const v128_t h1 = wasm_i64x2_make((int64_t)k_q5_missing_high[x->qh[2]], (int64_t)k_q5_missing_high[x->qh[3]]);
    const v128_t q = wasm_v128_load(x->qs);
    const v128_t u0 = wasm_v128_or(wasm_v128_and(q, m4), wasm_v128_xor(h0, k16));
    const v128_t u1 = wasm_v128_or(wasm_u8x16_shr(q, 4), wasm_v128_xor(h1, k16));
    const v128_t y0 = wasm_v128_load(y->qs), y1 = wasm_v128_load(y->qs + 16);
    const v128_t dot = RDOT(y1, u1, RDOT(y0, u0, wasm_i32x4_splat(0)));
    const v128_t ysum = RDOT(y1, ones, RDOT(y0, ones, wasm_i32x4_splat(0)));
    return wasm_i32x4_sub(dot, wasm_i32x4_shl(ysum, 4));
}

void emb_vec_dot_q5_0_q8_0_relaxed(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = (const block_q5_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    float sum = 0.0f;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        const v128_t isums =
            hsum4_i32x4(dot_q5_0_block_relaxed(&x[i], &y[i]), dot_q5_0_block_relaxed(&x[i + 1], &y[i + 1]),
                        dot_q5_0_block_relaxed(&x[i + 2], &y[i + 2]), dot_q5_0_block_relaxed(&x[i + 3], &y[i + 3]));
        const v128_t d = wasm_f32x4_mul(F16X4_D(x, i), F16X4_D(y, i));
        sum = emb_wasm_add_lanes_f32(sum, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isums), d));
    }
    for (; i < nb; i++) sum += (float)emb_wasm_hsum_i32x4(dot_q5_0_block_relaxed(&x[i], &y[i])) * (F16(x[i].d) * F16(y[i].d));
    *s = sum;
}

/* Q4_K . Q8_K: the nibbles are already unsigned (the mins go through the activation's bsums). */
void emb_vec_dot_q4_k_q8_k_relaxed(int64_t n, float *s, const void *vx, const void *vy) {
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
            int sc0, sc1;
            msum += k4_pair(x[i].scales, y[i].bsums, j, &sc0, &sc1);
            const v128_t qa = wasm_v128_load(q), qb = wasm_v128_load(q + 16);
            const v128_t s0 = RDOT(wasm_v128_load(q8 + 16), wasm_v128_and(qb, m4),
                                   RDOT(wasm_v128_load(q8), wasm_v128_and(qa, m4), wasm_i32x4_splat(0)));
            const v128_t s1 = RDOT(wasm_v128_load(q8 + 48), wasm_u8x16_shr(qb, 4),
                                   RDOT(wasm_v128_load(q8 + 32), wasm_u8x16_shr(qa, 4), wasm_i32x4_splat(0)));
            acc = add_scaled_pair(acc, s0, sc0, s1, sc1);
        }
        const int isum = emb_wasm_hsum_i32x4(acc);
        sum += k4_block_sum(y[i].d, x[i].d, x[i].dmin, isum, msum);
    }
    *s = sum;
}

/* Q6_K . Q8_K: the unsigned 6-bit values are in [0, 63]; the -32 offset comes back through the bsums (one per 16
 * values, the same granularity as the scales). */
void emb_vec_dot_q6_k_q8_k_relaxed(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = (const block_q6_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f), m30 = wasm_i8x16_splat(0x30), m3 = wasm_i8x16_splat(3);
    const v128_t zero = wasm_i32x4_splat(0);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc = wasm_i32x4_splat(0);
        int off = 0;
        for (int g = 0; g < QK_K / 16; g++) off += x[i].scales[g] * y[i].bsums[g];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            for (int k = 0; k < 2; k++) {
                const int l = 16 * k;
                const v128_t a = wasm_v128_load(ql + l), b = wasm_v128_load(ql + l + 32);
                const v128_t hb = wasm_v128_load(qh + l);
                const v128_t q1 = wasm_v128_or(wasm_v128_and(a, m4), wasm_i8x16_shl(wasm_v128_and(hb, m3), 4));
                const v128_t q2 = wasm_v128_or(wasm_v128_and(b, m4), wasm_v128_and(wasm_i8x16_shl(hb, 2), m30));
                const v128_t q3 = wasm_v128_or(wasm_u8x16_shr(a, 4), wasm_v128_and(hb, m30));
                const v128_t q4 = wasm_v128_or(wasm_u8x16_shr(b, 4), wasm_v128_and(wasm_u8x16_shr(hb, 2), m30));
                v128_t t = wasm_i32x4_mul(RDOT(wasm_v128_load(q8 + l), q1, zero), wasm_i32x4_splat(sc[k]));
                t = wasm_i32x4_add(t, wasm_i32x4_mul(RDOT(wasm_v128_load(q8 + l + 32), q2, zero),
                                                     wasm_i32x4_splat(sc[k + 2])));
                t = wasm_i32x4_add(t, wasm_i32x4_mul(RDOT(wasm_v128_load(q8 + l + 64), q3, zero),
                                                     wasm_i32x4_splat(sc[k + 4])));
                t = wasm_i32x4_add(t, wasm_i32x4_mul(RDOT(wasm_v128_load(q8 + l + 96), q4, zero),
                                                     wasm_i32x4_splat(sc[k + 6])));
                acc = wasm_i32x4_add(acc, t);
            }
        }
        sum += y[i].d * F16(x[i].d) * (float)(emb_wasm_hsum_i32x4(acc) - 32 * off);
    }
    *s = sum;
}
#endif

/* ---- Decode tiles: 4 weight rows x 1 token (emb_dot_tile_wasm) ----
 * One token's activation row meets four weight rows at once: each activation block is loaded and prepared once
 * for four rows, and the four rows' float sums run side by side in the lanes of one vector (lane r = row r),
 * each in block order with the scalar twin's operations, so every lane equals vec_dot of its row bit for bit. */
#define WT_ROWS EMB_DOT_TILE_ROWS
_Static_assert(WT_ROWS == 4, "the WASM tiles keep four rows in the four lanes of a vector");

/* The scales d of block i of four Q8_0-like rows (x[r] points at row r's blocks), as floats (exact). */
#define D4_ROWS(x, i) emb_wasm_f16x4_to_f32(wasm_i32x4_make((x)[0][i].d, (x)[1][i].d, (x)[2][i].d, (x)[3][i].d))

/* The even and odd bytes of v as i16 lanes (signed): two shifts instead of the extends' shuffles. */
#define EVEN_I16(v) wasm_i16x8_shr(wasm_i16x8_shl((v), 8), 8)
#define ODD_I16(v) wasm_i16x8_shr((v), 8)

/* Four partial sums of x . y over 16 signed bytes, y given as its even/odd i16 halves. */
static inline v128_t dot_i8x16_eo(v128_t x, v128_t ye, v128_t yo) {
    return wasm_i32x4_add(wasm_i32x4_dot_i16x8(EVEN_I16(x), ye), wasm_i32x4_dot_i16x8(ODD_I16(x), yo));
}

/* One Q5_0 block against an activation block given as even/odd i16 halves: four i32 partial sums. */
static inline v128_t row_q5_0_simd128(const block_q5_0 *b, v128_t m4, v128_t y0e, v128_t y0o, v128_t y1e,
                                      v128_t y1o) {
    const v128_t h0 = wasm_i64x2_make((int64_t)k_q5_missing_high[b->qh[0]], (int64_t)k_q5_missing_high[b->qh[1]]);
    const v128_t h1 = wasm_i64x2_make((int64_t)k_q5_missing_high[b->qh[2]], (int64_t)k_q5_missing_high[b->qh[3]]);
    const v128_t q = wasm_v128_load(b->qs);
    const v128_t lo = wasm_i8x16_sub(wasm_v128_and(q, m4), h0), hi = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), h1);
    return wasm_i32x4_add(dot_i8x16_eo(lo, y0e, y0o), dot_i8x16_eo(hi, y1e, y1o));
}

static void tile_q8_0_simd128(int64_t n, const void *vw, size_t w_row_bytes, const void *vy, size_t y_row_bytes,
                              float *out, int64_t out_stride) {
    (void)y_row_bytes;
    (void)out_stride;
    const block_q8_0 *x[WT_ROWS];
    for (int r = 0; r < WT_ROWS; r++) x[r] = (const block_q8_0 *)((const char *)vw + (size_t)r * w_row_bytes);
    const block_q8_0 *y = (const block_q8_0 *)vy;
    v128_t sum = wasm_f32x4_splat(0.0f);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const v128_t y0 = wasm_v128_load(y[i].qs), y1 = wasm_v128_load(y[i].qs + 16);
        const v128_t y0e = EVEN_I16(y0), y0o = ODD_I16(y0), y1e = EVEN_I16(y1), y1o = ODD_I16(y1);
#define ROW_SUM(r) \
    wasm_i32x4_add(dot_i8x16_eo(wasm_v128_load(x[r][i].qs), y0e, y0o), dot_i8x16_eo(wasm_v128_load(x[r][i].qs + 16), y1e, y1o))
        const v128_t isums = hsum4_i32x4(ROW_SUM(0), ROW_SUM(1), ROW_SUM(2), ROW_SUM(3));
#undef ROW_SUM
        const v128_t d = wasm_f32x4_mul(D4_ROWS(x, i), wasm_f32x4_splat(F16(y[i].d)));
        sum = wasm_f32x4_add(sum, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isums), d));
    }
    wasm_v128_store(out, sum);
}

/* Q5_0: a value is its nibble minus 16 where its high bit is clear (k_q5_missing_high), in [-16, 15]. */
static void tile_q5_0_simd128(int64_t n, const void *vw, size_t w_row_bytes, const void *vy, size_t y_row_bytes,
                              float *out, int64_t out_stride) {
    (void)y_row_bytes;
    (void)out_stride;
    const block_q5_0 *x[WT_ROWS];
    for (int r = 0; r < WT_ROWS; r++) x[r] = (const block_q5_0 *)((const char *)vw + (size_t)r * w_row_bytes);
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    v128_t sum = wasm_f32x4_splat(0.0f);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const v128_t y0 = wasm_v128_load(y[i].qs), y1 = wasm_v128_load(y[i].qs + 16);
        const v128_t y0e = EVEN_I16(y0), y0o = ODD_I16(y0), y1e = EVEN_I16(y1), y1o = ODD_I16(y1);
#define ROW_SUM(r) row_q5_0_simd128(&x[r][i], m4, y0e, y0o, y1e, y1o)
        const v128_t isums = hsum4_i32x4(ROW_SUM(0), ROW_SUM(1), ROW_SUM(2), ROW_SUM(3));
#undef ROW_SUM
        const v128_t d = wasm_f32x4_mul(D4_ROWS(x, i), wasm_f32x4_splat(F16(y[i].d)));
        sum = wasm_f32x4_add(sum, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isums), d));
    }
    wasm_v128_store(out, sum);
}

/* A tile that is the row kernel four times: what it adds is the matmul's look-ahead over the tile's rows (used where
 * sharing the activation's preparation between rows does not pay). */
#define TILE_OF_ROWS(name, row_dot)                                                                          \
    static void name(int64_t n, const void *vw, size_t w_row_bytes, const void *vy, size_t y_row_bytes,       \
                     float *out, int64_t out_stride) {                                                       \
        (void)y_row_bytes;                                                                                   \
        (void)out_stride;                                                                                    \
        for (int r = 0; r < WT_ROWS; r++) row_dot(n, &out[r], (const char *)vw + (size_t)r * w_row_bytes, vy); \
    }
TILE_OF_ROWS(tile_q6_k_rows_simd128, emb_vec_dot_q6_k_q8_k_simd128)

/* The even/odd i16 halves of a Q8_K block's 256 activations (16 vectors each), shared by the tile's rows. */
static inline void q8_k_even_odd(const int8_t *qs, v128_t ye[16], v128_t yo[16]) {
    for (int k = 0; k < 16; k++) {
        const v128_t v = wasm_v128_load(qs + 16 * k);
        ye[k] = EVEN_I16(v);
        yo[k] = ODD_I16(v);
    }
}

/* Q4_K: the nibbles are unsigned, so their even/odd i16 halves are a mask and a shift of the 16-bit lanes. */
static void tile_q4_k_simd128(int64_t n, const void *vw, size_t w_row_bytes, const void *vy, size_t y_row_bytes,
                              float *out, int64_t out_stride) {
    (void)y_row_bytes;
    (void)out_stride;
    const block_q8_K *y = (const block_q8_K *)vy;
    const v128_t m = wasm_i16x8_splat(0x000f);
    float sum[WT_ROWS] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t ye[16], yo[16];
        q8_k_even_odd(y[i].qs, ye, yo);
        for (int r = 0; r < WT_ROWS; r++) {
            const block_q4_K *x = (const block_q4_K *)((const char *)vw + (size_t)r * w_row_bytes) + i;
            v128_t acc = wasm_i32x4_splat(0);
            int msum = 0;
            for (int j = 0; j < 4; j++) {
                int sc0, sc1;
                msum += k4_pair(x->scales, y[i].bsums, j, &sc0, &sc1);
                const v128_t qa = wasm_v128_load(x->qs + 32 * j), qb = wasm_v128_load(x->qs + 32 * j + 16);
                const int k = 4 * j; /* ye/yo index of the sub-block's first 16 activations */
                const v128_t s0 = wasm_i32x4_add(
                    wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_v128_and(qa, m), ye[k]),
                                   wasm_i32x4_dot_i16x8(wasm_v128_and(wasm_u16x8_shr(qa, 8), m), yo[k])),
                    wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_v128_and(qb, m), ye[k + 1]),
                                   wasm_i32x4_dot_i16x8(wasm_v128_and(wasm_u16x8_shr(qb, 8), m), yo[k + 1])));
                const v128_t s1 = wasm_i32x4_add(
                    wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_v128_and(wasm_u16x8_shr(qa, 4), m), ye[k + 2]),
                                   wasm_i32x4_dot_i16x8(wasm_u16x8_shr(qa, 12), yo[k + 2])),
                    wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_v128_and(wasm_u16x8_shr(qb, 4), m), ye[k + 3]),
                                   wasm_i32x4_dot_i16x8(wasm_u16x8_shr(qb, 12), yo[k + 3])));
                acc = add_scaled_pair(acc, s0, sc0, s1, sc1);
            }
            sum[r] += k4_block_sum(y[i].d, x->d, x->dmin, emb_wasm_hsum_i32x4(acc), msum);
        }
    }
    for (int r = 0; r < WT_ROWS; r++) out[r] = sum[r];
}

#if defined(__wasm_relaxed_simd__)
/* Relaxed: the activation block split once into its positive part and its negated negative part, both in
 * [0, 127] (the 7-bit operand; our Q8_0 activations are in [-127, 127]), so a weight row needs no preparation:
 * x . y = x . max(y, 0) - x . max(-y, 0). */
static void tile_q8_0_relaxed(int64_t n, const void *vw, size_t w_row_bytes, const void *vy, size_t y_row_bytes,
                              float *out, int64_t out_stride) {
    (void)y_row_bytes;
    (void)out_stride;
    const block_q8_0 *x[WT_ROWS];
    for (int r = 0; r < WT_ROWS; r++) x[r] = (const block_q8_0 *)((const char *)vw + (size_t)r * w_row_bytes);
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const v128_t zero = wasm_i32x4_splat(0);
    v128_t sum = wasm_f32x4_splat(0.0f);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const v128_t y0 = wasm_v128_load(y[i].qs), y1 = wasm_v128_load(y[i].qs + 16);
        const v128_t y0p = wasm_i8x16_max(y0, zero), y0n = wasm_i8x16_max(wasm_i8x16_neg(y0), zero);
        const v128_t y1p = wasm_i8x16_max(y1, zero), y1n = wasm_i8x16_max(wasm_i8x16_neg(y1), zero);
#define ROW_SUM(r)                                                                                          \
    wasm_i32x4_sub(RDOT(wasm_v128_load(x[r][i].qs + 16), y1p, RDOT(wasm_v128_load(x[r][i].qs), y0p, zero)), \
                   RDOT(wasm_v128_load(x[r][i].qs + 16), y1n, RDOT(wasm_v128_load(x[r][i].qs), y0n, zero)))
        const v128_t isums = hsum4_i32x4(ROW_SUM(0), ROW_SUM(1), ROW_SUM(2), ROW_SUM(3));
#undef ROW_SUM
        const v128_t d = wasm_f32x4_mul(D4_ROWS(x, i), wasm_f32x4_splat(F16(y[i].d)));
        sum = wasm_f32x4_add(sum, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isums), d));
    }
    wasm_v128_store(out, sum);
}
/* Relaxed Q5_0: the unsigned 5-bit values u in [0, 31] are the 7-bit operand; x . y = u . y - 16 sum(y). */
static void tile_q5_0_relaxed(int64_t n, const void *vw, size_t w_row_bytes, const void *vy, size_t y_row_bytes,
                              float *out, int64_t out_stride) {
    (void)y_row_bytes;
    (void)out_stride;
    const block_q5_0 *x[WT_ROWS];
    for (int r = 0; r < WT_ROWS; r++) x[r] = (const block_q5_0 *)((const char *)vw + (size_t)r * w_row_bytes);
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const v128_t m4 = wasm_i8x16_splat(0x0f), k16 = wasm_i8x16_splat(0x10), ones = wasm_i8x16_splat(1);
    const v128_t zero = wasm_i32x4_splat(0);
    v128_t sum = wasm_f32x4_splat(0.0f);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const v128_t y0 = wasm_v128_load(y[i].qs), y1 = wasm_v128_load(y[i].qs + 16);
        const v128_t ysum = RDOT(y1, ones, RDOT(y0, ones, zero));
        const v128_t ycorr = wasm_i32x4_shl(hsum4_i32x4(ysum, ysum, ysum, ysum), 4); /* 16 sum(y) in every lane */
#define ROW_SUM(r)                                                                                                    \
    RDOT(y1,                                                                                                          \
         wasm_v128_or(wasm_u8x16_shr(wasm_v128_load(x[r][i].qs), 4),                                                  \
                      wasm_v128_xor(wasm_i64x2_make((int64_t)k_q5_missing_high[x[r][i].qh[2]],                        \
                                                    (int64_t)k_q5_missing_high[x[r][i].qh[3]]), k16)),                \
         RDOT(y0,                                                                                                     \
              wasm_v128_or(wasm_v128_and(wasm_v128_load(x[r][i].qs), m4),                                             \
                           wasm_v128_xor(wasm_i64x2_make((int64_t)k_q5_missing_high[x[r][i].qh[0]],                   \
                                                         (int64_t)k_q5_missing_high[x[r][i].qh[1]]), k16)),           \
              zero))
        const v128_t isums = wasm_i32x4_sub(hsum4_i32x4(ROW_SUM(0), ROW_SUM(1), ROW_SUM(2), ROW_SUM(3)), ycorr);
#undef ROW_SUM
        const v128_t d = wasm_f32x4_mul(D4_ROWS(x, i), wasm_f32x4_splat(F16(y[i].d)));
        sum = wasm_f32x4_add(sum, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isums), d));
    }
    wasm_v128_store(out, sum);
}
TILE_OF_ROWS(tile_q4_k_relaxed, emb_vec_dot_q4_k_q8_k_relaxed)
TILE_OF_ROWS(tile_q6_k_relaxed, emb_vec_dot_q6_k_q8_k_relaxed)
#endif

emb_dot_tile_fn emb_dot_tile_wasm(int type, int level, int64_t n, int n_tok) {
    (void)n;
    if (n_tok != 1) return NULL;
#if defined(__wasm_relaxed_simd__)
    if (level == EMB_LEVEL_WASM_RELAXED) {
        if (type == EMB_TYPE_Q8_0) return tile_q8_0_relaxed;
        if (type == EMB_TYPE_Q5_0) return tile_q5_0_relaxed;
        if (type == EMB_TYPE_Q4_K) return tile_q4_k_relaxed;
        if (type == EMB_TYPE_Q6_K) return tile_q6_k_relaxed;
        return NULL;
    }
#endif
    if (level != EMB_LEVEL_WASM_SIMD128) return NULL;
    if (type == EMB_TYPE_Q8_0) return tile_q8_0_simd128;
    if (type == EMB_TYPE_Q5_0) return tile_q5_0_simd128;
    if (type == EMB_TYPE_Q4_K) return tile_q4_k_simd128;
    if (type == EMB_TYPE_Q6_K) return tile_q6_k_rows_simd128;
    return NULL;
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
            y[i].bsums[j / 16] = (int16_t)emb_wasm_hsum_i32x4(s);
        }
        y[i].d = 1.0f / iscale;
    }
}

#endif

#if !((defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__))
emb_dot_tile_fn emb_dot_tile_wasm(int type, int level, int64_t n, int n_tok) {
    (void)type;
    (void)level;
    (void)n;
    (void)n_tok;
    return NULL;
}
#endif
