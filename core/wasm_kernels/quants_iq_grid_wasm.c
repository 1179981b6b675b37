/*
 * quants_iq_grid_wasm.c - WebAssembly SIMD128 dot products of the grid I-quants against Q8_K (the relaxed-SIMD
 * level uses them too).
 *
 * Grid points come from the tables (iq_grids.c) 16 bytes at a time; element signs (IQ2/IQ3) negate the activations
 * through 0/-1 byte masks, IQ1's -1/0/1 points multiply directly; bytes are widened to i16 and summed in pairs by
 * i32x4.dot_i16x8.  The integer sum of a super-block is exact and the float arithmetic after it is the scalar
 * twin's (quants_iq_grid.c), so results are bit-identical to the scalar level (tests/pyodide/check_kernels.py).
 */
#define EMB_INTERNAL
#include "ember.h"

#if (defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__)
#include <string.h>
#include <wasm_simd128.h>

static inline uint32_t iqw_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint16_t iqw_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t iqw_ksigns4(uint32_t aux) {
    return (uint32_t)emb_ksigns_iq2xs[aux & 127] | (uint32_t)emb_ksigns_iq2xs[(aux >> 7) & 127] << 8 |
           (uint32_t)emb_ksigns_iq2xs[(aux >> 14) & 127] << 16 | (uint32_t)emb_ksigns_iq2xs[(aux >> 21) & 127] << 24;
}

/* q with the bytes whose bit is set in the low 16 bits of bits negated. */
static inline v128_t iqw_negate(v128_t q, uint32_t bits) {
    const v128_t sel = wasm_i64x2_splat((long long)0x8040201008040201ULL);
    const v128_t rep = wasm_i64x2_make((long long)(0x0101010101010101ULL * (bits & 0xff)),
                                       (long long)(0x0101010101010101ULL * ((bits >> 8) & 0xff)));
    const v128_t m = wasm_i8x16_eq(wasm_v128_and(rep, sel), sel);
    return wasm_i8x16_sub(wasm_v128_xor(q, m), m);
}

/* acc + ls * (sums of a[i] * b[i] over four groups of the 16 signed bytes). */
static inline v128_t iqw_dot(v128_t acc, v128_t a, v128_t b, int ls) {
    return wasm_i32x4_add(acc, wasm_i32x4_mul(emb_wasm_dot_i8x16(a, b), wasm_i32x4_splat(ls)));
}

static inline v128_t iqw_pts2(uint64_t a, uint64_t b) { return wasm_i64x2_make((long long)a, (long long)b); }

static inline v128_t iqw_pts4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    return wasm_i32x4_make((int)a, (int)b, (int)c, (int)d);
}

static inline v128_t iqw_q8(const int8_t *p) { return wasm_v128_load(p); }

void emb_vec_dot_iq2_xxs_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xxs *x = (const block_iq2_xxs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq2xxs_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        v128_t acc = wasm_i32x4_splat(0);
        for (int ib = 0; ib < 8; ib++) {
            const uint32_t idx = iqw_u32(x[i].qs + 4 * ib), aux = iqw_u32(x[i].qs + 4 * ib + 2);
            const uint32_t bits = iqw_ksigns4(aux);
            const int ls = (int)(2 * (aux >> 28) + 1);
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = iqw_dot(acc, iqw_pts2(grid[idx & 255], grid[(idx >> 8) & 255]), iqw_negate(iqw_q8(q8), bits), ls);
            acc = iqw_dot(acc, iqw_pts2(grid[(idx >> 16) & 255], grid[idx >> 24]), iqw_negate(iqw_q8(q8 + 16), bits >> 16),
                          ls);
        }
        sumf += d * (float)emb_wasm_hsum_i32x4(acc);
    }
    *s = 0.125f * sumf;
}

