/*
 * quants.c - tensor types: half/bfloat16 conversions, scalar (de)quantization and dot products, the
 * per-level traits tables and the row-level public API.
 *
 * The scalar functions here are the reference every SIMD kernel is tested against.  Block layouts and
 * the activation quantizers follow ggml's reference implementations bit for bit (so weights read from
 * GGUF files decode exactly as llama.cpp decodes them); the code itself is ours.
 *
 * Dot products follow ggml's accumulation scheme: exact integer sums inside a block, scaled by the
 * blocks' float scales and summed in float.  Which activation format each weight type is dotted with
 * (its vec_dot_type):
 *   F32 -> F32, F16 -> F16, BF16 -> BF16,
 *   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 -> Q8_0  (Q4_1/Q5_1 take the block sum of the activations from the
 *                                          int8 values themselves instead of ggml's Q8_1 f16 sum),
 *   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K -> Q8_K,
 *   the grid I-quants IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M -> Q8_K (quants_iq_grid.c).
 *
 * No mutable global state: every table is const and built at compile time.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <math.h>
#include <string.h>

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define EMB_X86 1
#else
#define EMB_X86 0
#endif

#if defined(__aarch64__)
#define EMB_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#else
#define EMB_ARM64 0
#endif

#if defined(__wasm__) || defined(__EMSCRIPTEN__)
#define EMB_WASM 1
#else
#define EMB_WASM 0
#endif

/* ---------------------------------------------------------------------------------------------
 * Half and bfloat16 conversions: integer-only, so they are exact whatever the floating-point
 * environment (flush-to-zero, fast-math) is.
 * --------------------------------------------------------------------------------------------- */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float emb_f16_to_f32(emb_f16 h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp - 1u < 30u) { /* normal: 1..30 */
        return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
    }
    if (exp == 31u) { /* inf / nan (payload kept) */
        return f32_from_bits(sign | 0x7f800000u | (man << 13));
    }
    if (man == 0) return f32_from_bits(sign); /* +-0 */
    /* subnormal: man * 2^-24, normalize */
    exp = 113u;
    while (!(man & 0x400u)) {
        man <<= 1;
        exp--;
    }
    return f32_from_bits(sign | (exp << 23) | ((man & 0x3ffu) << 13));
}

emb_f16 emb_f32_to_f16(float f) {
    const uint32_t x = f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (emb_f16)(sign | 0x7e00u); /* nan -> quiet nan */
    if (ax >= 0x477ff000u) return (emb_f16)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax >= 0x38800000u) {                                  /* normal half (>= 2^-14) */
        const uint32_t r = ax + 0x0fffu + ((ax >> 13) & 1u);  /* round to nearest even at bit 13 */
        return (emb_f16)(sign | ((r - (112u << 23)) >> 13));
    }
    if (ax <= 0x33000000u) return (emb_f16)sign; /* <= 2^-25: rounds to zero (the tie goes to even 0) */
    /* subnormal half: value / 2^-24 = man * 2^(e - 126), e in [102, 112] */
    const uint32_t e = ax >> 23;
    const uint32_t man = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e; /* 14..24 */
    uint32_t q = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (emb_f16)(sign | q);
}

float emb_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t emb_f32_to_bf16(float f) {
    const uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64u); /* nan -> quiet nan */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

#define F16(h) emb_f16_to_f32(h)

/* ggml's nearest_int: round half to even through the float adder (|f| <= 2^22). */
static inline int nearest_int(float f) {
    const float v = f + 12582912.0f;
    const uint32_t i = f32_bits(v);
    return (int)(i & 0x007fffffu) - 0x00400000;
}

static inline uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block. */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* The 16 signed 6-bit scales of a Q3_K block (already minus 32). */
static inline void q3_k_scales(const uint8_t *s, int8_t *out) {
    for (int i = 0; i < 16; i++) {
        const int lo = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
        const int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
        out[i] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* ---------------------------------------------------------------------------------------------
 * to_float (dequantization)
 * --------------------------------------------------------------------------------------------- */

static void to_float_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

static void to_float_f16(const void *src, float *dst, int64_t n) {
    const emb_f16 *x = (const emb_f16 *)src;
    for (int64_t i = 0; i < n; i++) dst[i] = F16(x[i]);
}

static void to_float_bf16(const void *src, float *dst, int64_t n) {
    const uint16_t *x = (const uint16_t *)src;
    for (int64_t i = 0; i < n; i++) dst[i] = emb_bf16_to_f32(x[i]);
}

static void to_float_q4_0(const void *src, float *dst, int64_t n) {
    const block_q4_0 *x = (const block_q4_0 *)src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
            dst[j + QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void to_float_q4_1(const void *src, float *dst, int64_t n) {
    const block_q4_1 *x = (const block_q4_1 *)src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        const float d = F16(x[i].d), m = F16(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            dst[j] = (float)(x[i].qs[j] & 0x0f) * d + m;
            dst[j + QK4_1 / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

static void to_float_q5_0(const void *src, float *dst, int64_t n) {
    const block_q5_0 *x = (const block_q5_0 *)src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        const float d = F16(x[i].d);
        const uint32_t qh = load_u32(x[i].qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            dst[j] = (float)(((x[i].qs[j] & 0x0f) | (h0 << 4)) - 16) * d;
            dst[j + QK5_0 / 2] = (float)(((x[i].qs[j] >> 4) | (h1 << 4)) - 16) * d;
        }
    }
}

static void to_float_q5_1(const void *src, float *dst, int64_t n) {
    const block_q5_1 *x = (const block_q5_1 *)src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        const float d = F16(x[i].d), m = F16(x[i].m);
        const uint32_t qh = load_u32(x[i].qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            dst[j] = (float)((x[i].qs[j] & 0x0f) | (h0 << 4)) * d + m;
            dst[j + QK5_1 / 2] = (float)((x[i].qs[j] >> 4) | (h1 << 4)) * d + m;
        }
    }
}

static void to_float_q8_0(const void *src, float *dst, int64_t n) {
    const block_q8_0 *x = (const block_q8_0 *)src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK8_0; j++) dst[j] = (float)x[i].qs[j] * d;
    }
}

static void to_float_q8_1(const void *src, float *dst, int64_t n) {
    const block_q8_1 *x = (const block_q8_1 *)src;
    for (int64_t i = 0; i < n / QK8_1; i++, dst += QK8_1) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK8_1; j++) dst[j] = (float)x[i].qs[j] * d;
    }
}

static void to_float_q2_k(const void *src, float *dst, int64_t n) {
    const block_q2_K *x = (const block_q2_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d), dmin = F16(x[i].dmin);
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = x[i].qs + 32 * h;
            for (int j = 0; j < 4; j++) {
                for (int k = 0; k < 2; k++) {
                    const uint8_t sc = x[i].scales[8 * h + 2 * j + k];
                    const float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *dst++ = dl * (float)((q[16 * k + l] >> (2 * j)) & 3) - ml;
                }
            }
        }
    }
}

