/*
 * quants_iq_grid.c - the grid-based I-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M): scalar
 * dequantization and the scalar twins of their dot products against Q8_K.
 *
 * Block layouts and grids are ggml's (the tables are generated into iq_grids.c); the code is ours.  In every type a
 * super-block of 256 values is 8 groups of 32; a group of 8 values (4 for IQ3) is one grid point whose elements are
 * small positive magnitudes (IQ1: -1, 0, 1), with a sign per element (IQ2_XXS/XS, IQ3_XXS: 7 stored sign bits, the
 * eighth their parity, through emb_ksigns_iq2xs; IQ2_S, IQ3_S: one sign bit each) and an odd integer scale per
 * group of 32 or 16.  Dequantization follows gguf-py's (and ggml's) float operations, so it equals them bit for bit.
 *
 * Dot products: the integer products of a super-block are summed exactly (each group times its odd integer scale),
 * then scaled in float once per super-block, as ggml's reference dots do; the SIMD levels (quants_iq_grid_<arch>.c)
 * compute the same integers and the same float expressions, so every level is bit-identical to these.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <string.h>

#define F16(h) emb_f16_to_f32(h)

static inline uint32_t iq_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint16_t iq_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Element j of an 8-byte grid point (unsigned magnitudes, or int8 for IQ1). */
static inline int g8(uint64_t g, int j) { return (int)((g >> (8 * j)) & 0xffu); }
static inline int g8s(uint64_t g, int j) { return (int)(int8_t)(uint8_t)(g >> (8 * j)); }
static inline int g4(uint32_t g, int j) { return (int)((g >> (8 * j)) & 0xffu); }

/* The f16 scale of an IQ1_M block: the top nibbles of its four scale words. */
static inline emb_f16 iq1m_scale(const block_iq1_m *b) {
    const uint16_t s0 = iq_u16(b->scales), s1 = iq_u16(b->scales + 2), s2 = iq_u16(b->scales + 4);
    const uint16_t s3 = iq_u16(b->scales + 6);
    return (emb_f16)((s0 >> 12) | ((s1 >> 8) & 0x00f0) | ((s2 >> 4) & 0x0f00) | (s3 & 0xf000));
}

/* ---------------------------------------------------------------------------------------------
 * Dequantization
 * --------------------------------------------------------------------------------------------- */

void emb_to_float_iq2_xxs(const void *src, float *y, int64_t n) {
    const block_iq2_xxs *x = (const block_iq2_xxs *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < 8; ib++) {
            const uint32_t idx = iq_u32(x[i].qs + 4 * ib), aux = iq_u32(x[i].qs + 4 * ib + 2);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                const uint64_t g = emb_iq2xxs_grid[(idx >> (8 * l)) & 0xff];
                const uint8_t signs = emb_ksigns_iq2xs[(aux >> (7 * l)) & 127];
                for (int j = 0; j < 8; j++) *y++ = db * (float)g8(g, j) * ((signs >> j) & 1 ? -1.0f : 1.0f);
            }
        }
    }
}

void emb_to_float_iq2_xs(const void *src, float *y, int64_t n) {
    const block_iq2_xs *x = (const block_iq2_xs *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < 8; ib++) {
            const float db[2] = {d * (0.5f + (float)(x[i].scales[ib] & 0x0f)) * 0.25f,
                                 d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++) {
                const uint16_t q = x[i].qs[4 * ib + l];
                const uint64_t g = emb_iq2xs_grid[q & 511];
                const uint8_t signs = emb_ksigns_iq2xs[q >> 9];
                for (int j = 0; j < 8; j++) *y++ = db[l / 2] * (float)g8(g, j) * ((signs >> j) & 1 ? -1.0f : 1.0f);
            }
        }
    }
}

void emb_to_float_iq2_s(const void *src, float *y, int64_t n) {
    const block_iq2_s *x = (const block_iq2_s *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + QK_K / 8;
        for (int ib = 0; ib < 8; ib++, qs += 4, signs += 4) {
            const float db[2] = {d * (0.5f + (float)(x[i].scales[ib] & 0x0f)) * 0.25f,
                                 d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++) {
                const uint64_t g = emb_iq2s_grid[qs[l] | ((x[i].qh[ib] << (8 - 2 * l)) & 0x300)];
                for (int j = 0; j < 8; j++) *y++ = db[l / 2] * (float)g8(g, j) * ((signs[l] >> j) & 1 ? -1.0f : 1.0f);
            }
        }
    }
}