void emb_vec_dot_iq2_xs_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xs *x = (const block_iq2_xs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq2xs_grid;
    const uint8_t *ks = emb_ksigns_iq2xs;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        v128_t acc = wasm_i32x4_splat(0);
        for (int ib = 0; ib < 8; ib++) {
            const uint16_t *q2 = x[i].qs + 4 * ib;
            const uint32_t b0 = (uint32_t)ks[q2[0] >> 9] | (uint32_t)ks[q2[1] >> 9] << 8;
            const uint32_t b1 = (uint32_t)ks[q2[2] >> 9] | (uint32_t)ks[q2[3] >> 9] << 8;
            const int sc = x[i].scales[ib];
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = iqw_dot(acc, iqw_pts2(grid[q2[0] & 511], grid[q2[1] & 511]), iqw_negate(iqw_q8(q8), b0),
                          2 * (sc & 0x0f) + 1);
            acc = iqw_dot(acc, iqw_pts2(grid[q2[2] & 511], grid[q2[3] & 511]), iqw_negate(iqw_q8(q8 + 16), b1),
                          2 * (sc >> 4) + 1);
        }
        sumf += d * (float)emb_wasm_hsum_i32x4(acc);
    }
    *s = 0.125f * sumf;
}

void emb_vec_dot_iq2_s_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_s *x = (const block_iq2_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq2s_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + QK_K / 8;
        v128_t acc = wasm_i32x4_splat(0);
        for (int ib = 0; ib < 8; ib++, qs += 4) {
            const int qh = x[i].qh[ib], sc = x[i].scales[ib];
            const uint32_t bits = iqw_u32(signs + 4 * ib);
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = iqw_dot(acc, iqw_pts2(grid[qs[0] | ((qh << 8) & 0x300)], grid[qs[1] | ((qh << 6) & 0x300)]),
                          iqw_negate(iqw_q8(q8), bits), 2 * (sc & 0x0f) + 1);
            acc = iqw_dot(acc, iqw_pts2(grid[qs[2] | ((qh << 4) & 0x300)], grid[qs[3] | ((qh << 2) & 0x300)]),
                          iqw_negate(iqw_q8(q8 + 16), bits >> 16), 2 * (sc >> 4) + 1);
        }
        sumf += d * (float)emb_wasm_hsum_i32x4(acc);
    }
    *s = 0.125f * sumf;
}

void emb_vec_dot_iq3_xxs_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_xxs *x = (const block_iq3_xxs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint32_t *grid = emb_iq3xxs_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *q3 = x[i].qs, *gas = x[i].qs + QK_K / 4;
        v128_t acc = wasm_i32x4_splat(0);
        for (int ib = 0; ib < 8; ib++, q3 += 8) {
            const uint32_t aux = iqw_u32(gas + 4 * ib);
            const uint32_t bits = iqw_ksigns4(aux);
            const int ls = (int)(2 * (aux >> 28) + 1);
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = iqw_dot(acc, iqw_pts4(grid[q3[0]], grid[q3[1]], grid[q3[2]], grid[q3[3]]),
                          iqw_negate(iqw_q8(q8), bits), ls);
            acc = iqw_dot(acc, iqw_pts4(grid[q3[4]], grid[q3[5]], grid[q3[6]], grid[q3[7]]),
                          iqw_negate(iqw_q8(q8 + 16), bits >> 16), ls);
        }
        sumf += d * (float)emb_wasm_hsum_i32x4(acc);
    }
    *s = 0.25f * sumf;
}

void emb_vec_dot_iq3_s_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_s *x = (const block_iq3_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint32_t *grid = emb_iq3s_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs;
        v128_t acc = wasm_i32x4_splat(0);
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            const int qh = x[i].qh[ib];
            const int sc = ib & 1 ? x[i].scales[ib / 2] >> 4 : x[i].scales[ib / 2] & 0x0f;
            const uint32_t bits = iqw_u32(x[i].signs + 4 * ib);
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = iqw_dot(acc,
                          iqw_pts4(grid[qs[0] | ((qh << 8) & 256)], grid[qs[1] | ((qh << 7) & 256)],
                                   grid[qs[2] | ((qh << 6) & 256)], grid[qs[3] | ((qh << 5) & 256)]),
                          iqw_negate(iqw_q8(q8), bits), 2 * sc + 1);
            acc = iqw_dot(acc,
                          iqw_pts4(grid[qs[4] | ((qh << 4) & 256)], grid[qs[5] | ((qh << 3) & 256)],
                                   grid[qs[6] | ((qh << 2) & 256)], grid[qs[7] | ((qh << 1) & 256)]),
                          iqw_negate(iqw_q8(q8 + 16), bits >> 16), 2 * sc + 1);
        }
        sumf += d * (float)emb_wasm_hsum_i32x4(acc);
    }
    *s = sumf;
}

