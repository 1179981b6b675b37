/*
 * quants_iq4_tq_wasm.c - IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 dot products in WebAssembly SIMD128.
 *
 * Twins of the scalar functions of quants_iq4_tq.c: integer sums inside a block are exact (IQ4 indices become
 * values through i8x16.swizzle on the 16-entry table; ternary digits are dotted as 0..2 and the block sum of the
 * activations, from Q8_K's bsums, subtracted; TQ1_0's base-3 digits come from byte additions, wrapping, and the
 * high byte of 3 * that byte), and the float part is done in the same order, so results equal the scalar level
 * bit for bit (tests/pyodide/check_kernels.py).  The relaxed-SIMD level uses these too.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <string.h>

#if (defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__)
#include <wasm_simd128.h>

static const int8_t iqw_values[16] = EMB_IQ4NL_VALUES;

/* acc + four partial sums of a[i] * b[i] over 16 signed bytes. */
static inline v128_t iqw_dot16(v128_t acc, v128_t a, v128_t b) { return wasm_i32x4_add(acc, emb_wasm_dot_i8x16(a, b)); }

/* The integer dot of one IQ4 block of 32 (16 index bytes) with 32 activations. */
static inline int iqw_iq4_block(const uint8_t *qs, const int8_t *y, v128_t table) {
    const v128_t q = wasm_v128_load(qs);
    const v128_t lo = wasm_i8x16_swizzle(table, wasm_v128_and(q, wasm_i8x16_splat(0x0f)));
    const v128_t hi = wasm_i8x16_swizzle(table, wasm_u8x16_shr(q, 4));
    return emb_wasm_hsum_i32x4(iqw_dot16(iqw_dot16(wasm_i32x4_splat(0), lo, wasm_v128_load(y)), hi, wasm_v128_load(y + 16)));
}

/* The first base-3 digit of each byte: (b * 3) >> 8. */
static inline v128_t iqw_trits(v128_t b) {
    const v128_t k3 = wasm_i16x8_splat(3);
    const v128_t lo = wasm_u16x8_shr(wasm_i16x8_mul(wasm_u16x8_extend_low_u8x16(b), k3), 8);
    const v128_t hi = wasm_u16x8_shr(wasm_i16x8_mul(wasm_u16x8_extend_high_u8x16(b), k3), 8);
    return wasm_u8x16_narrow_i16x8(lo, hi);
}

static inline v128_t iqw_times3(v128_t b) { return wasm_i8x16_add(b, wasm_i8x16_add(b, b)); }

static inline int iqw_ysum(const block_q8_K *y) {
    int s = 0;
    for (int j = 0; j < QK_K / 16; j++) s += y->bsums[j];
    return s;
}

void emb_vec_dot_iq4_nl_q8_0_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_nl *x = (const block_iq4_nl *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const v128_t table = wasm_v128_load(iqw_values);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        const int isum = iqw_iq4_block(x[i].qs, y[i].qs, table);
        sum += (float)isum * (emb_wasm_f16_to_f32(x[i].d) * emb_wasm_f16_to_f32(y[i].d));
    }
    *s = sum;
}

void emb_vec_dot_iq4_xs_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = (const block_iq4_xs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const v128_t table = wasm_v128_load(iqw_values);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint16_t h;
        memcpy(&h, &x[i].scales_h, sizeof h);
        int isum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const int ls = (((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((h >> (2 * ib)) & 3) << 4)) - 32;
            isum += ls * iqw_iq4_block(x[i].qs + 16 * ib, y[i].qs + 32 * ib, table);
        }
        sum += y[i].d * emb_wasm_f16_to_f32(x[i].d) * (float)isum;
    }
    *s = sum;
}

void emb_vec_dot_tq2_0_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq2_0 *x = (const block_tq2_0 *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const v128_t m3 = wasm_i8x16_splat(3);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc = wasm_i32x4_splat(0);
        for (int j = 0; j < 64; j += 16) {
            /* byte j + m of the 32-byte group g holds elements 128 g + 32 l + (j % 32) + m */
            const v128_t q = wasm_v128_load(x[i].qs + j);
            const int8_t *q8 = y[i].qs + 128 * (j / 32) + j % 32;
            acc = iqw_dot16(acc, wasm_v128_and(q, m3), wasm_v128_load(q8));
            acc = iqw_dot16(acc, wasm_v128_and(wasm_u8x16_shr(q, 2), m3), wasm_v128_load(q8 + 32));
            acc = iqw_dot16(acc, wasm_v128_and(wasm_u8x16_shr(q, 4), m3), wasm_v128_load(q8 + 64));
            acc = iqw_dot16(acc, wasm_u8x16_shr(q, 6), wasm_v128_load(q8 + 96));
        }
        const int isum = emb_wasm_hsum_i32x4(acc) - iqw_ysum(&y[i]);
        sum += y[i].d * emb_wasm_f16_to_f32(x[i].d) * (float)isum;
    }
    *s = sum;
}

void emb_vec_dot_tq1_0_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq1_0 *x = (const block_tq1_0 *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        v128_t acc = wasm_i32x4_splat(0);
        /* bytes 0..31: digit k of byte m is element m + 32 k */
        v128_t b0 = wasm_v128_load(x[i].qs), b1 = wasm_v128_load(x[i].qs + 16);
        for (int k = 0; k < 5; k++) {
            acc = iqw_dot16(acc, iqw_trits(b0), wasm_v128_load(q8 + 32 * k));
            acc = iqw_dot16(acc, iqw_trits(b1), wasm_v128_load(q8 + 32 * k + 16));
            b0 = iqw_times3(b0);
            b1 = iqw_times3(b1);
        }
        /* bytes 32..47: digit k of byte m is element 160 + m + 16 k */
        v128_t b2 = wasm_v128_load(x[i].qs + 32);
        for (int k = 0; k < 5; k++) {
            acc = iqw_dot16(acc, iqw_trits(b2), wasm_v128_load(q8 + 160 + 16 * k));
            b2 = iqw_times3(b2);
        }
        /* qh: digit k of byte j is element 240 + j + 4 k */
        uint8_t qh[16];
        for (int k = 0, p = 1; k < 4; k++, p *= 3) {
            for (int j = 0; j < 4; j++) qh[4 * k + j] = (uint8_t)(x[i].qh[j] * p);
        }
        acc = iqw_dot16(acc, iqw_trits(wasm_v128_load(qh)), wasm_v128_load(q8 + 240));
        const int isum = emb_wasm_hsum_i32x4(acc) - iqw_ysum(&y[i]);
        sum += y[i].d * emb_wasm_f16_to_f32(x[i].d) * (float)isum;
    }
    *s = sum;
}

#endif /* WebAssembly SIMD128 */