void emb_to_float_iq3_xxs(const void *src, float *y, int64_t n) {
    const block_iq3_xxs *x = (const block_iq3_xxs *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        const uint8_t *q3 = x[i].qs, *gas = x[i].qs + QK_K / 4;
        for (int ib = 0; ib < 8; ib++, q3 += 8) {
            const uint32_t aux = iq_u32(gas + 4 * ib);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++) {
                const uint8_t signs = emb_ksigns_iq2xs[(aux >> (7 * l)) & 127];
                const uint32_t g1 = emb_iq3xxs_grid[q3[2 * l]], g2 = emb_iq3xxs_grid[q3[2 * l + 1]];
                for (int j = 0; j < 4; j++) *y++ = db * (float)g4(g1, j) * ((signs >> j) & 1 ? -1.0f : 1.0f);
                for (int j = 0; j < 4; j++) *y++ = db * (float)g4(g2, j) * ((signs >> (j + 4)) & 1 ? -1.0f : 1.0f);
            }
        }
    }
}

void emb_to_float_iq3_s(const void *src, float *y, int64_t n) {
    const block_iq3_s *x = (const block_iq3_s *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        const uint8_t *qs = x[i].qs, *signs = x[i].signs;
        for (int ib = 0; ib < 8; ib++, qs += 8, signs += 4) {
            const int sc = ib & 1 ? x[i].scales[ib / 2] >> 4 : x[i].scales[ib / 2] & 0x0f;
            const float db = d * (float)(1 + 2 * sc);
            const int qh = x[i].qh[ib];
            for (int l = 0; l < 4; l++) {
                const uint32_t g1 = emb_iq3s_grid[qs[2 * l] | ((qh << (8 - 2 * l)) & 256)];
                const uint32_t g2 = emb_iq3s_grid[qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)];
                for (int j = 0; j < 4; j++) *y++ = db * (float)g4(g1, j) * ((signs[l] >> j) & 1 ? -1.0f : 1.0f);
                for (int j = 0; j < 4; j++) *y++ = db * (float)g4(g2, j) * ((signs[l] >> (j + 4)) & 1 ? -1.0f : 1.0f);
            }
        }
    }
}

void emb_to_float_iq1_s(const void *src, float *y, int64_t n) {
    const block_iq1_s *x = (const block_iq1_s *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < 8; ib++) {
            const int qh = x[i].qh[ib];
            const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -EMB_IQ1_DELTA : EMB_IQ1_DELTA;
            for (int l = 0; l < 4; l++) {
                const uint64_t g = emb_iq1s_grid[x[i].qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)];
                for (int j = 0; j < 8; j++) *y++ = dl * ((float)g8s(g, j) + delta);
            }
        }
    }
}