void emb_vec_dot_iq1_s_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_s *x = (const block_iq1_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq1s_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc = wasm_i32x4_splat(0);
        int sumi1 = 0;
        for (int ib = 0; ib < 8; ib++) {
            const int qh = x[i].qh[ib];
            const uint8_t *qs = x[i].qs + 4 * ib;
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = iqw_dot(acc, iqw_pts2(grid[qs[0] | ((qh << 8) & 0x700)], grid[qs[1] | ((qh << 5) & 0x700)]),
                          iqw_q8(q8), ls);
            acc = iqw_dot(acc, iqw_pts2(grid[qs[2] | ((qh << 2) & 0x700)], grid[qs[3] | ((qh >> 1) & 0x700)]),
                          iqw_q8(q8 + 16), ls);
            sumi1 += ls * (qh & 0x8000 ? -1 : 1) * (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]);
        }
        const int sumi = emb_wasm_hsum_i32x4(acc);
        sumf += emb_f16_to_f32(x[i].d) * y[i].d * ((float)sumi + EMB_IQ1_DELTA * (float)sumi1);
    }
    *s = sumf;
}

void emb_vec_dot_iq1_m_q8_k_simd128(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_m *x = (const block_iq1_m *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq1s_grid;
    const v128_t ones = wasm_i8x16_splat(1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        v128_t acc1 = wasm_i32x4_splat(0), acc2 = wasm_i32x4_splat(0);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = x[i].qs + 4 * ib;
            const int h0 = x[i].qh[2 * ib], h1 = x[i].qh[2 * ib + 1];
            const uint16_t sc = iqw_u16(x[i].scales + 2 * (ib / 2));
            const int ls0 = 2 * ((sc >> (6 * (ib % 2))) & 7) + 1, ls1 = 2 * ((sc >> (6 * (ib % 2) + 3)) & 7) + 1;
            const uint32_t neg0 = (h0 & 0x08 ? 0x00ffu : 0u) | (h0 & 0x80 ? 0xff00u : 0u);
            const uint32_t neg1 = (h1 & 0x08 ? 0x00ffu : 0u) | (h1 & 0x80 ? 0xff00u : 0u);
            const v128_t qa = iqw_q8(y[i].qs + 32 * ib), qb = iqw_q8(y[i].qs + 32 * ib + 16);
            acc1 = iqw_dot(acc1, iqw_pts2(grid[qs[0] | ((h0 << 8) & 0x700)], grid[qs[1] | ((h0 << 4) & 0x700)]), qa, ls0);
            acc1 = iqw_dot(acc1, iqw_pts2(grid[qs[2] | ((h1 << 8) & 0x700)], grid[qs[3] | ((h1 << 4) & 0x700)]), qb, ls1);
            acc2 = iqw_dot(acc2, ones, iqw_negate(qa, neg0), ls0);
            acc2 = iqw_dot(acc2, ones, iqw_negate(qb, neg1), ls1);
        }
        const int sumi1 = emb_wasm_hsum_i32x4(acc1), sumi2 = emb_wasm_hsum_i32x4(acc2);
        const uint16_t s0 = iqw_u16(x[i].scales), s1 = iqw_u16(x[i].scales + 2), s2 = iqw_u16(x[i].scales + 4);
        const uint16_t s3 = iqw_u16(x[i].scales + 6);
        const emb_f16 scale = (emb_f16)((s0 >> 12) | ((s1 >> 8) & 0x00f0) | ((s2 >> 4) & 0x0f00) | (s3 & 0xf000));
        sumf += emb_f16_to_f32(scale) * y[i].d * ((float)sumi1 + EMB_IQ1_DELTA * (float)sumi2);
    }
    *s = sumf;
}

#endif