static void to_float_q3_k(const void *src, float *dst, int64_t n) {
    const block_q3_K *x = (const block_q3_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        int8_t sc[16];
        q3_k_scales(x[i].scales, sc);
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = x[i].qs + 32 * h;
            for (int j = 0; j < 4; j++) {
                const uint8_t m = (uint8_t)(1u << (4 * h + j));
                for (int k = 0; k < 2; k++) {
                    const float dl = d * (float)sc[8 * h + 2 * j + k];
                    for (int l = 16 * k; l < 16 * k + 16; l++) {
                        const int v = ((q[l] >> (2 * j)) & 3) - ((x[i].hmask[l] & m) ? 0 : 4);
                        *dst++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

static void to_float_q4_k(const void *src, float *dst, int64_t n) {
    const block_q4_K *x = (const block_q4_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d), dmin = F16(x[i].dmin);
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = x[i].qs + 32 * j;
            uint8_t sc, m;
            get_scale_min_k4(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void to_float_q5_k(const void *src, float *dst, int64_t n) {
    const block_q5_K *x = (const block_q5_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d), dmin = F16(x[i].dmin);
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = x[i].qs + 32 * j;
            uint8_t sc, m;
            get_scale_min_k4(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                *dst++ = d1 * (float)((q[l] & 0x0f) | (((x[i].qh[l] >> (2 * j)) & 1) << 4)) - m1;
            }
            for (int l = 0; l < 32; l++) {
                *dst++ = d2 * (float)((q[l] >> 4) | (((x[i].qh[l] >> (2 * j + 1)) & 1) << 4)) - m2;
            }
        }
    }
}

static void to_float_q6_k(const void *src, float *dst, int64_t n) {
    const block_q6_K *x = (const block_q6_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = F16(x[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            float *y = dst + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

static void to_float_q8_k(const void *src, float *dst, int64_t n) {
    const block_q8_K *x = (const block_q8_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        for (int j = 0; j < QK_K; j++) dst[j] = x[i].d * (float)x[i].qs[j];
    }
}

/* ---------------------------------------------------------------------------------------------
 * from_float (quantization, ggml's reference algorithms)
 * --------------------------------------------------------------------------------------------- */

static void from_float_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

static void from_float_f16(const float *src, void *dst, int64_t n) {
    emb_f16 *y = (emb_f16 *)dst;
    for (int64_t i = 0; i < n; i++) y[i] = emb_f32_to_f16(src[i]);
}

static void from_float_bf16(const float *src, void *dst, int64_t n) {
    uint16_t *y = (uint16_t *)dst;
    for (int64_t i = 0; i < n; i++) y[i] = emb_f32_to_bf16(src[i]);
}

/* The value of largest magnitude, with its sign (the first one on ties). */
static float signed_extreme(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    *mn = INFINITY;
    *mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (x[j] < *mn) *mn = x[j];
        if (x[j] > *mx) *mx = x[j];
    }
}

/* 32 values in 0..31: low nibbles in qs (element j with j + 16), fifth bits in qh (bit j for element j). */
static void pack_5bit(const int *q, uint8_t *qs, uint8_t *qh_bytes) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
        qh |= ((uint32_t)(q[j] >> 4) & 1u) << j;
        qh |= ((uint32_t)(q[j + 16] >> 4) & 1u) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh_bytes[k] = (uint8_t)(qh >> (8 * k));
}

/* Q4_0 / Q5_0: d = (the value of largest magnitude) / -2^(bits-1); q = trunc(x/d + 2^(bits-1) + 0.5). */
static void from_float_q4_0(const float *x, void *dst, int64_t n) {
    block_q4_0 *y = (block_q4_0 *)dst;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        const float d = signed_extreme(x, QK4_0) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = emb_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const int q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[j + QK4_0 / 2] * id + 8.5f);
            y[i].qs[j] = (uint8_t)((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
        }
    }
}

static void from_float_q5_0(const float *x, void *dst, int64_t n) {
    block_q5_0 *y = (block_q5_0 *)dst;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        const float d = signed_extreme(x, QK5_0) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = emb_f32_to_f16(d);
        int q[QK5_0];
        for (int j = 0; j < QK5_0; j++) {
            const int v = (int8_t)(x[j] * id + 16.5f);
            q[j] = v < 31 ? v : 31;
        }
        pack_5bit(q, y[i].qs, y[i].qh);
    }
}

/* Q4_1 / Q5_1: d = (max - min) / (2^bits - 1), m = min; q = trunc((x - min)/d + 0.5). */
static void from_float_q4_1(const float *x, void *dst, int64_t n) {
    block_q4_1 *y = (block_q4_1 *)dst;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float min, max;
        min_max(x, QK4_1, &min, &max);
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = emb_f32_to_f16(d);
        y[i].m = emb_f32_to_f16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const int q0 = (int8_t)((x[j] - min) * id + 0.5f), q1 = (int8_t)((x[j + QK4_1 / 2] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
        }
    }
}

static void from_float_q5_1(const float *x, void *dst, int64_t n) {
    block_q5_1 *y = (block_q5_1 *)dst;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float min, max;
        min_max(x, QK5_1, &min, &max);
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = emb_f32_to_f16(d);
        y[i].m = emb_f32_to_f16(min);
        int q[QK5_1];
        for (int j = 0; j < QK5_1; j++) {
            const int v = (int8_t)((x[j] - min) * id + 0.5f);
            q[j] = v < 31 ? v : 31;
        }
        pack_5bit(q, y[i].qs, y[i].qh);
    }
}

/* Q8_0: d = amax / 127, q = roundf(x / d) (half away from zero). */
static void from_float_q8_0(const float *x, void *dst, int64_t n) {
    block_q8_0 *y = (block_q8_0 *)dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) {
            const float a = fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = emb_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* Q8_1: as Q8_0 plus s = d * sum(q). */
static void from_float_q8_1(const float *x, void *dst, int64_t n) {
    block_q8_1 *y = (block_q8_1 *)dst;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_1; j++) {
            const float a = fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].d = emb_f32_to_f16(d);
        y[i].s = emb_f32_to_f16((float)sum * d);
    }
}

/* Q8_K: scale -127/max where max is the first value of largest magnitude (sign kept), q rounded half to
 * even and capped at 127, d = 1/scale, bsums = sums of 16 consecutive q.  An all-zero block gets d = 0
 * and zero q and bsums. */
static void from_float_q8_k(const float *x, void *dst, int64_t n) {
    block_q8_K *y = (block_q8_K *)dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            const float a = fabsf(x[j]);
            if (a > amax) {
                amax = a;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int k = 0; k < 16; k++) sum += y[i].qs[16 * j + k];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---------------------------------------------------------------------------------------------
 * vec_dot (scalar twins of the SIMD kernels)
 * --------------------------------------------------------------------------------------------- */

static void vec_dot_f32(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = (const float *)vx, *y = (const float *)vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

static void vec_dot_f16(int64_t n, float *s, const void *vx, const void *vy) {
    const emb_f16 *x = (const emb_f16 *)vx, *y = (const emb_f16 *)vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(F16(x[i]) * F16(y[i]));
    *s = (float)sum;
}

static void vec_dot_bf16(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = (const uint16_t *)vx, *y = (const uint16_t *)vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(emb_bf16_to_f32(x[i]) * emb_bf16_to_f32(y[i]));
    *s = (float)sum;
}

static void vec_dot_q4_0_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = (const block_q4_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            isum += ((x[i].qs[j] & 0x0f) - 8) * y[i].qs[j];
            isum += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK4_0 / 2];
        }
        sum += (float)isum * (F16(x[i].d) * F16(y[i].d));
    }
    *s = sum;
}

static void vec_dot_q4_1_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = (const block_q4_1 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int isum = 0, ysum = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            isum += (x[i].qs[j] & 0x0f) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + QK4_1 / 2];
            ysum += y[i].qs[j] + y[i].qs[j + QK4_1 / 2];
        }
        const float dy = F16(y[i].d);
        sum += (float)isum * (F16(x[i].d) * dy) + (float)ysum * (F16(x[i].m) * dy);
    }
    *s = sum;
}

