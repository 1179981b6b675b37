/*
 * quants_iq4_tq.c - IQ4_NL / IQ4_XS (4-bit non-linear) and TQ1_0 / TQ2_0 (ternary): the scalar twins.
 *
 * Block layouts are ggml's (so GGUF files decode as llama.cpp decodes them); the code is ours.
 *  - IQ4_NL: 32 values, an f16 scale and 16 bytes of 4-bit indices into EMB_IQ4NL_VALUES (element j in the low
 *    nibble of byte j, element j + 16 in its high nibble).  Dotted with Q8_0.
 *  - IQ4_XS: 256 values in 8 sub-blocks of 32 with the IQ4_NL index layout, a 6-bit scale per sub-block (low 4
 *    bits in scales_l, nibble ib % 2 of byte ib / 2; high 2 bits in scales_h, bits 2 ib..2 ib + 1), biased by 32,
 *    times an f16 super-scale.  Dotted with Q8_K.
 *  - TQ2_0: 256 values in {-1, 0, 1} as 2-bit q - 1: byte j + m of each 32-byte group holds elements 4 j + 32 l + m
 *    (l = 0..3, bits 2 l).  Dotted with Q8_K.
 *  - TQ1_0: 256 ternary values packed 5 per byte as a fixed-point fraction (byte = ceil(t * 256 / 243) for the
 *    base-3 number t of the trits, first trit most significant): trit k of a byte q is ((uint8_t)(q * 3^k) * 3) >> 8.
 *    Bytes 0..31 hold elements m + 32 k (k = 0..4), bytes 32..47 elements 160 + m + 16 k, the 4 qh bytes (4 trits
 *    each, the fifth is 0) elements 240 + j + 4 k.  Dotted with Q8_K.
 *
 * Dot products: exact integer sums per block (IQ4_XS: the sub-block sums times their integer scales, summed over
 * the 256-block) scaled by the blocks' float scales and summed in float, in block order; every SIMD kernel keeps
 * the integer part exact and the WebAssembly ones the float order too.
 *
 * Quantizers: llama-quantize's without an importance matrix (quantize_iq4_nl / quantize_iq4_xs with no weights:
 * 7 trial scales either side, values weighted by x^2; quantize_row_tq{1,2}_0_ref), step for step so the bytes
 * equal llama.cpp's.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <math.h>
#include <string.h>

static const int8_t k_iq4nl[16] = EMB_IQ4NL_VALUES;

_Static_assert(sizeof(block_iq4_nl) == 18 && sizeof(block_iq4_xs) == 136 && sizeof(block_tq1_0) == 54 &&
                   sizeof(block_tq2_0) == 66,
               "iq4 / ternary block sizes");

static inline uint16_t iq_load_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The 6-bit scale of sub-block ib (0..7) of an IQ4_XS block, minus 32. */
static inline int iq4_xs_scale(const block_iq4_xs *b, int ib) {
    const int lo = (b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
    const int hi = (iq_load_u16(&b->scales_h) >> (2 * ib)) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Trit k (0..4) of a TQ1_0 byte: 0, 1 or 2. */
static inline int tq1_trit(uint8_t q, int k) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t v = (uint8_t)(q * pow3[k]);
    return ((uint16_t)v * 3) >> 8;
}

/* ---------------------------------------------------------------------------------------------
 * to_float
 * --------------------------------------------------------------------------------------------- */

void emb_to_float_iq4_nl(const void *src, float *dst, int64_t n) {
    const block_iq4_nl *x = (const block_iq4_nl *)src;
    for (int64_t i = 0; i < n / QK4_NL; i++, dst += QK4_NL) {
        const float d = emb_f16_to_f32(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            dst[j] = d * (float)k_iq4nl[x[i].qs[j] & 0x0f];
            dst[j + QK4_NL / 2] = d * (float)k_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

void emb_to_float_iq4_xs(const void *src, float *dst, int64_t n) {
    const block_iq4_xs *x = (const block_iq4_xs *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++, dst += 32) {
            const float dl = d * (float)iq4_xs_scale(&x[i], ib);
            const uint8_t *q = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                dst[j] = dl * (float)k_iq4nl[q[j] & 0x0f];
                dst[j + 16] = dl * (float)k_iq4nl[q[j] >> 4];
            }
        }
    }
}

void emb_to_float_tq1_0(const void *src, float *dst, int64_t n) {
    const block_tq1_0 *x = (const block_tq1_0 *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d);
        for (int k = 0; k < 5; k++) {
            for (int m = 0; m < 32; m++) *dst++ = (float)(tq1_trit(x[i].qs[m], k) - 1) * d;
        }
        for (int k = 0; k < 5; k++) {
            for (int m = 0; m < 16; m++) *dst++ = (float)(tq1_trit(x[i].qs[32 + m], k) - 1) * d;
        }
        for (int k = 0; k < 4; k++) {
            for (int j = 0; j < 4; j++) *dst++ = (float)(tq1_trit(x[i].qh[j], k) - 1) * d;
        }
    }
}

void emb_to_float_tq2_0(const void *src, float *dst, int64_t n) {
    const block_tq2_0 *x = (const block_tq2_0 *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d);
        for (int j = 0; j < 64; j += 32) {
            for (int l = 0; l < 4; l++) {
                for (int m = 0; m < 32; m++) *dst++ = (float)(((x[i].qs[j + m] >> (2 * l)) & 3) - 1) * d;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * vec_dot
 * --------------------------------------------------------------------------------------------- */

void emb_vec_dot_iq4_nl_q8_0(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_nl *x = (const block_iq4_nl *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        int isum = 0;
        for (int j = 0; j < QK4_NL / 2; j++) {
            isum += k_iq4nl[x[i].qs[j] & 0x0f] * y[i].qs[j] + k_iq4nl[x[i].qs[j] >> 4] * y[i].qs[j + QK4_NL / 2];
        }
        sum += (float)isum * (emb_f16_to_f32(x[i].d) * emb_f16_to_f32(y[i].d));
    }
    *s = sum;
}

void emb_vec_dot_iq4_xs_q8_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = (const block_iq4_xs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *q = x[i].qs + 16 * ib;
            const int8_t *q8 = y[i].qs + 32 * ib;
            int sub = 0;
            for (int j = 0; j < 16; j++) sub += k_iq4nl[q[j] & 0x0f] * q8[j] + k_iq4nl[q[j] >> 4] * q8[j + 16];
            isum += iq4_xs_scale(&x[i], ib) * sub;
        }
        sum += y[i].d * emb_f16_to_f32(x[i].d) * (float)isum;
    }
    *s = sum;
}

void emb_vec_dot_tq1_0_q8_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq1_0 *x = (const block_tq1_0 *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int isum = 0;
        for (int k = 0; k < 5; k++) {
            for (int m = 0; m < 32; m++) isum += (tq1_trit(x[i].qs[m], k) - 1) * *q8++;
        }
        for (int k = 0; k < 5; k++) {
            for (int m = 0; m < 16; m++) isum += (tq1_trit(x[i].qs[32 + m], k) - 1) * *q8++;
        }
        for (int k = 0; k < 4; k++) {
            for (int j = 0; j < 4; j++) isum += (tq1_trit(x[i].qh[j], k) - 1) * *q8++;
        }
        sum += y[i].d * emb_f16_to_f32(x[i].d) * (float)isum;
    }
    *s = sum;
}

void emb_vec_dot_tq2_0_q8_k(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq2_0 *x = (const block_tq2_0 *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int isum = 0;
        for (int j = 0; j < 64; j += 32) {
            for (int l = 0; l < 4; l++) {
                for (int m = 0; m < 32; m++) isum += (((x[i].qs[j + m] >> (2 * l)) & 3) - 1) * *q8++;
            }
        }
        sum += y[i].d * emb_f16_to_f32(x[i].d) * (float)isum;
    }
    *s = sum;
}

/* ---------------------------------------------------------------------------------------------
 * Quantizers (llama-quantize without an importance matrix)
 * --------------------------------------------------------------------------------------------- */

#define IQ_GROUP_MAX_EPS 1e-15f
#define IQ4_NTRY 7

static inline int iq_nearest_int(float f) {
    const float v = f + 12582912.0f;
    uint32_t i;
    memcpy(&i, &v, sizeof i);
    return (int)(i & 0x007fffffu) - 0x00400000;
}

/* The index of the table value nearest to x (ties to the upper one, as ggml's best_index_int8). */
static int iq4_best_index(float x) {
    if (x <= k_iq4nl[0]) return 0;
    if (x >= k_iq4nl[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < k_iq4nl[mid]) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    return x - k_iq4nl[hi - 1] < k_iq4nl[hi] - x ? hi - 1 : hi;
}

/* The least-squares scale (weights x^2) of 32 values on the table, searched over 2 * IQ4_NTRY + 1 trial scales
 * around the one putting the largest magnitude on the table's end; 0 for an all-zero block. */
static float iq4_block_scale(const float *xb) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < IQ_GROUP_MAX_EPS) return 0.0f;
    float d = -max / (float)k_iq4nl[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; j++) {
        const float q = (float)k_iq4nl[iq4_best_index(id * xb[j])];
        const float w = xb[j] * xb[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -IQ4_NTRY; itry <= IQ4_NTRY; itry++) {
        id = (float)(itry + k_iq4nl[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            const float q = (float)k_iq4nl[iq4_best_index(id * xb[j])];
            const float w = xb[j] * xb[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* 32 indices (element j and j + 16 per byte) of values xb scaled by id. */
static void iq4_pack(const float *xb, float id, uint8_t *qs) {
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)(iq4_best_index(id * xb[j]) | (iq4_best_index(id * xb[j + 16]) << 4));
    }
}

void emb_quantize_iq4_nl_ref(const float *x, void *dst, int64_t n) {
    block_iq4_nl *y = (block_iq4_nl *)dst;
    for (int64_t i = 0; i < n / QK4_NL; i++, x += QK4_NL) {
        const float d = iq4_block_scale(x);
        y[i].d = emb_f32_to_f16(d);
        iq4_pack(x, d ? 1 / d : 0.0f, y[i].qs);
    }
}

void emb_quantize_iq4_xs_ref(const float *x, void *dst, int64_t n) {
    block_iq4_xs *y = (block_iq4_xs *)dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float scales[QK_K / 32];
        float max_scale = 0.0f, amax_scale = 0.0f;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            scales[ib] = iq4_block_scale(x + 32 * ib);
            if (fabsf(scales[ib]) > amax_scale) {
                amax_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        /* an all-zero block gets d = -0 (ggml's -max_scale / 32), index 8 (value 1) everywhere */
        const float d = -max_scale / 32;
        const float id = d ? 1 / d : 0.0f;
        uint16_t scales_h = 0;
        y[i].d = emb_f32_to_f16(d);
        memset(y[i].scales_l, 0, sizeof y[i].scales_l);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            int l = iq_nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : (l > 31 ? 31 : l);
            const float dl = d * (float)l;
            iq4_pack(x + 32 * ib, dl ? 1 / dl : 0.0f, y[i].qs + 16 * ib);
            l += 32;
            y[i].scales_l[ib / 2] |= (uint8_t)((l & 0x0f) << (4 * (ib % 2)));
            scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
        memcpy(&y[i].scales_h, &scales_h, sizeof scales_h);
    }
}

/* round(v / d) in {-1, 0, 1} plus 1, rounding half away from zero (lroundf). */
static inline int tq_trit(float v, float id) { return (int)roundf(v * id) + 1; }

static float tq_scale(const float *x) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    return amax;
}

void emb_quantize_tq1_0_ref(const float *x, void *dst, int64_t n) {
    block_tq1_0 *y = (block_tq1_0 *)dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float d = tq_scale(x);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = emb_f32_to_f16(d);
        for (int m = 0; m < 32; m++) {
            int q = 0;
            for (int k = 0; k < 5; k++) q = q * 3 + tq_trit(x[m + 32 * k], id);
            y[i].qs[m] = (uint8_t)((q * 256 + 242) / 243);
        }
        for (int m = 0; m < 16; m++) {
            int q = 0;
            for (int k = 0; k < 5; k++) q = q * 3 + tq_trit(x[160 + m + 16 * k], id);
            y[i].qs[32 + m] = (uint8_t)((q * 256 + 242) / 243);
        }
        for (int j = 0; j < 4; j++) {
            int q = 0;
            for (int k = 0; k < 4; k++) q = q * 3 + tq_trit(x[240 + j + 4 * k], id);
            q *= 3;
            y[i].qh[j] = (uint8_t)((q * 256 + 242) / 243);
        }
    }
}

void emb_quantize_tq2_0_ref(const float *x, void *dst, int64_t n) {
    block_tq2_0 *y = (block_tq2_0 *)dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float d = tq_scale(x);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = emb_f32_to_f16(d);
        for (int j = 0; j < 64; j += 32) {
            for (int m = 0; m < 32; m++) {
                int q = 0;
                for (int l = 0; l < 4; l++) q |= (tq_trit(x[4 * j + 32 * l + m], id) & 3) << (2 * l);
                y[i].qs[j + m] = (uint8_t)q;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Unpacking for the batched matmul (gemm.c): int8 values q and a float scale per 16 (value = q * sc - mn, mn = 0)
 * --------------------------------------------------------------------------------------------- */

void emb_unpack_iq4_nl(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_iq4_nl *x = (const block_iq4_nl *)src;
    for (int64_t i = 0; i < n / QK4_NL; i++, q += 32) {
        for (int j = 0; j < 16; j++) {
            q[j] = k_iq4nl[x[i].qs[j] & 0x0f];
            q[j + 16] = k_iq4nl[x[i].qs[j] >> 4];
        }
        sc[2 * i] = sc[2 * i + 1] = emb_f16_to_f32(x[i].d);
        mn[2 * i] = mn[2 * i + 1] = 0.0f;
    }
}

void emb_unpack_iq4_xs(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_iq4_xs *x = (const block_iq4_xs *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++, q += 32) {
            const uint8_t *qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                q[j] = k_iq4nl[qs[j] & 0x0f];
                q[j + 16] = k_iq4nl[qs[j] >> 4];
            }
            const int64_t g = 16 * i + 2 * ib;
            sc[g] = sc[g + 1] = d * (float)iq4_xs_scale(&x[i], ib);
            mn[g] = mn[g + 1] = 0.0f;
        }
    }
}

void emb_unpack_tq1_0(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_tq1_0 *x = (const block_tq1_0 *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        for (int k = 0; k < 5; k++) {
            for (int m = 0; m < 32; m++) *q++ = (int8_t)(tq1_trit(x[i].qs[m], k) - 1);
        }
        for (int k = 0; k < 5; k++) {
            for (int m = 0; m < 16; m++) *q++ = (int8_t)(tq1_trit(x[i].qs[32 + m], k) - 1);
        }
        for (int k = 0; k < 4; k++) {
            for (int j = 0; j < 4; j++) *q++ = (int8_t)(tq1_trit(x[i].qh[j], k) - 1);
        }
        const float d = emb_f16_to_f32(x[i].d);
        for (int g = 0; g < QK_K / 16; g++) {
            sc[16 * i + g] = d;
            mn[16 * i + g] = 0.0f;
        }
    }
}

void emb_unpack_tq2_0(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_tq2_0 *x = (const block_tq2_0 *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        for (int j = 0; j < 64; j += 32) {
            for (int l = 0; l < 4; l++) {
                for (int m = 0; m < 32; m++) *q++ = (int8_t)(((x[i].qs[j + m] >> (2 * l)) & 3) - 1);
            }
        }
        const float d = emb_f16_to_f32(x[i].d);
        for (int g = 0; g < QK_K / 16; g++) {
            sc[16 * i + g] = d;
            mn[16 * i + g] = 0.0f;
        }
    }
}
