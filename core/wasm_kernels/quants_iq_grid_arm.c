/*
 * quants_iq_grid_arm.c - ARM64 NEON dot products of the grid I-quants against Q8_K.
 *
 * As in quants_arm.c the kernels are written once below the template marker and compiled twice: pass 1 (NEON
 * level) sums int8 products with smull/smlal/saddlp, pass 2 (dotprod level) with sdot under a target attribute.
 * Grid points are fetched from the tables (iq_grids.c) 16 bytes at a time; element signs (IQ2/IQ3) negate the
 * activations through 0/-1 byte masks, IQ1's -1/0/1 points multiply directly.  The integer sum of a super-block is
 * exact and the float arithmetic after it is the scalar twin's (quants_iq_grid.c): bit-identical to scalar.
 */
#if defined(__aarch64__)

#ifndef EMB_IQARM_PASS
#define EMB_INTERNAL
#include "ember.h"

#include <arm_neon.h>
#include <string.h>

#if defined(__ARM_FEATURE_DOTPROD)
#define IQA_TARGET_DOTPROD
#elif defined(__clang__)
#define IQA_TARGET_DOTPROD __attribute__((target("dotprod")))
#else
#define IQA_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define IQA_CAT_(a, b) a##b
#define IQA_CAT(a, b) IQA_CAT_(a, b)

static inline uint32_t iqa_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint16_t iqa_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The 32 sign bits of a group whose four sign bytes come through emb_ksigns_iq2xs from 7-bit fields. */
static inline uint32_t iqa_ksigns4(uint32_t aux) {
    return (uint32_t)emb_ksigns_iq2xs[aux & 127] | (uint32_t)emb_ksigns_iq2xs[(aux >> 7) & 127] << 8 |
           (uint32_t)emb_ksigns_iq2xs[(aux >> 14) & 127] << 16 | (uint32_t)emb_ksigns_iq2xs[(aux >> 21) & 127] << 24;
}

/* q with the bytes whose bit is set in the low 16 bits of bits negated. */
static inline int8x16_t iqa_negate(int8x16_t q, uint32_t bits) {
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t rep = vcombine_u8(vdup_n_u8((uint8_t)(bits & 0xff)), vdup_n_u8((uint8_t)((bits >> 8) & 0xff)));
    const int8x16_t m = vreinterpretq_s8_u8(vtstq_u8(rep, vld1q_u8(sel)));
    return vsubq_s8(veorq_s8(q, m), m);
}

/* Two 8-byte grid points as 16 bytes. */
static inline int8x16_t iqa_pts2(uint64_t a, uint64_t b) {
    return vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(a), vcreate_u64(b)));
}

/* Four 4-byte grid points as 16 bytes. */
static inline int8x16_t iqa_pts4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    const uint32_t v[4] = {a, b, c, d};
    return vreinterpretq_s8_u32(vld1q_u32(v));
}

static inline emb_f16 iqa_iq1m_scale(const block_iq1_m *b) {
    const uint16_t s0 = iqa_u16(b->scales), s1 = iqa_u16(b->scales + 2), s2 = iqa_u16(b->scales + 4);
    const uint16_t s3 = iqa_u16(b->scales + 6);
    return (emb_f16)((s0 >> 12) | ((s1 >> 8) & 0x00f0) | ((s2 >> 4) & 0x0f00) | (s3 & 0xf000));
}

#define EMB_IQARM_PASS 1
#include "quants_iq_grid_arm.c"
#undef EMB_IQARM_PASS
#define EMB_IQARM_PASS 2
#include "quants_iq_grid_arm.c"
#undef EMB_IQARM_PASS

#else /* EMB_IQARM_PASS: the template */
#if EMB_IQARM_PASS == 1
#define TGT
#define SFX(name) name##_p1
#define LV neon
#else
#define TGT IQA_TARGET_DOTPROD
#define SFX(name) name##_p2
#define LV dotprod
#endif

/* acc + ls * (the sums of a[i] * b[i] over four groups of the 16 bytes; |a * b| <= 127 * 127 at most twice). */
static inline TGT int32x4_t SFX(iqa_dot)(int32x4_t acc, int8x16_t a, int8x16_t b, int ls) {
#if EMB_IQARM_PASS == 1
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));
    return vmlaq_n_s32(acc, vpaddlq_s16(p), ls);
#else
    return vmlaq_n_s32(acc, vdotq_s32(vdupq_n_s32(0), a, b), ls);
#endif
}