static void vec_dot_q5_0_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = (const block_q5_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const uint32_t qh = load_u32(x[i].qh);
        int isum = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int q0 = ((x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4)) - 16;
            const int q1 = ((x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - 16;
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + QK5_0 / 2];
        }
        sum += (float)isum * (F16(x[i].d) * F16(y[i].d));
    }
    *s = sum;
}

static void vec_dot_q5_1_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = (const block_q5_1 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const uint32_t qh = load_u32(x[i].qh);
        int isum = 0, ysum = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
            const int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + QK5_1 / 2];
            ysum += y[i].qs[j] + y[i].qs[j + QK5_1 / 2];
        }
        const float dy = F16(y[i].d);
        sum += (float)isum * (F16(x[i].d) * dy) + (float)ysum * (F16(x[i].m) * dy);
    }
    *s = sum;
}

static void vec_dot_q8_0_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = (const block_q8_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < QK8_0; j++) isum += x[i].qs[j] * y[i].qs[j];
        sum += (float)isum * (F16(x[i].d) * F16(y[i].d));
    }
    *s = sum;
}

/* K-quants: per 256-block, sum = dy * (d * sum_sub(scale * sum(q*y)) - dmin * sum_sub(min * sum(y))). */

static void vec_dot_q2_k_q8_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = (const block_q2_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0, msum = 0;
        for (int sb = 0; sb < 16; sb++) msum += (x[i].scales[sb] >> 4) * y[i].bsums[sb];
        const int8_t *q8 = y[i].qs;
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = x[i].qs + 32 * h;
            for (int j = 0; j < 4; j++) {
                for (int k = 0; k < 2; k++) {
                    int sub = 0;
                    for (int l = 16 * k; l < 16 * k + 16; l++) sub += ((q[l] >> (2 * j)) & 3) * *q8++;
                    isum += (x[i].scales[8 * h + 2 * j + k] & 0x0f) * sub;
                }
            }
        }
        sum += y[i].d * F16(x[i].d) * (float)isum - y[i].d * F16(x[i].dmin) * (float)msum;
    }
    *s = sum;
}

