/*
 * quants_arm.c - ARM64 NEON kernels: baseline NEON and ARMv8.2 dotprod (sdot).
 *
 * Like quants_x86.c, the kernels are written once below the "template" marker and compiled twice by
 * including this file into itself: pass 1 (NEON level) forms int8 products with smull/sadalp, pass 2
 * (dotprod level) with sdot, under a target attribute so the file needs no -march flag.  Types without
 * a kernel here (Q4_1, Q5_1, Q2_K, Q3_K, Q5_K, F16, BF16, F32) use the scalar kernels of quants.c.
 */
#if defined(__aarch64__)

#ifndef EMB_ARM_PASS
#define EMB_INTERNAL
#include "ember.h"

#include <arm_neon.h>
#include <string.h>

#if defined(__ARM_FEATURE_DOTPROD)
#define EMB_TARGET_DOTPROD
#elif defined(__clang__)
#define EMB_TARGET_DOTPROD __attribute__((target("dotprod")))
#else
#define EMB_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

static inline uint32_t arm_load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Q4_K: the eight 6-bit scales and mins. */
static inline void arm_k4_scales(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    const uint32_t w0 = arm_load_u32(s), w1 = arm_load_u32(s + 4), w2 = arm_load_u32(s + 8);
    const uint32_t v[4] = {
        w0 & 0x3f3f3f3fu,
        (w2 & 0x0f0f0f0fu) | ((w0 >> 2) & 0x30303030u),
        w1 & 0x3f3f3f3fu,
        ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 2) & 0x30303030u),
    };
    memcpy(sc, v, 8);
    memcpy(mn, v + 2, 8);
}

/* Bytes 0xff / 0x00 from 16 bits (bit i -> byte i). */
static inline uint8x16_t arm_bits16(uint32_t bits) {
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t rep = vcombine_u8(vdup_n_u8((uint8_t)(bits & 0xff)), vdup_n_u8((uint8_t)((bits >> 8) & 0xff)));
    return vtstq_u8(rep, vld1q_u8(sel));
}

#define EMB_ARM_PASS 1
#include "quants_arm.c"
#undef EMB_ARM_PASS
#define EMB_ARM_PASS 2
#include "quants_arm.c"
#undef EMB_ARM_PASS

#else /* EMB_ARM_PASS: the template */
#if EMB_ARM_PASS == 1
#define TGT
#define SFX(name) name##_neon
#else
#define TGT EMB_TARGET_DOTPROD
#define SFX(name) name##_dotprod
#endif

/* acc + sums over groups of 4 of a[i] * b[i] (signed bytes). */
static inline TGT int32x4_t SFX(dot16)(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if EMB_ARM_PASS == 1
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
#else
    return vdotq_s32(acc, a, b);
#endif
}

/* One block's integer dot: 32 signed weights (lo = elements 0..15, hi = 16..31) with 32 activations. */
static inline TGT int32x4_t SFX(dot32)(int8x16_t lo, int8x16_t hi, const int8_t *y) {
    return SFX(dot16)(SFX(dot16)(vdupq_n_s32(0), lo, vld1q_s8(y)), hi, vld1q_s8(y + 16));
}

TGT void SFX(emb_vec_dot_q8_0_q8_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = (const block_q8_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const int32x4_t p0 = SFX(dot32)(vld1q_s8(x[i].qs), vld1q_s8(x[i].qs + 16), y[i].qs);
        const int32x4_t p1 = SFX(dot32)(vld1q_s8(x[i + 1].qs), vld1q_s8(x[i + 1].qs + 16), y[i + 1].qs);
        acc0 = vmlaq_n_f32(acc0, vcvtq_f32_s32(p0), emb_arm_f16(x[i].d) * emb_arm_f16(y[i].d));
        acc1 = vmlaq_n_f32(acc1, vcvtq_f32_s32(p1), emb_arm_f16(x[i + 1].d) * emb_arm_f16(y[i + 1].d));
    }
    if (i < nb) {
        const int32x4_t p0 = SFX(dot32)(vld1q_s8(x[i].qs), vld1q_s8(x[i].qs + 16), y[i].qs);
        acc0 = vmlaq_n_f32(acc0, vcvtq_f32_s32(p0), emb_arm_f16(x[i].d) * emb_arm_f16(y[i].d));
    }
    *s = vaddvq_f32(vaddq_f32(acc0, acc1));
}

