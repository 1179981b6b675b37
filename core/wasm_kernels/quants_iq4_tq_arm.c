/*
 * quants_iq4_tq_arm.c - IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 dot products on ARM64: baseline NEON and dotprod (sdot).
 *
 * As quants_arm.c, the kernels below the "template" marker are compiled twice by including the file into itself:
 * pass 1 (NEON) forms int8 products with smull/sadalp, pass 2 (dotprod) with sdot under a target attribute.
 * IQ4 indices become values through tbl on the 16-entry table; ternary digits are dotted as 0..2 and the block
 * sum of the activations (Q8_K's bsums) subtracted; TQ1_0's base-3 digits come from byte multiplies (wrapping)
 * and the high byte of 3 * that byte.  Each block's integer sum is exact and is scaled and added in the scalar
 * twins' float order (quants_iq4_tq.c), so results are bit-identical to them.
 */
#if defined(__aarch64__)

#ifndef EMB_IQA_PASS
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

static const int8_t iqa_values[16] = EMB_IQ4NL_VALUES;

/* The first base-3 digit of each byte: (b * 3) >> 8. */
static inline int8x16_t iqa_trits(uint8x16_t b) {
    const uint8x8_t k3 = vdup_n_u8(3);
    return vreinterpretq_s8_u8(
        vcombine_u8(vshrn_n_u16(vmull_u8(vget_low_u8(b), k3), 8), vshrn_n_u16(vmull_high_u8(b, vdupq_n_u8(3)), 8)));
}

/* The sum of a Q8_K block's activations. */
static inline int iqa_ysum(const block_q8_K *y) {
    return vaddvq_s32(vaddq_s32(vpaddlq_s16(vld1q_s16(y->bsums)), vpaddlq_s16(vld1q_s16(y->bsums + 8))));
}

#define EMB_IQA_PASS 1
#include "quants_iq4_tq_arm.c"
#undef EMB_IQA_PASS
#define EMB_IQA_PASS 2
#include "quants_iq4_tq_arm.c"
#undef EMB_IQA_PASS

#else /* EMB_IQA_PASS: the template */
#if EMB_IQA_PASS == 1
#define TGT
#define SFX(name) name##_neon
#else
#define TGT IQA_TARGET_DOTPROD
#define SFX(name) name##_dotprod
#endif

/* acc + sums over groups of 4 of a[i] * b[i] (signed bytes). */
static inline TGT int32x4_t SFX(iqa_dot16)(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if EMB_IQA_PASS == 1
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
#else
    return vdotq_s32(acc, a, b);
#endif
}

/* The integer dot of one IQ4 block of 32 (16 index bytes) with 32 activations. */
static inline TGT int SFX(iqa_iq4_block)(const uint8_t *qs, const int8_t *y, int8x16_t table) {
    const uint8x16_t q = vld1q_u8(qs);
    const int8x16_t lo = vqtbl1q_s8(table, vandq_u8(q, vdupq_n_u8(0x0f)));
    const int8x16_t hi = vqtbl1q_s8(table, vshrq_n_u8(q, 4));
    const int32x4_t acc = SFX(iqa_dot16)(SFX(iqa_dot16)(vdupq_n_s32(0), lo, vld1q_s8(y)), hi, vld1q_s8(y + 16));
    return vaddvq_s32(acc);
}

TGT void SFX(emb_vec_dot_iq4_nl_q8_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_nl *x = (const block_iq4_nl *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int8x16_t table = vld1q_s8(iqa_values);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        const int isum = SFX(iqa_iq4_block)(x[i].qs, y[i].qs, table);
        sum += (float)isum * (emb_arm_f16(x[i].d) * emb_arm_f16(y[i].d));
    }
    *s = sum;
}

TGT void SFX(emb_vec_dot_iq4_xs_q8_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = (const block_iq4_xs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int8x16_t table = vld1q_s8(iqa_values);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint16_t h;
        memcpy(&h, &x[i].scales_h, sizeof h);
        int isum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const int ls = (((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((h >> (2 * ib)) & 3) << 4)) - 32;
            isum += ls * SFX(iqa_iq4_block)(x[i].qs + 16 * ib, y[i].qs + 32 * ib, table);
        }
        sum += y[i].d * emb_arm_f16(x[i].d) * (float)isum;
    }
    *s = sum;
}

TGT void SFX(emb_vec_dot_tq2_0_q8_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq2_0 *x = (const block_tq2_0 *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint8x16_t m3 = vdupq_n_u8(3);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int j = 0; j < 64; j += 16) {
            /* byte j + m of the 32-byte group g holds elements 128 g + 32 l + (j % 32) + m */
            const uint8x16_t q = vld1q_u8(x[i].qs + j);
            const int8_t *q8 = y[i].qs + 128 * (j / 32) + j % 32;
            acc = SFX(iqa_dot16)(acc, vreinterpretq_s8_u8(vandq_u8(q, m3)), vld1q_s8(q8));
            acc = SFX(iqa_dot16)(acc, vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(q, 2), m3)), vld1q_s8(q8 + 32));
            acc = SFX(iqa_dot16)(acc, vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(q, 4), m3)), vld1q_s8(q8 + 64));
            acc = SFX(iqa_dot16)(acc, vreinterpretq_s8_u8(vshrq_n_u8(q, 6)), vld1q_s8(q8 + 96));
        }
        const int isum = vaddvq_s32(acc) - iqa_ysum(&y[i]);
        sum += y[i].d * emb_arm_f16(x[i].d) * (float)isum;
    }
    *s = sum;
}

TGT void SFX(emb_vec_dot_tq1_0_q8_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq1_0 *x = (const block_tq1_0 *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint8x16_t k3 = vdupq_n_u8(3);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int32x4_t acc = vdupq_n_s32(0);
        /* bytes 0..31: digit k of byte m is element m + 32 k */
        uint8x16_t b0 = vld1q_u8(x[i].qs), b1 = vld1q_u8(x[i].qs + 16);
        for (int k = 0; k < 5; k++) {
            acc = SFX(iqa_dot16)(acc, iqa_trits(b0), vld1q_s8(q8 + 32 * k));
            acc = SFX(iqa_dot16)(acc, iqa_trits(b1), vld1q_s8(q8 + 32 * k + 16));
            b0 = vmulq_u8(b0, k3);
            b1 = vmulq_u8(b1, k3);
        }
        /* bytes 32..47: digit k of byte m is element 160 + m + 16 k */
        uint8x16_t b2 = vld1q_u8(x[i].qs + 32);
        for (int k = 0; k < 5; k++) {
            acc = SFX(iqa_dot16)(acc, iqa_trits(b2), vld1q_s8(q8 + 160 + 16 * k));
            b2 = vmulq_u8(b2, k3);
        }
        /* qh: digit k of byte j is element 240 + j + 4 k */
        uint8_t qh[16];
        for (int k = 0, p = 1; k < 4; k++, p *= 3) {
            for (int j = 0; j < 4; j++) qh[4 * k + j] = (uint8_t)(x[i].qh[j] * p);
        }
        acc = SFX(iqa_dot16)(acc, iqa_trits(vld1q_u8(qh)), vld1q_s8(q8 + 240));
        const int isum = vaddvq_s32(acc) - iqa_ysum(&y[i]);
        sum += y[i].d * emb_arm_f16(x[i].d) * (float)isum;
    }
    *s = sum;
}

#undef TGT
#undef SFX
#endif /* EMB_IQA_PASS */

#endif /* __aarch64__ */