static void vec_dot_q3_k_q8_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = (const block_q3_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t sc[16];
        q3_k_scales(x[i].scales, sc);
        int isum = 0;
        const int8_t *q8 = y[i].qs;
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = x[i].qs + 32 * h;
            for (int j = 0; j < 4; j++) {
                const uint8_t m = (uint8_t)(1u << (4 * h + j));
                for (int k = 0; k < 2; k++) {
                    int sub = 0;
                    for (int l = 16 * k; l < 16 * k + 16; l++) {
                        sub += (((q[l] >> (2 * j)) & 3) - ((x[i].hmask[l] & m) ? 0 : 4)) * *q8++;
                    }
                    isum += sc[8 * h + 2 * j + k] * sub;
                }
            }
        }
        sum += y[i].d * F16(x[i].d) * (float)isum;
    }
    *s = sum;
}

static void vec_dot_q4_k_q8_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = (const block_q4_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0, msum = 0;
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = x[i].qs + 32 * j;
            uint8_t sc0, m0, sc1, m1;
            get_scale_min_k4(2 * j, x[i].scales, &sc0, &m0);
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc1, &m1);
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) s0 += (q[l] & 0x0f) * q8[l];
            for (int l = 0; l < 32; l++) s1 += (q[l] >> 4) * q8[l + 32];
            q8 += 64;
            isum += sc0 * s0 + sc1 * s1;
            msum += m0 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) + m1 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
        }
        sum += y[i].d * F16(x[i].d) * (float)isum - y[i].d * F16(x[i].dmin) * (float)msum;
    }
    *s = sum;
}

static void vec_dot_q5_k_q8_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = (const block_q5_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0, msum = 0;
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = x[i].qs + 32 * j;
            uint8_t sc0, m0, sc1, m1;
            get_scale_min_k4(2 * j, x[i].scales, &sc0, &m0);
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc1, &m1);
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) s0 += ((q[l] & 0x0f) | (((x[i].qh[l] >> (2 * j)) & 1) << 4)) * q8[l];
            for (int l = 0; l < 32; l++) s1 += ((q[l] >> 4) | (((x[i].qh[l] >> (2 * j + 1)) & 1) << 4)) * q8[l + 32];
            q8 += 64;
            isum += sc0 * s0 + sc1 * s1;
            msum += m0 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) + m1 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
        }
        sum += y[i].d * F16(x[i].d) * (float)isum - y[i].d * F16(x[i].dmin) * (float)msum;
    }
    *s = sum;
}