TGT void SFX(emb_vec_dot_q4_0_q8_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = (const block_q4_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    const uint8x16_t m0f = vdupq_n_u8(0x0f);
    const int8x16_t k8 = vdupq_n_s8(8);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < nb; i++) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m0f)), k8);
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), k8);
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(SFX(dot32)(lo, hi, y[i].qs)), emb_arm_f16(x[i].d) * emb_arm_f16(y[i].d));
    }
    *s = vaddvq_f32(acc);
}

TGT void SFX(emb_vec_dot_q5_0_q8_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = (const block_q5_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    const uint8x16_t m0f = vdupq_n_u8(0x0f), k10 = vdupq_n_u8(0x10);
    const int8x16_t k16 = vdupq_n_s8(16);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < nb; i++) {
        const uint32_t qh = arm_load_u32(x[i].qh);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const uint8x16_t ulo = vorrq_u8(vandq_u8(q, m0f), vandq_u8(arm_bits16(qh), k10));
        const uint8x16_t uhi = vorrq_u8(vshrq_n_u8(q, 4), vandq_u8(arm_bits16(qh >> 16), k10));
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(ulo), k16);
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(uhi), k16);
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(SFX(dot32)(lo, hi, y[i].qs)), emb_arm_f16(x[i].d) * emb_arm_f16(y[i].d));
    }
    *s = vaddvq_f32(acc);
}

TGT void SFX(emb_vec_dot_q4_k_q8_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = (const block_q4_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const uint8x16_t m0f = vdupq_n_u8(0x0f);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        uint8_t sc[8], mn[8];
        arm_k4_scales(x[i].scales, sc, mn);
        /* mins: sum of min * (bsum pair) over the 8 sub-blocks */
        const int16x8_t pairs = vpaddq_s16(vld1q_s16(y[i].bsums), vld1q_s16(y[i].bsums + 8));
        const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
        const int32x4_t mp = vmlal_s16(vmull_s16(vget_low_s16(mins), vget_low_s16(pairs)), vget_high_s16(mins),
                                       vget_high_s16(pairs));
        const int msum = vaddvq_s32(mp);
        int32x4_t isum = vdupq_n_s32(0);
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < 4; j++, q8 += 64) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * j), q1 = vld1q_u8(x[i].qs + 32 * j + 16);
            const int32x4_t plo = SFX(dot32)(vreinterpretq_s8_u8(vandq_u8(q0, m0f)), vreinterpretq_s8_u8(vandq_u8(q1, m0f)), q8);
            const int32x4_t phi = SFX(dot32)(vreinterpretq_s8_u8(vshrq_n_u8(q0, 4)), vreinterpretq_s8_u8(vshrq_n_u8(q1, 4)), q8 + 32);
            isum = vmlaq_n_s32(isum, plo, sc[2 * j]);
            isum = vmlaq_n_s32(isum, phi, sc[2 * j + 1]);
        }
        sum += y[i].d * emb_arm_f16(x[i].d) * (float)vaddvq_s32(isum) - y[i].d * emb_arm_f16(x[i].dmin) * (float)msum;
    }
    *s = sum;
}

TGT void SFX(emb_vec_dot_q6_k_q8_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = (const block_q6_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const uint8x16_t m0f = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
    const int8x16_t k32 = vdupq_n_s8(32);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32x4_t isum = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            for (int k = 0; k < 2; k++) { /* 16-element halves: each chunk below has one scale */
                const uint8x16_t la = vld1q_u8(ql + 16 * k), lb = vld1q_u8(ql + 32 + 16 * k);
                const uint8x16_t hb = vld1q_u8(qh + 16 * k);
                const uint8x16_t u[4] = {
                    vorrq_u8(vandq_u8(la, m0f), vandq_u8(vshlq_n_u8(hb, 4), m30)),
                    vorrq_u8(vandq_u8(lb, m0f), vandq_u8(vshlq_n_u8(hb, 2), m30)),
                    vorrq_u8(vshrq_n_u8(la, 4), vandq_u8(hb, m30)),
                    vorrq_u8(vshrq_n_u8(lb, 4), vandq_u8(vshrq_n_u8(hb, 2), m30)),
                };
                for (int g = 0; g < 4; g++) {
                    const int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(u[g]), k32);
                    const int32x4_t p = SFX(dot16)(vdupq_n_s32(0), v, vld1q_s8(q8 + 32 * g + 16 * k));
                    isum = vmlaq_n_s32(isum, p, sc[2 * g + k]);
                }
            }
        }
        sum += y[i].d * emb_arm_f16(x[i].d) * (float)vaddvq_s32(isum);
    }
    *s = sum;
}

#undef TGT
#undef SFX
#endif /* EMB_ARM_PASS */

#else /* not ARM64 */
#define EMB_INTERNAL
#include "ember.h"
#endif