void emb_to_float_iq1_m(const void *src, float *y, int64_t n) {
    const block_iq1_m *x = (const block_iq1_m *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(iq1m_scale(&x[i]));
        for (int ib = 0; ib < 8; ib++) {
            const uint16_t sc = iq_u16(x[i].scales + 2 * (ib / 2));
            const float dl[2] = {d * (float)(2 * ((sc >> (6 * (ib % 2))) & 7) + 1),
                                 d * (float)(2 * ((sc >> (6 * (ib % 2) + 3)) & 7) + 1)};
            for (int l = 0; l < 4; l++) {
                const int qh = x[i].qh[2 * ib + l / 2] >> (4 * (l % 2));
                const uint64_t g = emb_iq1s_grid[x[i].qs[4 * ib + l] | ((qh & 7) << 8)];
                const float delta = qh & 8 ? -EMB_IQ1_DELTA : EMB_IQ1_DELTA;
                for (int j = 0; j < 8; j++) *y++ = dl[l / 2] * ((float)g8s(g, j) + delta);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Dot products against Q8_K (scalar twins)
 * --------------------------------------------------------------------------------------------- */

/* sum_j g[j] * q8[j] * sign_j for an 8-element point with sign bits `signs`. */
static inline int dot8_signed(uint64_t g, uint8_t signs, const int8_t *q8) {
    int s = 0;
    for (int j = 0; j < 8; j++) s += g8(g, j) * q8[j] * ((signs >> j) & 1 ? -1 : 1);
    return s;
}

static inline int dot4_signed(uint32_t g, unsigned signs, const int8_t *q8) {
    int s = 0;
    for (int j = 0; j < 4; j++) s += g4(g, j) * q8[j] * ((signs >> j) & 1 ? -1 : 1);
    return s;
}

void emb_vec_dot_iq2_xxs_q8_k_scalar(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xxs *x = (const block_iq2_xxs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++) {
            const uint32_t idx = iq_u32(x[i].qs + 4 * ib), aux = iq_u32(x[i].qs + 4 * ib + 2);
            int sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8) {
                sumi += dot8_signed(emb_iq2xxs_grid[(idx >> (8 * l)) & 0xff], emb_ksigns_iq2xs[(aux >> (7 * l)) & 127], q8);
            }
            bsum += sumi * (int)(2 * (aux >> 28) + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void emb_vec_dot_iq2_xs_q8_k_scalar(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xs *x = (const block_iq2_xs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++) {
            int sumi[2] = {0, 0};
            for (int l = 0; l < 4; l++, q8 += 8) {
                const uint16_t q = x[i].qs[4 * ib + l];
                sumi[l / 2] += dot8_signed(emb_iq2xs_grid[q & 511], emb_ksigns_iq2xs[q >> 9], q8);
            }
            bsum += sumi[0] * (2 * (x[i].scales[ib] & 0x0f) + 1) + sumi[1] * (2 * (x[i].scales[ib] >> 4) + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void emb_vec_dot_iq2_s_q8_k_scalar(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_s *x = (const block_iq2_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + QK_K / 8;
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++, qs += 4, signs += 4) {
            int sumi[2] = {0, 0};
            for (int l = 0; l < 4; l++, q8 += 8) {
                sumi[l / 2] += dot8_signed(emb_iq2s_grid[qs[l] | ((x[i].qh[ib] << (8 - 2 * l)) & 0x300)], signs[l], q8);
            }
            bsum += sumi[0] * (2 * (x[i].scales[ib] & 0x0f) + 1) + sumi[1] * (2 * (x[i].scales[ib] >> 4) + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void emb_vec_dot_iq3_xxs_q8_k_scalar(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_xxs *x = (const block_iq3_xxs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        const uint8_t *q3 = x[i].qs, *gas = x[i].qs + QK_K / 4;
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++, q3 += 8) {
            const uint32_t aux = iq_u32(gas + 4 * ib);
            int sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8) {
                const unsigned signs = emb_ksigns_iq2xs[(aux >> (7 * l)) & 127];
                sumi += dot4_signed(emb_iq3xxs_grid[q3[2 * l]], signs, q8);
                sumi += dot4_signed(emb_iq3xxs_grid[q3[2 * l + 1]], signs >> 4, q8 + 4);
            }
            bsum += sumi * (int)(2 * (aux >> 28) + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = 0.25f * sumf;
}

void emb_vec_dot_iq3_s_q8_k_scalar(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_s *x = (const block_iq3_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        const uint8_t *qs = x[i].qs, *signs = x[i].signs;
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++, qs += 8, signs += 4) {
            const int qh = x[i].qh[ib];
            int sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8) {
                sumi += dot4_signed(emb_iq3s_grid[qs[2 * l] | ((qh << (8 - 2 * l)) & 256)], signs[l], q8);
                sumi += dot4_signed(emb_iq3s_grid[qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)], signs[l] >> 4u, q8 + 4);
            }
            const int sc = ib & 1 ? x[i].scales[ib / 2] >> 4 : x[i].scales[ib / 2] & 0x0f;
            bsum += sumi * (2 * sc + 1);
        }
        sumf += d * (float)bsum;
    }
    *s = sumf;
}

void emb_vec_dot_iq1_s_q8_k_scalar(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_s *x = (const block_iq1_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int sumi = 0, sumi1 = 0;
        for (int ib = 0; ib < 8; ib++) {
            const int qh = x[i].qh[ib];
            int lsum = 0;
            for (int l = 0; l < 4; l++, q8 += 8) {
                const uint64_t g = emb_iq1s_grid[x[i].qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)];
                for (int j = 0; j < 8; j++) lsum += g8s(g, j) * q8[j];
            }
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            sumi += ls * lsum;
            sumi1 += ls * (qh & 0x8000 ? -1 : 1) * (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]);
        }
        sumf += F16(x[i].d) * y[i].d * ((float)sumi + EMB_IQ1_DELTA * (float)sumi1);
    }
    *s = sumf;
}

void emb_vec_dot_iq1_m_q8_k_scalar(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_m *x = (const block_iq1_m *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int sumi1 = 0, sumi2 = 0;
        for (int ib = 0; ib < 8; ib++) {
            const uint16_t sc = iq_u16(x[i].scales + 2 * (ib / 2));
            const int ls[2] = {2 * ((sc >> (6 * (ib % 2))) & 7) + 1, 2 * ((sc >> (6 * (ib % 2) + 3)) & 7) + 1};
            for (int l = 0; l < 4; l++, q8 += 8) {
                const int qh = x[i].qh[2 * ib + l / 2] >> (4 * (l % 2));
                const uint64_t g = emb_iq1s_grid[x[i].qs[4 * ib + l] | ((qh & 7) << 8)];
                int lsum1 = 0, lsum2 = 0;
                for (int j = 0; j < 8; j++) {
                    lsum1 += g8s(g, j) * q8[j];
                    lsum2 += q8[j];
                }
                sumi1 += ls[l / 2] * lsum1;
                sumi2 += ls[l / 2] * (qh & 8 ? -lsum2 : lsum2);
            }
        }
        sumf += F16(iq1m_scale(&x[i])) * y[i].d * ((float)sumi1 + EMB_IQ1_DELTA * (float)sumi2);
    }
    *s = sumf;
}

_Static_assert(sizeof(block_iq2_xxs) == 66 && sizeof(block_iq2_xs) == 74 && sizeof(block_iq2_s) == 82 &&
                   sizeof(block_iq3_xxs) == 98 && sizeof(block_iq3_s) == 110 && sizeof(block_iq1_s) == 50 &&
                   sizeof(block_iq1_m) == 56,
               "grid I-quant block sizes");

/* ---------------------------------------------------------------------------------------------
 * Unpacking for the batched matmul (gemm.c): value = q * sc per 16 values, exactly the dequantized value (the same
 * one rounding of the same product).  IQ1: q = 8 * grid +- 1 and sc = dl / 8, so q * sc = dl * (grid +- 1/8).
 * --------------------------------------------------------------------------------------------- */

static void put_scales(float *sc, float *mn, int64_t g, float s0, float s1) {
    sc[g] = s0;
    sc[g + 1] = s1;
    mn[g] = 0.0f;
    mn[g + 1] = 0.0f;
}

static inline void put_signed8(int8_t *q, uint64_t g, unsigned signs) {
    for (int j = 0; j < 8; j++) q[j] = (int8_t)((signs >> j) & 1 ? -g8(g, j) : g8(g, j));
}

static inline void put_signed4(int8_t *q, uint32_t g, unsigned signs) {
    for (int j = 0; j < 4; j++) q[j] = (int8_t)((signs >> j) & 1 ? -g4(g, j) : g4(g, j));
}

void emb_unpack_iq2_xxs(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_iq2_xxs *x = (const block_iq2_xxs *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < 8; ib++, q += 32) {
            const uint32_t idx = iq_u32(x[i].qs + 4 * ib), aux = iq_u32(x[i].qs + 4 * ib + 2);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                put_signed8(q + 8 * l, emb_iq2xxs_grid[(idx >> (8 * l)) & 0xff], emb_ksigns_iq2xs[(aux >> (7 * l)) & 127]);
            }
            put_scales(sc, mn, i * 16 + 2 * ib, db, db);
        }
    }
}

void emb_unpack_iq2_xs(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_iq2_xs *x = (const block_iq2_xs *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < 8; ib++, q += 32) {
            for (int l = 0; l < 4; l++) {
                const uint16_t v = x[i].qs[4 * ib + l];
                put_signed8(q + 8 * l, emb_iq2xs_grid[v & 511], emb_ksigns_iq2xs[v >> 9]);
            }
            put_scales(sc, mn, i * 16 + 2 * ib, d * (0.5f + (float)(x[i].scales[ib] & 0x0f)) * 0.25f,
                       d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f);
        }
    }
}

void emb_unpack_iq2_s(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_iq2_s *x = (const block_iq2_s *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + QK_K / 8;
        for (int ib = 0; ib < 8; ib++, q += 32, qs += 4, signs += 4) {
            for (int l = 0; l < 4; l++) {
                put_signed8(q + 8 * l, emb_iq2s_grid[qs[l] | ((x[i].qh[ib] << (8 - 2 * l)) & 0x300)], signs[l]);
            }
            put_scales(sc, mn, i * 16 + 2 * ib, d * (0.5f + (float)(x[i].scales[ib] & 0x0f)) * 0.25f,
                       d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f);
        }
    }
}

void emb_unpack_iq3_xxs(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_iq3_xxs *x = (const block_iq3_xxs *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        const uint8_t *q3 = x[i].qs, *gas = x[i].qs + QK_K / 4;
        for (int ib = 0; ib < 8; ib++, q += 32, q3 += 8) {
            const uint32_t aux = iq_u32(gas + 4 * ib);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++) {
                const unsigned signs = emb_ksigns_iq2xs[(aux >> (7 * l)) & 127];
                put_signed4(q + 8 * l, emb_iq3xxs_grid[q3[2 * l]], signs);
                put_signed4(q + 8 * l + 4, emb_iq3xxs_grid[q3[2 * l + 1]], signs >> 4);
            }
            put_scales(sc, mn, i * 16 + 2 * ib, db, db);
        }
    }
}

void emb_unpack_iq3_s(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_iq3_s *x = (const block_iq3_s *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        const uint8_t *qs = x[i].qs, *signs = x[i].signs;
        for (int ib = 0; ib < 8; ib++, q += 32, qs += 8, signs += 4) {
            const int qh = x[i].qh[ib];
            for (int l = 0; l < 4; l++) {
                put_signed4(q + 8 * l, emb_iq3s_grid[qs[2 * l] | ((qh << (8 - 2 * l)) & 256)], signs[l]);
                put_signed4(q + 8 * l + 4, emb_iq3s_grid[qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)], signs[l] >> 4u);
            }
            const int s = ib & 1 ? x[i].scales[ib / 2] >> 4 : x[i].scales[ib / 2] & 0x0f;
            const float db = d * (float)(1 + 2 * s);
            put_scales(sc, mn, i * 16 + 2 * ib, db, db);
        }
    }
}

void emb_unpack_iq1_s(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_iq1_s *x = (const block_iq1_s *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(x[i].d);
        for (int ib = 0; ib < 8; ib++, q += 32) {
            const int qh = x[i].qh[ib];
            const int delta = qh & 0x8000 ? -1 : 1;
            for (int l = 0; l < 4; l++) {
                const uint64_t g = emb_iq1s_grid[x[i].qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)];
                for (int j = 0; j < 8; j++) q[8 * l + j] = (int8_t)(8 * g8s(g, j) + delta);
            }
            const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1) * EMB_IQ1_DELTA;
            put_scales(sc, mn, i * 16 + 2 * ib, dl, dl);
        }
    }
}

void emb_unpack_iq1_m(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_iq1_m *x = (const block_iq1_m *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = F16(iq1m_scale(&x[i]));
        for (int ib = 0; ib < 8; ib++, q += 32) {
            const uint16_t s = iq_u16(x[i].scales + 2 * (ib / 2));
            for (int l = 0; l < 4; l++) {
                const int qh = x[i].qh[2 * ib + l / 2] >> (4 * (l % 2));
                const uint64_t g = emb_iq1s_grid[x[i].qs[4 * ib + l] | ((qh & 7) << 8)];
                for (int j = 0; j < 8; j++) q[8 * l + j] = (int8_t)(8 * g8s(g, j) + (qh & 8 ? -1 : 1));
            }
            put_scales(sc, mn, i * 16 + 2 * ib, d * (float)(2 * ((s >> (6 * (ib % 2))) & 7) + 1) * EMB_IQ1_DELTA,
                       d * (float)(2 * ((s >> (6 * (ib % 2) + 3)) & 7) + 1) * EMB_IQ1_DELTA);
        }
    }
}