static void vec_dot_q6_k_q8_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = (const block_q6_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            for (int k = 0; k < 2; k++) { /* the two 16-halves of l share a scale */
                int s1 = 0, s2 = 0, s3 = 0, s4 = 0;
                for (int l = 16 * k; l < 16 * k + 16; l++) {
                    s1 += (((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32) * q8[l];
                    s2 += (((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32) * q8[l + 32];
                    s3 += (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * q8[l + 64];
                    s4 += (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * q8[l + 96];
                }
                isum += sc[k] * s1 + sc[k + 2] * s2 + sc[k + 4] * s3 + sc[k + 6] * s4;
            }
        }
        sum += y[i].d * F16(x[i].d) * (float)isum;
    }
    *s = sum;
}

/* ---------------------------------------------------------------------------------------------
 * Traits tables: one const table per level, built at compile time.  A level's table is the scalar
 * one with that level's kernels put in; the T_* macros give each type's fixed facts once.
 * --------------------------------------------------------------------------------------------- */

#define T_F32(tf, ff, vd) {"f32", 1, sizeof(float), EMB_TYPE_F32, tf, ff, vd}
#define T_F16(tf, ff, vd) {"f16", 1, sizeof(emb_f16), EMB_TYPE_F16, tf, ff, vd}
#define T_BF16(tf, ff, vd) {"bf16", 1, sizeof(uint16_t), EMB_TYPE_BF16, tf, ff, vd}
#define T_Q4_0(tf, ff, vd) {"q4_0", QK4_0, sizeof(block_q4_0), EMB_TYPE_Q8_0, tf, ff, vd}
#define T_Q4_1(tf, ff, vd) {"q4_1", QK4_1, sizeof(block_q4_1), EMB_TYPE_Q8_0, tf, ff, vd}
#define T_Q5_0(tf, ff, vd) {"q5_0", QK5_0, sizeof(block_q5_0), EMB_TYPE_Q8_0, tf, ff, vd}
#define T_Q5_1(tf, ff, vd) {"q5_1", QK5_1, sizeof(block_q5_1), EMB_TYPE_Q8_0, tf, ff, vd}
#define T_Q8_0(tf, ff, vd) {"q8_0", QK8_0, sizeof(block_q8_0), EMB_TYPE_Q8_0, tf, ff, vd}
#define T_Q8_1(tf, ff, vd) {"q8_1", QK8_1, sizeof(block_q8_1), EMB_TYPE_Q8_1, tf, ff, vd}
#define T_Q2_K(tf, ff, vd) {"q2_K", QK_K, sizeof(block_q2_K), EMB_TYPE_Q8_K, tf, ff, vd}
#define T_Q3_K(tf, ff, vd) {"q3_K", QK_K, sizeof(block_q3_K), EMB_TYPE_Q8_K, tf, ff, vd}
#define T_Q4_K(tf, ff, vd) {"q4_K", QK_K, sizeof(block_q4_K), EMB_TYPE_Q8_K, tf, ff, vd}
#define T_Q5_K(tf, ff, vd) {"q5_K", QK_K, sizeof(block_q5_K), EMB_TYPE_Q8_K, tf, ff, vd}
#define T_Q6_K(tf, ff, vd) {"q6_K", QK_K, sizeof(block_q6_K), EMB_TYPE_Q8_K, tf, ff, vd}
#define T_Q8_K(tf, ff, vd) {"q8_K", QK_K, sizeof(block_q8_K), EMB_TYPE_Q8_K, tf, ff, vd}
/* IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 (quants_iq4_tq*.c): the scalar twins with level L's dot products. */
#define T_IQ4_NL(vd) {"iq4_nl", QK4_NL, sizeof(block_iq4_nl), EMB_TYPE_Q8_0, emb_to_float_iq4_nl, emb_quantize_iq4_nl_ref, vd}
#define T_IQ4_XS(vd) {"iq4_xs", QK_K, sizeof(block_iq4_xs), EMB_TYPE_Q8_K, emb_to_float_iq4_xs, emb_quantize_iq4_xs_ref, vd}
#define T_TQ1_0(vd) {"tq1_0", QK_K, sizeof(block_tq1_0), EMB_TYPE_Q8_K, emb_to_float_tq1_0, emb_quantize_tq1_0_ref, vd}
#define T_TQ2_0(vd) {"tq2_0", QK_K, sizeof(block_tq2_0), EMB_TYPE_Q8_K, emb_to_float_tq2_0, emb_quantize_tq2_0_ref, vd}
#define IQ4_TQ_ROWS(L)                                              \
    [EMB_TYPE_IQ4_NL] = T_IQ4_NL(emb_vec_dot_iq4_nl_q8_0##L),       \
    [EMB_TYPE_IQ4_XS] = T_IQ4_XS(emb_vec_dot_iq4_xs_q8_k##L),       \
    [EMB_TYPE_TQ1_0] = T_TQ1_0(emb_vec_dot_tq1_0_q8_k##L),          \
    [EMB_TYPE_TQ2_0] = T_TQ2_0(emb_vec_dot_tq2_0_q8_k##L)

_Static_assert(sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20 && sizeof(block_q5_0) == 22 &&
                   sizeof(block_q5_1) == 24 && sizeof(block_q8_0) == 34 && sizeof(block_q8_1) == 36,
               "legacy block sizes");
_Static_assert(sizeof(block_q2_K) == 84 && sizeof(block_q3_K) == 110 && sizeof(block_q4_K) == 144 &&
                   sizeof(block_q5_K) == 176 && sizeof(block_q6_K) == 210 && sizeof(block_q8_K) == 292,
               "k-quant block sizes");

static const emb_type_traits k_traits_scalar[EMB_TYPE_COUNT] = {
    [EMB_TYPE_F32] = T_F32(to_float_f32, from_float_f32, vec_dot_f32),
    [EMB_TYPE_F16] = T_F16(to_float_f16, from_float_f16, vec_dot_f16),
    [EMB_TYPE_BF16] = T_BF16(to_float_bf16, from_float_bf16, vec_dot_bf16),
    [EMB_TYPE_Q4_0] = T_Q4_0(to_float_q4_0, from_float_q4_0, vec_dot_q4_0_q8_0),
    [EMB_TYPE_Q4_1] = T_Q4_1(to_float_q4_1, from_float_q4_1, vec_dot_q4_1_q8_0),
    [EMB_TYPE_Q5_0] = T_Q5_0(to_float_q5_0, from_float_q5_0, vec_dot_q5_0_q8_0),
    [EMB_TYPE_Q5_1] = T_Q5_1(to_float_q5_1, from_float_q5_1, vec_dot_q5_1_q8_0),
    [EMB_TYPE_Q8_0] = T_Q8_0(to_float_q8_0, from_float_q8_0, vec_dot_q8_0_q8_0),
    [EMB_TYPE_Q8_1] = T_Q8_1(to_float_q8_1, from_float_q8_1, NULL),
    [EMB_TYPE_Q2_K] = T_Q2_K(to_float_q2_k, emb_quantize_q2_k_ref, vec_dot_q2_k_q8_k),
    [EMB_TYPE_Q3_K] = T_Q3_K(to_float_q3_k, emb_quantize_q3_k_ref, vec_dot_q3_k_q8_k),
    [EMB_TYPE_Q4_K] = T_Q4_K(to_float_q4_k, emb_quantize_q4_k_ref, vec_dot_q4_k_q8_k),
    [EMB_TYPE_Q5_K] = T_Q5_K(to_float_q5_k, emb_quantize_q5_k_ref, vec_dot_q5_k_q8_k),
    [EMB_TYPE_Q6_K] = T_Q6_K(to_float_q6_k, emb_quantize_q6_k_ref, vec_dot_q6_k_q8_k),
    [EMB_TYPE_Q8_K] = T_Q8_K(to_float_q8_k, from_float_q8_k, NULL),
    EMB_IQ_GRID_TRAITS(scalar),
    IQ4_TQ_ROWS(),
};

#if EMB_X86
#define X86_TABLE(L)                                                                                  \
    {                                                                                                 \
        [EMB_TYPE_F32] = T_F32(to_float_f32, from_float_f32, emb_vec_dot_f32_##L),                    \
        [EMB_TYPE_F16] = T_F16(to_float_f16, from_float_f16, emb_vec_dot_f16_##L),                    \
        [EMB_TYPE_BF16] = T_BF16(to_float_bf16, from_float_bf16, emb_vec_dot_bf16_##L),               \
        [EMB_TYPE_Q4_0] = T_Q4_0(to_float_q4_0, from_float_q4_0, emb_vec_dot_q4_0_q8_0_##L),          \
        [EMB_TYPE_Q4_1] = T_Q4_1(to_float_q4_1, from_float_q4_1, emb_vec_dot_q4_1_q8_0_##L),          \
        [EMB_TYPE_Q5_0] = T_Q5_0(to_float_q5_0, from_float_q5_0, emb_vec_dot_q5_0_q8_0_##L),          \
        [EMB_TYPE_Q5_1] = T_Q5_1(to_float_q5_1, from_float_q5_1, emb_vec_dot_q5_1_q8_0_##L),          \
        [EMB_TYPE_Q8_0] = T_Q8_0(to_float_q8_0, emb_quantize_q8_0_##L, emb_vec_dot_q8_0_q8_0_##L),    \
        [EMB_TYPE_Q8_1] = T_Q8_1(to_float_q8_1, from_float_q8_1, NULL),                               \
        [EMB_TYPE_Q2_K] = T_Q2_K(to_float_q2_k, emb_quantize_q2_k_ref, emb_vec_dot_q2_k_q8_k_##L),                     \
        [EMB_TYPE_Q3_K] = T_Q3_K(to_float_q3_k, emb_quantize_q3_k_ref, emb_vec_dot_q3_k_q8_k_##L),                     \
        [EMB_TYPE_Q4_K] = T_Q4_K(to_float_q4_k, emb_quantize_q4_k_ref, emb_vec_dot_q4_k_q8_k_##L),                     \
        [EMB_TYPE_Q5_K] = T_Q5_K(to_float_q5_k, emb_quantize_q5_k_ref, emb_vec_dot_q5_k_q8_k_##L),                     \
        [EMB_TYPE_Q6_K] = T_Q6_K(to_float_q6_k, emb_quantize_q6_k_ref, emb_vec_dot_q6_k_q8_k_##L),                     \
        [EMB_TYPE_Q8_K] = T_Q8_K(to_float_q8_k, emb_quantize_q8_k_##L, NULL),                         \
        EMB_IQ_GRID_TRAITS(L),                                                                        \
        IQ4_TQ_ROWS(_##L),                                                                            \
    }
static const emb_type_traits k_traits_avx2[EMB_TYPE_COUNT] = X86_TABLE(avx2);
static const emb_type_traits k_traits_avx512[EMB_TYPE_COUNT] = X86_TABLE(avx512);
#endif

#if EMB_ARM64
#define ARM_TABLE(L)                                                                                  \
    {                                                                                                 \
        [EMB_TYPE_F32] = T_F32(to_float_f32, from_float_f32, vec_dot_f32),                            \
        [EMB_TYPE_F16] = T_F16(to_float_f16, from_float_f16, vec_dot_f16),                            \
        [EMB_TYPE_BF16] = T_BF16(to_float_bf16, from_float_bf16, vec_dot_bf16),                       \
        [EMB_TYPE_Q4_0] = T_Q4_0(to_float_q4_0, from_float_q4_0, emb_vec_dot_q4_0_q8_0_##L),          \
        [EMB_TYPE_Q4_1] = T_Q4_1(to_float_q4_1, from_float_q4_1, vec_dot_q4_1_q8_0),                  \
        [EMB_TYPE_Q5_0] = T_Q5_0(to_float_q5_0, from_float_q5_0, emb_vec_dot_q5_0_q8_0_##L),          \
        [EMB_TYPE_Q5_1] = T_Q5_1(to_float_q5_1, from_float_q5_1, vec_dot_q5_1_q8_0),                  \
        [EMB_TYPE_Q8_0] = T_Q8_0(to_float_q8_0, from_float_q8_0, emb_vec_dot_q8_0_q8_0_##L),          \
        [EMB_TYPE_Q8_1] = T_Q8_1(to_float_q8_1, from_float_q8_1, NULL),                               \
        [EMB_TYPE_Q2_K] = T_Q2_K(to_float_q2_k, emb_quantize_q2_k_ref, vec_dot_q2_k_q8_k),                             \
        [EMB_TYPE_Q3_K] = T_Q3_K(to_float_q3_k, emb_quantize_q3_k_ref, vec_dot_q3_k_q8_k),                             \
        [EMB_TYPE_Q4_K] = T_Q4_K(to_float_q4_k, emb_quantize_q4_k_ref, emb_vec_dot_q4_k_q8_k_##L),                     \
        [EMB_TYPE_Q5_K] = T_Q5_K(to_float_q5_k, emb_quantize_q5_k_ref, vec_dot_q5_k_q8_k),                             \
        [EMB_TYPE_Q6_K] = T_Q6_K(to_float_q6_k, emb_quantize_q6_k_ref, emb_vec_dot_q6_k_q8_k_##L),                     \
        [EMB_TYPE_Q8_K] = T_Q8_K(to_float_q8_k, from_float_q8_k, NULL),                               \
        EMB_IQ_GRID_TRAITS(L),                                                                        \
        IQ4_TQ_ROWS(_##L),                                                                            \
    }
static const emb_type_traits k_traits_neon[EMB_TYPE_COUNT] = ARM_TABLE(neon);
static const emb_type_traits k_traits_neon_dotprod[EMB_TYPE_COUNT] = ARM_TABLE(dotprod);
#endif

#if EMB_WASM && defined(__wasm_simd128__)
/* SIMD128 kernels (quants_wasm.c) where written; scalar elsewhere. */
static const emb_type_traits k_traits_wasm_simd128[EMB_TYPE_COUNT] = {
    [EMB_TYPE_F32] = T_F32(to_float_f32, from_float_f32, vec_dot_f32),
    [EMB_TYPE_F16] = T_F16(to_float_f16, from_float_f16, vec_dot_f16),
    [EMB_TYPE_BF16] = T_BF16(to_float_bf16, from_float_bf16, vec_dot_bf16),
    [EMB_TYPE_Q4_0] = T_Q4_0(to_float_q4_0, from_float_q4_0, emb_vec_dot_q4_0_q8_0_simd128),
    [EMB_TYPE_Q4_1] = T_Q4_1(to_float_q4_1, from_float_q4_1, emb_vec_dot_q4_1_q8_0_simd128),
    [EMB_TYPE_Q5_0] = T_Q5_0(to_float_q5_0, from_float_q5_0, emb_vec_dot_q5_0_q8_0_simd128),
    [EMB_TYPE_Q5_1] = T_Q5_1(to_float_q5_1, from_float_q5_1, emb_vec_dot_q5_1_q8_0_simd128),
    [EMB_TYPE_Q8_0] = T_Q8_0(to_float_q8_0, emb_quantize_q8_0_simd128, emb_vec_dot_q8_0_q8_0_simd128),
    [EMB_TYPE_Q8_1] = T_Q8_1(to_float_q8_1, from_float_q8_1, NULL),
    [EMB_TYPE_Q2_K] = T_Q2_K(to_float_q2_k, emb_quantize_q2_k_ref, vec_dot_q2_k_q8_k),
    [EMB_TYPE_Q3_K] = T_Q3_K(to_float_q3_k, emb_quantize_q3_k_ref, vec_dot_q3_k_q8_k),
    [EMB_TYPE_Q4_K] = T_Q4_K(to_float_q4_k, emb_quantize_q4_k_ref, emb_vec_dot_q4_k_q8_k_simd128),
    [EMB_TYPE_Q5_K] = T_Q5_K(to_float_q5_k, emb_quantize_q5_k_ref, emb_vec_dot_q5_k_q8_k_simd128),
    [EMB_TYPE_Q6_K] = T_Q6_K(to_float_q6_k, emb_quantize_q6_k_ref, emb_vec_dot_q6_k_q8_k_simd128),
    [EMB_TYPE_Q8_K] = T_Q8_K(to_float_q8_k, emb_quantize_q8_k_simd128, NULL),
    EMB_IQ_GRID_TRAITS(simd128),
    IQ4_TQ_ROWS(_simd128),
};
#endif

#if EMB_WASM && defined(__wasm_relaxed_simd__)
/* Relaxed SIMD (quants_wasm.c): relaxed int8 dots for the types written so far, SIMD128 elsewhere. */
static const emb_type_traits k_traits_wasm_relaxed[EMB_TYPE_COUNT] = {
    [EMB_TYPE_F32] = T_F32(to_float_f32, from_float_f32, vec_dot_f32),
    [EMB_TYPE_F16] = T_F16(to_float_f16, from_float_f16, vec_dot_f16),
    [EMB_TYPE_BF16] = T_BF16(to_float_bf16, from_float_bf16, vec_dot_bf16),
    [EMB_TYPE_Q4_0] = T_Q4_0(to_float_q4_0, from_float_q4_0, emb_vec_dot_q4_0_q8_0_simd128),
    [EMB_TYPE_Q4_1] = T_Q4_1(to_float_q4_1, from_float_q4_1, emb_vec_dot_q4_1_q8_0_simd128),
    [EMB_TYPE_Q5_0] = T_Q5_0(to_float_q5_0, from_float_q5_0, emb_vec_dot_q5_0_q8_0_relaxed),
    [EMB_TYPE_Q5_1] = T_Q5_1(to_float_q5_1, from_float_q5_1, emb_vec_dot_q5_1_q8_0_simd128),
    [EMB_TYPE_Q8_0] = T_Q8_0(to_float_q8_0, emb_quantize_q8_0_simd128, emb_vec_dot_q8_0_q8_0_relaxed),
    [EMB_TYPE_Q8_1] = T_Q8_1(to_float_q8_1, from_float_q8_1, NULL),
    [EMB_TYPE_Q2_K] = T_Q2_K(to_float_q2_k, emb_quantize_q2_k_ref, vec_dot_q2_k_q8_k),
    [EMB_TYPE_Q3_K] = T_Q3_K(to_float_q3_k, emb_quantize_q3_k_ref, vec_dot_q3_k_q8_k),
    [EMB_TYPE_Q4_K] = T_Q4_K(to_float_q4_k, emb_quantize_q4_k_ref, emb_vec_dot_q4_k_q8_k_relaxed),
    [EMB_TYPE_Q5_K] = T_Q5_K(to_float_q5_k, emb_quantize_q5_k_ref, emb_vec_dot_q5_k_q8_k_simd128),
    [EMB_TYPE_Q6_K] = T_Q6_K(to_float_q6_k, emb_quantize_q6_k_ref, emb_vec_dot_q6_k_q8_k_relaxed),
    [EMB_TYPE_Q8_K] = T_Q8_K(to_float_q8_k, emb_quantize_q8_k_simd128, NULL),
    EMB_IQ_GRID_TRAITS(simd128),
    IQ4_TQ_ROWS(_simd128),
};
#endif

/* The table of a level compiled into this build (NULL otherwise); no run-time CPU check. */
static const emb_type_traits *level_table(int level) {
    switch (level) {
    case EMB_LEVEL_SCALAR:
        return k_traits_scalar;
#if EMB_X86
    case EMB_LEVEL_AVX2:
        return k_traits_avx2;
    case EMB_LEVEL_AVX512:
        return k_traits_avx512;
#endif
#if EMB_ARM64
    case EMB_LEVEL_NEON:
        return k_traits_neon;
    case EMB_LEVEL_NEON_DOTPROD:
        return k_traits_neon_dotprod;
#endif
#if EMB_WASM && defined(__wasm_simd128__)
    case EMB_LEVEL_WASM_SIMD128:
        return k_traits_wasm_simd128;
#endif
#if EMB_WASM && defined(__wasm_relaxed_simd__)
    case EMB_LEVEL_WASM_RELAXED:
        return k_traits_wasm_relaxed;
#endif
    default:
        return NULL;
    }
}

const emb_type_traits *emb_get_type_traits(int type, int level) {
    if (type < 0 || type >= EMB_TYPE_COUNT) return NULL;
    const emb_type_traits *table = level_table(level);
    if (!table || !table[type].name) return NULL;
    return &table[type];
}

/* ---------------------------------------------------------------------------------------------
 * Public API
 * --------------------------------------------------------------------------------------------- */

int emb_kernel_level_supported(int level) {
    switch (level) {
    case EMB_LEVEL_SCALAR:
        return 1;
#if EMB_X86
    case EMB_LEVEL_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case EMB_LEVEL_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
               emb_kernel_level_supported(EMB_LEVEL_AVX2);
#endif
#if EMB_ARM64
    case EMB_LEVEL_NEON:
        return 1;
    case EMB_LEVEL_NEON_DOTPROD: {
#if defined(__ARM_FEATURE_DOTPROD)
        return 1;
#elif defined(__linux__)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
        int v = 0;
        size_t len = sizeof v;
        return sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, NULL, 0) == 0 && v != 0;
#else
        return 0;
#endif
    }
#endif
#if EMB_WASM && defined(__wasm_simd128__)
    case EMB_LEVEL_WASM_SIMD128:
        return 1;
#endif
#if EMB_WASM && defined(__wasm_relaxed_simd__)
    case EMB_LEVEL_WASM_RELAXED:
        return 1;
#endif
    default:
        return 0;
    }
}

int emb_kernel_level_best(void) {
    static const int order[] = {EMB_LEVEL_AVX512, EMB_LEVEL_AVX2, EMB_LEVEL_NEON_DOTPROD, EMB_LEVEL_NEON,
                                EMB_LEVEL_WASM_RELAXED, EMB_LEVEL_WASM_SIMD128};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (emb_kernel_level_supported(order[i])) return order[i];
    }
    return EMB_LEVEL_SCALAR;
}

const char *emb_kernel_level_name(int level) {
    switch (level) {
    case EMB_LEVEL_SCALAR:
        return "scalar";
    case EMB_LEVEL_AVX2:
        return "avx2";
    case EMB_LEVEL_AVX512:
        return "avx512";
    case EMB_LEVEL_NEON:
        return "neon";
    case EMB_LEVEL_NEON_DOTPROD:
        return "neon-dotprod";
    case EMB_LEVEL_WASM_SIMD128:
        return "wasm-simd128";
    case EMB_LEVEL_WASM_RELAXED:
        return "wasm-relaxed";
    default:
        return "unknown";
    }
}

int emb_type_supported(int type) { return emb_get_type_traits(type, EMB_LEVEL_SCALAR) != NULL; }

int emb_weight_type_supported(int type) {
    const emb_type_traits *t = emb_get_type_traits(type, EMB_LEVEL_SCALAR);
    return t != NULL && t->vec_dot != NULL && t->to_float != NULL;
}

int64_t emb_type_block_size(int type) {
    const emb_type_traits *t = emb_get_type_traits(type, EMB_LEVEL_SCALAR);
    return t ? t->block_size : -1;
}

int64_t emb_type_block_bytes(int type) {
    const emb_type_traits *t = emb_get_type_traits(type, EMB_LEVEL_SCALAR);
    return t ? t->block_bytes : -1;
}

int64_t emb_row_size(int type, int64_t n) {
    const emb_type_traits *t = emb_get_type_traits(type, EMB_LEVEL_SCALAR);
    if (!t || n < 0 || n % t->block_size != 0) return -1;
    return n / t->block_size * t->block_bytes;
}

int emb_type_vec_dot_type(int type) {
    const emb_type_traits *t = emb_get_type_traits(type, EMB_LEVEL_SCALAR);
    return t ? t->vec_dot_type : -1;
}

/* The traits for a row call: the level must run on this CPU and n must be whole blocks. */
static const emb_type_traits *row_traits(int level, int type, int64_t n) {
    if (n < 0 || !emb_kernel_level_supported(level)) return NULL;
    const emb_type_traits *t = emb_get_type_traits(type, level);
    if (!t || n % t->block_size != 0) return NULL;
    return t;
}

int emb_dequantize_row(int level, int type, const void *src, float *dst, int64_t n) {
    const emb_type_traits *t = row_traits(level, type, n);
    if (!t || !t->to_float) return -1;
    t->to_float(src, dst, n);
    return 0;
}

int emb_quantize_row(int level, int type, const float *src, void *dst, int64_t n) {
    const emb_type_traits *t = row_traits(level, type, n);
    if (!t || !t->from_float) return -1;
    t->from_float(src, dst, n);
    return 0;
}

int emb_vec_dot(int level, int type, int64_t n, const void *x, const void *y, float *out) {
    const emb_type_traits *t = row_traits(level, type, n);
    if (!t || !t->vec_dot) return -1;
    /* the activation row must also be whole blocks of the vec_dot_type */
    const emb_type_traits *yt = emb_get_type_traits(t->vec_dot_type, level);
    if (!yt || n % yt->block_size != 0) return -1;
    t->vec_dot(n, out, x, y);
    return 0;
}