TGT void IQA_CAT(emb_vec_dot_iq2_xxs_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xxs *x = (const block_iq2_xxs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq2xxs_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < 8; ib++) {
            const uint32_t idx = iqa_u32(x[i].qs + 4 * ib), aux = iqa_u32(x[i].qs + 4 * ib + 2);
            const uint32_t bits = iqa_ksigns4(aux);
            const int ls = (int)(2 * (aux >> 28) + 1);
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = SFX(iqa_dot)(acc, iqa_pts2(grid[idx & 255], grid[(idx >> 8) & 255]), iqa_negate(vld1q_s8(q8), bits), ls);
            acc = SFX(iqa_dot)(acc, iqa_pts2(grid[(idx >> 16) & 255], grid[idx >> 24]),
                               iqa_negate(vld1q_s8(q8 + 16), bits >> 16), ls);
        }
        sumf += d * (float)vaddvq_s32(acc);
    }
    *s = 0.125f * sumf;
}

TGT void IQA_CAT(emb_vec_dot_iq2_xs_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xs *x = (const block_iq2_xs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq2xs_grid;
    const uint8_t *ks = emb_ksigns_iq2xs;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < 8; ib++) {
            const uint16_t *q2 = x[i].qs + 4 * ib;
            const uint32_t b0 = (uint32_t)ks[q2[0] >> 9] | (uint32_t)ks[q2[1] >> 9] << 8;
            const uint32_t b1 = (uint32_t)ks[q2[2] >> 9] | (uint32_t)ks[q2[3] >> 9] << 8;
            const int sc = x[i].scales[ib];
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = SFX(iqa_dot)(acc, iqa_pts2(grid[q2[0] & 511], grid[q2[1] & 511]), iqa_negate(vld1q_s8(q8), b0),
                               2 * (sc & 0x0f) + 1);
            acc = SFX(iqa_dot)(acc, iqa_pts2(grid[q2[2] & 511], grid[q2[3] & 511]), iqa_negate(vld1q_s8(q8 + 16), b1),
                               2 * (sc >> 4) + 1);
        }
        sumf += d * (float)vaddvq_s32(acc);
    }
    *s = 0.125f * sumf;
}

TGT void IQA_CAT(emb_vec_dot_iq2_s_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_s *x = (const block_iq2_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq2s_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + QK_K / 8;
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < 8; ib++, qs += 4) {
            const int qh = x[i].qh[ib], sc = x[i].scales[ib];
            const uint32_t bits = iqa_u32(signs + 4 * ib);
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = SFX(iqa_dot)(acc, iqa_pts2(grid[qs[0] | ((qh << 8) & 0x300)], grid[qs[1] | ((qh << 6) & 0x300)]),
                               iqa_negate(vld1q_s8(q8), bits), 2 * (sc & 0x0f) + 1);
            acc = SFX(iqa_dot)(acc, iqa_pts2(grid[qs[2] | ((qh << 4) & 0x300)], grid[qs[3] | ((qh << 2) & 0x300)]),
                               iqa_negate(vld1q_s8(q8 + 16), bits >> 16), 2 * (sc >> 4) + 1);
        }
        sumf += d * (float)vaddvq_s32(acc);
    }
    *s = 0.125f * sumf;
}

TGT void IQA_CAT(emb_vec_dot_iq3_xxs_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_xxs *x = (const block_iq3_xxs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint32_t *grid = emb_iq3xxs_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *q3 = x[i].qs, *gas = x[i].qs + QK_K / 4;
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < 8; ib++, q3 += 8) {
            const uint32_t aux = iqa_u32(gas + 4 * ib);
            const uint32_t bits = iqa_ksigns4(aux);
            const int ls = (int)(2 * (aux >> 28) + 1);
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = SFX(iqa_dot)(acc, iqa_pts4(grid[q3[0]], grid[q3[1]], grid[q3[2]], grid[q3[3]]),
                               iqa_negate(vld1q_s8(q8), bits), ls);
            acc = SFX(iqa_dot)(acc, iqa_pts4(grid[q3[4]], grid[q3[5]], grid[q3[6]], grid[q3[7]]),
                               iqa_negate(vld1q_s8(q8 + 16), bits >> 16), ls);
        }
        sumf += d * (float)vaddvq_s32(acc);
    }
    *s = 0.25f * sumf;
}

TGT void IQA_CAT(emb_vec_dot_iq3_s_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_s *x = (const block_iq3_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint32_t *grid = emb_iq3s_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs;
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            const int qh = x[i].qh[ib];
            const int sc = ib & 1 ? x[i].scales[ib / 2] >> 4 : x[i].scales[ib / 2] & 0x0f;
            const uint32_t bits = iqa_u32(x[i].signs + 4 * ib);
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = SFX(iqa_dot)(acc,
                               iqa_pts4(grid[qs[0] | ((qh << 8) & 256)], grid[qs[1] | ((qh << 7) & 256)],
                                        grid[qs[2] | ((qh << 6) & 256)], grid[qs[3] | ((qh << 5) & 256)]),
                               iqa_negate(vld1q_s8(q8), bits), 2 * sc + 1);
            acc = SFX(iqa_dot)(acc,
                               iqa_pts4(grid[qs[4] | ((qh << 4) & 256)], grid[qs[5] | ((qh << 3) & 256)],
                                        grid[qs[6] | ((qh << 2) & 256)], grid[qs[7] | ((qh << 1) & 256)]),
                               iqa_negate(vld1q_s8(q8 + 16), bits >> 16), 2 * sc + 1);
        }
        sumf += d * (float)vaddvq_s32(acc);
    }
    *s = sumf;
}

TGT void IQA_CAT(emb_vec_dot_iq1_s_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_s *x = (const block_iq1_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq1s_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        int sumi1 = 0;
        for (int ib = 0; ib < 8; ib++) {
            const int qh = x[i].qh[ib];
            const uint8_t *qs = x[i].qs + 4 * ib;
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            const int8_t *q8 = y[i].qs + 32 * ib;
            acc = SFX(iqa_dot)(acc, iqa_pts2(grid[qs[0] | ((qh << 8) & 0x700)], grid[qs[1] | ((qh << 5) & 0x700)]),
                               vld1q_s8(q8), ls);
            acc = SFX(iqa_dot)(acc, iqa_pts2(grid[qs[2] | ((qh << 2) & 0x700)], grid[qs[3] | ((qh >> 1) & 0x700)]),
                               vld1q_s8(q8 + 16), ls);
            sumi1 += ls * (qh & 0x8000 ? -1 : 1) * (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]);
        }
        const int sumi = vaddvq_s32(acc);
        sumf += emb_f16_to_f32(x[i].d) * y[i].d * ((float)sumi + EMB_IQ1_DELTA * (float)sumi1);
    }
    *s = sumf;
}

TGT void IQA_CAT(emb_vec_dot_iq1_m_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_m *x = (const block_iq1_m *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq1s_grid;
    const int8x16_t ones = vdupq_n_s8(1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc1 = vdupq_n_s32(0), acc2 = vdupq_n_s32(0);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = x[i].qs + 4 * ib;
            const int h0 = x[i].qh[2 * ib], h1 = x[i].qh[2 * ib + 1];
            const uint16_t sc = iqa_u16(x[i].scales + 2 * (ib / 2));
            const int ls0 = 2 * ((sc >> (6 * (ib % 2))) & 7) + 1, ls1 = 2 * ((sc >> (6 * (ib % 2) + 3)) & 7) + 1;
            const uint32_t neg0 = (h0 & 0x08 ? 0x00ffu : 0u) | (h0 & 0x80 ? 0xff00u : 0u);
            const uint32_t neg1 = (h1 & 0x08 ? 0x00ffu : 0u) | (h1 & 0x80 ? 0xff00u : 0u);
            const int8x16_t qa = vld1q_s8(y[i].qs + 32 * ib), qb = vld1q_s8(y[i].qs + 32 * ib + 16);
            acc1 = SFX(iqa_dot)(acc1, iqa_pts2(grid[qs[0] | ((h0 << 8) & 0x700)], grid[qs[1] | ((h0 << 4) & 0x700)]), qa,
                                ls0);
            acc1 = SFX(iqa_dot)(acc1, iqa_pts2(grid[qs[2] | ((h1 << 8) & 0x700)], grid[qs[3] | ((h1 << 4) & 0x700)]), qb,
                                ls1);
            acc2 = SFX(iqa_dot)(acc2, ones, iqa_negate(qa, neg0), ls0);
            acc2 = SFX(iqa_dot)(acc2, ones, iqa_negate(qb, neg1), ls1);
        }
        const int sumi1 = vaddvq_s32(acc1), sumi2 = vaddvq_s32(acc2);
        sumf += emb_f16_to_f32(iqa_iq1m_scale(&x[i])) * y[i].d * ((float)sumi1 + EMB_IQ1_DELTA * (float)sumi2);
    }
    *s = sumf;
}

#undef TGT
#undef SFX
#undef LV
#endif /* EMB_IQARM_PASS */

#else /* not ARM64: the scalar kernels serve */
#define EMB_INTERNAL
#include "ember.h"
#endif
