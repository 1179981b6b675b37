/*
 * gemm.c - batched matmul (prompt processing) for the integer-valued weight types.
 *
 * Every quantized type stores, per group of 16 (or 32) weights, small integers q with value = q * scale - min.
 * For a batch, each thread unpacks a few weight rows once into int8 + per-16 scale/min ("unpacked rows") and
 * runs them against every token's activations, quantized to int8 per 32 like Q8_0.  The unpacking is exact,
 * so results equal the per-type dot products up to float summation order; its cost is paid once per row and
 * spread over the whole batch.  One micro-kernel per ISA (scalar twin, AVX2, AVX-512 VNNI, WASM SIMD128) serves
 * all types.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define EMB_X86 1
#else
#define EMB_X86 0
#endif

#if (defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__)
#include <wasm_simd128.h>
#define EMB_WASM_SIMD 1
#else
#define EMB_WASM_SIMD 0
#endif

#define G 16         /* weights per scale group */
#define AB 32        /* activations per quantization block */
#define ROW_TILE 4   /* weight rows unpacked together */
#define TOK_TILE 4   /* tokens per micro-kernel call */

/* ---------------------------------------------------------------------------------------------- */
/* Unpacking: one row of a type -> q[n] int8, sc[n/16], mn[n/16] with value = q * sc - mn.           */

static void put_groups(float *sc, float *mn, int64_t g, int count, float s, float m) {
    for (int i = 0; i < count; i++) {
        sc[g + i] = s;
        mn[g + i] = m;
    }
}

static void unpack_q4_0(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q4_0 *b = (const block_q4_0 *)src;
    for (int64_t i = 0; i < n / QK4_0; i++, q += 32) {
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((b[i].qs[j] & 0xF) - 8);
            q[j + 16] = (int8_t)((b[i].qs[j] >> 4) - 8);
        }
        put_groups(sc, mn, 2 * i, 2, emb_f16_to_f32(b[i].d), 0.0f);
    }
}

static void unpack_q4_1(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q4_1 *b = (const block_q4_1 *)src;
    for (int64_t i = 0; i < n / QK4_1; i++, q += 32) {
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(b[i].qs[j] & 0xF);
            q[j + 16] = (int8_t)(b[i].qs[j] >> 4);
        }
        put_groups(sc, mn, 2 * i, 2, emb_f16_to_f32(b[i].d), -emb_f16_to_f32(b[i].m));
    }
}

static void unpack_q5_0(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q5_0 *b = (const block_q5_0 *)src;
    for (int64_t i = 0; i < n / QK5_0; i++, q += 32) {
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            q[j] = (int8_t)(((b[i].qs[j] & 0xF) | h0) - 16);
            q[j + 16] = (int8_t)(((b[i].qs[j] >> 4) | h1) - 16);
        }
        put_groups(sc, mn, 2 * i, 2, emb_f16_to_f32(b[i].d), 0.0f);
    }
}

static void unpack_q5_1(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q5_1 *b = (const block_q5_1 *)src;
    for (int64_t i = 0; i < n / QK5_1; i++, q += 32) {
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            q[j] = (int8_t)((b[i].qs[j] & 0xF) | h0);
            q[j + 16] = (int8_t)((b[i].qs[j] >> 4) | h1);
        }
        put_groups(sc, mn, 2 * i, 2, emb_f16_to_f32(b[i].d), -emb_f16_to_f32(b[i].m));
    }
}

static void unpack_q8_0(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q8_0 *b = (const block_q8_0 *)src;
    for (int64_t i = 0; i < n / QK8_0; i++, q += 32) {
        memcpy(q, b[i].qs, 32);
        put_groups(sc, mn, 2 * i, 2, emb_f16_to_f32(b[i].d), 0.0f);
    }
}

static void unpack_q2_K(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q2_K *b = (const block_q2_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(b[i].d), dmin = emb_f16_to_f32(b[i].dmin);
        const uint8_t *qs = b[i].qs;
        int g = 0;
        for (int half = 0; half < 2; half++, qs += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++, g++, q += 16) {
                    const uint8_t s = b[i].scales[g];
                    for (int l = 0; l < 16; l++) q[l] = (int8_t)((qs[l + 16 * part] >> shift) & 3);
                    put_groups(sc, mn, i * 16 + g, 1, d * (float)(s & 0xF), dmin * (float)(s >> 4));
                }
            }
        }
    }
}

static void q3_K_scales(const uint8_t *packed, int8_t *out) {
    uint32_t aux[4];
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    memcpy(aux, packed, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    memcpy(out, aux, 16);
}

static void unpack_q3_K(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q3_K *b = (const block_q3_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(b[i].d);
        int8_t scales[16];
        q3_K_scales(b[i].scales, scales);
        const uint8_t *qs = b[i].qs;
        uint8_t m = 1;
        int g = 0;
        for (int half = 0; half < 2; half++, qs += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int part = 0; part < 2; part++, g++, q += 16) {
                    for (int l = 0; l < 16; l++) {
                        const int idx = l + 16 * part;
                        q[l] = (int8_t)(((qs[idx] >> shift) & 3) - ((b[i].hmask[idx] & m) ? 0 : 4));
                    }
                    put_groups(sc, mn, i * 16 + g, 1, d * (float)(scales[g] - 32), 0.0f);
                }
            }
        }
    }
}

static void k4_scale_min(int j, const uint8_t *s, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *d = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void unpack_q4_K(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q4_K *b = (const block_q4_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(b[i].d), dmin = emb_f16_to_f32(b[i].dmin);
        const uint8_t *qs = b[i].qs;
        for (int j = 0; j < 4; j++, qs += 32) {
            uint8_t s0, m0, s1, m1;
            k4_scale_min(2 * j, b[i].scales, &s0, &m0);
            k4_scale_min(2 * j + 1, b[i].scales, &s1, &m1);
            for (int l = 0; l < 32; l++) q[l] = (int8_t)(qs[l] & 0xF);
            for (int l = 0; l < 32; l++) q[32 + l] = (int8_t)(qs[l] >> 4);
            q += 64;
            put_groups(sc, mn, i * 16 + 4 * j, 2, d * s0, dmin * m0);
            put_groups(sc, mn, i * 16 + 4 * j + 2, 2, d * s1, dmin * m1);
        }
    }
}

static void unpack_q5_K(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q5_K *b = (const block_q5_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(b[i].d), dmin = emb_f16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 4; j++, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t s0, m0, s1, m1;
            k4_scale_min(2 * j, b[i].scales, &s0, &m0);
            k4_scale_min(2 * j + 1, b[i].scales, &s1, &m1);
            for (int l = 0; l < 32; l++) q[l] = (int8_t)((ql[l] & 0xF) + ((b[i].qh[l] & u1) ? 16 : 0));
            for (int l = 0; l < 32; l++) q[32 + l] = (int8_t)((ql[l] >> 4) + ((b[i].qh[l] & u2) ? 16 : 0));
            q += 64;
            put_groups(sc, mn, i * 16 + 4 * j, 2, d * s0, dmin * m0);
            put_groups(sc, mn, i * 16 + 4 * j + 2, 2, d * s1, dmin * m1);
        }
    }
}

static void unpack_q6_K(const void *src, int64_t n, int8_t *q, float *sc, float *mn) {
    const block_q6_K *b = (const block_q6_K *)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *s = b[i].scales;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, s += 8, q += 128) {
            for (int l = 0; l < 32; l++) {
                q[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                q[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
            for (int g = 0; g < 8; g++) put_groups(sc, mn, i * 16 + half * 8 + g, 1, d * (float)s[g], 0.0f);
        }
    }
}

typedef void (*unpack_fn)(const void *src, int64_t n, int8_t *q, float *sc, float *mn);

#if EMB_X86
/* The two most common layouts unpacked 32 bytes at a time (same results as the scalar twins above). */
__attribute__((target("avx2"))) static inline __m256i nibbles_avx2(const uint8_t *qs) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
}

__attribute__((target("avx2"))) static void unpack_q5_0_avx2(const void *src, int64_t n, int8_t *q, float *sc,
                                                              float *mn) {
    const block_q5_0 *b = (const block_q5_0 *)src;
    const __m256i shuffle = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                             3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    for (int64_t i = 0; i < n / QK5_0; i++, q += 32) {
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        /* byte j gets 0x10 when bit j of qh is set */
        const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuffle);
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
        const __m256i v = _mm256_or_si256(nibbles_avx2(b[i].qs), _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
        _mm256_storeu_si256((__m256i *)q, _mm256_sub_epi8(v, _mm256_set1_epi8(16)));
        put_groups(sc, mn, 2 * i, 2, emb_f16_to_f32(b[i].d), 0.0f);
    }
}

__attribute__((target("avx2"))) static void unpack_q4_K_avx2(const void *src, int64_t n, int8_t *q, float *sc,
                                                              float *mn) {
    const block_q4_K *b = (const block_q4_K *)src;
    const __m256i m = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(b[i].d), dmin = emb_f16_to_f32(b[i].dmin);
        const uint8_t *qs = b[i].qs;
        for (int j = 0; j < 4; j++, qs += 32, q += 64) {
            uint8_t s0, m0, s1, m1;
            k4_scale_min(2 * j, b[i].scales, &s0, &m0);
            k4_scale_min(2 * j + 1, b[i].scales, &s1, &m1);
            const __m256i raw = _mm256_loadu_si256((const __m256i *)qs);
            _mm256_storeu_si256((__m256i *)q, _mm256_and_si256(raw, m));
            _mm256_storeu_si256((__m256i *)(q + 32), _mm256_and_si256(_mm256_srli_epi16(raw, 4), m));
            put_groups(sc, mn, i * 16 + 4 * j, 2, d * s0, dmin * m0);
            put_groups(sc, mn, i * 16 + 4 * j + 2, 2, d * s1, dmin * m1);
        }
    }
}

__attribute__((target("avx2"))) static void unpack_q6_K_avx2(const void *src, int64_t n, int8_t *q, float *sc,
                                                              float *mn) {
    const block_q6_K *b = (const block_q6_K *)src;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *s = b[i].scales;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, s += 8, q += 128) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            const __m256i v0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m2));
            const __m256i v1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m2));
            const __m256i v2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m2));
            const __m256i v3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(h, 2), m2));
            _mm256_storeu_si256((__m256i *)q, _mm256_sub_epi8(v0, k32));
            _mm256_storeu_si256((__m256i *)(q + 32), _mm256_sub_epi8(v1, k32));
            _mm256_storeu_si256((__m256i *)(q + 64), _mm256_sub_epi8(v2, k32));
            _mm256_storeu_si256((__m256i *)(q + 96), _mm256_sub_epi8(v3, k32));
            for (int g = 0; g < 8; g++) put_groups(sc, mn, i * 16 + half * 8 + g, 1, d * (float)s[g], 0.0f);
        }
    }
}
#endif

static unpack_fn unpack_for(int type, int level, int *has_min) {
    *has_min = 0;
#if EMB_X86
    if (level == EMB_LEVEL_AVX2 || level == EMB_LEVEL_AVX512) {
        if (type == EMB_TYPE_Q5_0) return unpack_q5_0_avx2;
        if (type == EMB_TYPE_Q6_K) return unpack_q6_K_avx2;
        if (type == EMB_TYPE_Q4_K) {
            *has_min = 1;
            return unpack_q4_K_avx2;
        }
    }
#endif
    (void)level;
    switch (type) {
    case EMB_TYPE_Q4_0: return unpack_q4_0;
    case EMB_TYPE_Q4_1: *has_min = 1; return unpack_q4_1;
    case EMB_TYPE_Q5_0: return unpack_q5_0;
    case EMB_TYPE_Q5_1: *has_min = 1; return unpack_q5_1;
    case EMB_TYPE_Q8_0: return unpack_q8_0;
    case EMB_TYPE_Q2_K: *has_min = 1; return unpack_q2_K;
    case EMB_TYPE_Q3_K: return unpack_q3_K;
    case EMB_TYPE_Q4_K: *has_min = 1; return unpack_q4_K;
    case EMB_TYPE_Q5_K: *has_min = 1; return unpack_q5_K;
    case EMB_TYPE_Q6_K: return unpack_q6_K;
    /* the grid I-quants (quants_iq_grid.c) */
    case EMB_TYPE_IQ2_XXS: return emb_unpack_iq2_xxs;
    case EMB_TYPE_IQ2_XS: return emb_unpack_iq2_xs;
    case EMB_TYPE_IQ2_S: return emb_unpack_iq2_s;
    case EMB_TYPE_IQ3_XXS: return emb_unpack_iq3_xxs;
    case EMB_TYPE_IQ3_S: return emb_unpack_iq3_s;
    case EMB_TYPE_IQ1_S: return emb_unpack_iq1_s;
    case EMB_TYPE_IQ1_M: return emb_unpack_iq1_m;
    case EMB_TYPE_IQ4_NL: return emb_unpack_iq4_nl;
    case EMB_TYPE_IQ4_XS: return emb_unpack_iq4_xs;
    case EMB_TYPE_TQ1_0: return emb_unpack_tq1_0;
    case EMB_TYPE_TQ2_0: return emb_unpack_tq2_0;
    default: return NULL;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Activations: the weight type's own activation quantizer (Q8_0 or Q8_K, exactly what the per-row dot      */
/* products use), re-laid out as int8 values, a float scale per 32 (replicated from Q8_K's per-256 scale) and */
/* d * sum(q) per 16 for the min terms.                                                                       */

static void layout_from_q8_0(const block_q8_0 *b, int64_t n, int8_t *q, float *d, float *dsum) {
    for (int64_t i = 0; i < n / QK8_0; i++) {
        memcpy(q + i * QK8_0, b[i].qs, QK8_0);
        d[i] = emb_f16_to_f32(b[i].d);
        for (int g = 0; g < 2; g++) {
            int sum = 0;
            for (int l = 0; l < G; l++) sum += b[i].qs[g * G + l];
            dsum[2 * i + g] = d[i] * (float)sum;
        }
    }
}

static void layout_from_q8_K(const block_q8_K *b, int64_t n, int8_t *q, float *d, float *dsum) {
    for (int64_t i = 0; i < n / QK_K; i++) {
        memcpy(q + i * QK_K, b[i].qs, QK_K);
        for (int k = 0; k < QK_K / AB; k++) d[i * (QK_K / AB) + k] = b[i].d;
        for (int g = 0; g < QK_K / G; g++) dsum[i * (QK_K / G) + g] = b[i].d * (float)b[i].bsums[g];
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Micro-kernels: out[r * ldo + t] = sum over blocks of sc-scaled int dots (no min term).            */

typedef struct {
    const int8_t *q;    /* [rows][n] */
    const float *sc;    /* [rows][n/16] */
    const float *mn;    /* [rows][n/16], or NULL for types without a min term */
} unpacked_rows;

typedef struct {
    const int8_t *q;    /* [tok][n] */
    const float *d;     /* [tok][n/32] */
    const float *dsum;  /* [tok][n/16] */
} act_rows;

typedef void (*tile_fn)(int64_t n, const unpacked_rows *w, int nr, const act_rows *a, int64_t t0, int nt, float *out,
                        int64_t ldo);

static void tile_scalar(int64_t n, const unpacked_rows *w, int nr, const act_rows *a, int64_t t0, int nt, float *out,
                        int64_t ldo) {
    const int64_t ng = n / G;
    for (int r = 0; r < nr; r++) {
        const int8_t *wq = w->q + r * n;
        const float *ws = w->sc + r * ng;
        for (int t = 0; t < nt; t++) {
            const int8_t *aq = a->q + (t0 + t) * n;
            const float *ad = a->d + (t0 + t) * (n / AB);
            float sum = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                int isum = 0;
                for (int l = 0; l < G; l++) isum += wq[g * G + l] * aq[g * G + l];
                sum += (float)isum * (ws[g] * ad[g / 2]);
            }
            if (w->mn) {
                const float *mn = w->mn + r * ng, *ds = a->dsum + (t0 + t) * ng;
                for (int64_t g = 0; g < ng; g++) sum -= mn[g] * ds[g];
            }
            out[r * ldo + t] = sum;
        }
    }
}

/* Partial tiles repeat their last row / token so that every output is summed in the same order whatever its
 * place in the batch (a sequence's result does not depend on what it is batched with). */
static inline void tile_indices(int nr, int nt, int64_t t0, int64_t rows[ROW_TILE], int64_t toks[TOK_TILE]) {
    for (int r = 0; r < ROW_TILE; r++) rows[r] = r < nr ? r : nr - 1;
    for (int t = 0; t < TOK_TILE; t++) toks[t] = t0 + (t < nt ? t : nt - 1);
}

#if EMB_X86
/* sum_g mn[g] * ds[g] over ng (a multiple of 2) values */
__attribute__((target("avx2,fma"))) static float min_term_avx2(const float *mn, const float *ds, int64_t ng) {
    __m256 acc = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + 8 <= ng; g += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(mn + g), _mm256_loadu_ps(ds + g), acc);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float sum = _mm_cvtss_f32(h);
    for (; g < ng; g++) sum += mn[g] * ds[g];
    return sum;
}

/* out[r][t] -= sum_g mn[r][g] * dsum[t][g] for the valid part of a tile (types with a min term only). */
__attribute__((target("avx2,fma"))) static void apply_min_avx2(int64_t n, const unpacked_rows *w, int nr,
                                                                const act_rows *a, int64_t t0, int nt, float *out,
                                                                int64_t ldo) {
    if (!w->mn) return;
    const int64_t ng = n / G;
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) out[r * ldo + t] -= min_term_avx2(w->mn + r * ng, a->dsum + (t0 + t) * ng, ng);
}

__attribute__((target("avx2,fma"))) static inline __m256i dot32_avx2(__m256i w_abs, __m256i w, __m256i a) {
    const __m256i p16 = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* 4 rows x up to 4 tokens; lanes 0-3 of a 32-block's int32 sums belong to group 0, lanes 4-7 to group 1. */
__attribute__((target("avx2,fma"))) static void tile_avx2(int64_t n, const unpacked_rows *w, int nr, const act_rows *a,
                                                           int64_t t0, int nt, float *out, int64_t ldo) {
    const int64_t ng = n / G, nb = n / AB;
    int64_t rows[ROW_TILE], toks[TOK_TILE];
    tile_indices(nr, nt, t0, rows, toks);
    __m256 acc[ROW_TILE][TOK_TILE];
    for (int r = 0; r < ROW_TILE; r++)
        for (int t = 0; t < TOK_TILE; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i av[TOK_TILE];
        __m256 ad[TOK_TILE];
        for (int t = 0; t < TOK_TILE; t++) {
            av[t] = _mm256_loadu_si256((const __m256i *)(a->q + toks[t] * n + b * AB));
            ad[t] = _mm256_set1_ps(a->d[toks[t] * nb + b]);
        }
        for (int r = 0; r < ROW_TILE; r++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w->q + rows[r] * n + b * AB));
            const __m256i wa = _mm256_abs_epi8(wv);
            const float s0 = w->sc[rows[r] * ng + 2 * b], s1 = w->sc[rows[r] * ng + 2 * b + 1];
            const __m256 ws = _mm256_setr_ps(s0, s0, s0, s0, s1, s1, s1, s1);
            for (int t = 0; t < TOK_TILE; t++) {
                const __m256 p = _mm256_cvtepi32_ps(dot32_avx2(wa, wv, av[t]));
                acc[r][t] = _mm256_fmadd_ps(p, _mm256_mul_ps(ws, ad[t]), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < ROW_TILE; r++) {
        for (int t = 0; t < TOK_TILE; t++) {
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[r][t]), _mm256_extractf128_ps(acc[r][t], 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_movehdup_ps(h));
            out[r * ldo + t] = _mm_cvtss_f32(h);
        }
    }
    apply_min_avx2(n, w, nr, a, t0, nt, out, ldo);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma"))) static void tile_avx512(
    int64_t n, const unpacked_rows *w, int nr, const act_rows *a, int64_t t0, int nt, float *out, int64_t ldo) {
    if ((n / AB) % 2 != 0) {
        tile_avx2(n, w, nr, a, t0, nt, out, ldo);
        return;
    }
    const int64_t ng = n / G, nb = n / AB;
    int64_t rows[ROW_TILE], toks[TOK_TILE];
    tile_indices(nr, nt, t0, rows, toks);
    __m512 acc[ROW_TILE][TOK_TILE];
    for (int r = 0; r < ROW_TILE; r++)
        for (int t = 0; t < TOK_TILE; t++) acc[r][t] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t b = 0; b < nb; b += 2) {
        __m512i av[TOK_TILE];
        __m512 ad[TOK_TILE];
        for (int t = 0; t < TOK_TILE; t++) {
            av[t] = _mm512_loadu_si512((const void *)(a->q + toks[t] * n + b * AB));
            const float d0 = a->d[toks[t] * nb + b], d1 = a->d[toks[t] * nb + b + 1];
            ad[t] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm256_set1_ps(d0))),
                                                        _mm256_castps_pd(_mm256_set1_ps(d1)), 1));
        }
        for (int r = 0; r < ROW_TILE; r++) {
            const __m512i wv = _mm512_loadu_si512((const void *)(w->q + rows[r] * n + b * AB));
            const __m512i wa = _mm512_abs_epi8(wv);
            const __mmask64 neg = _mm512_movepi8_mask(wv);
            const float *s = w->sc + rows[r] * ng + 2 * b;
            const __m512 ws = _mm512_setr_ps(s[0], s[0], s[0], s[0], s[1], s[1], s[1], s[1], s[2], s[2], s[2], s[2],
                                             s[3], s[3], s[3], s[3]);
            for (int t = 0; t < TOK_TILE; t++) {
                const __m512i as = _mm512_mask_sub_epi8(av[t], neg, zero, av[t]);
                const __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, wa, as));
                acc[r][t] = _mm512_fmadd_ps(p, _mm512_mul_ps(ws, ad[t]), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < ROW_TILE; r++)
        for (int t = 0; t < TOK_TILE; t++) out[r * ldo + t] = _mm512_reduce_add_ps(acc[r][t]);
    apply_min_avx2(n, w, nr, a, t0, nt, out, ldo);
}
#endif

#if EMB_WASM_SIMD
/* Lane t of the result = the sum of the four lanes of v[t] (a 4x4 transpose folded into the adds). */
static inline v128_t hsum4_i32x4(v128_t v0, v128_t v1, v128_t v2, v128_t v3) {
    const v128_t s01 = wasm_i32x4_add(wasm_i32x4_shuffle(v0, v1, 0, 4, 1, 5), wasm_i32x4_shuffle(v0, v1, 2, 6, 3, 7));
    const v128_t s23 = wasm_i32x4_add(wasm_i32x4_shuffle(v2, v3, 0, 4, 1, 5), wasm_i32x4_shuffle(v2, v3, 2, 6, 3, 7));
    /* s01 = [v0 ac, v1 ac, v0 bd, v1 bd], s23 likewise */
    return wasm_i32x4_add(wasm_i32x4_shuffle(s01, s23, 0, 1, 4, 5), wasm_i32x4_shuffle(s01, s23, 2, 3, 6, 7));
}

/* 4 rows x 4 tokens with the tokens in the lanes of one f32x4 accumulator per row.  Each group of 16 is an
 * exact int32 dot (int8 widened to int16, i32x4.dot_i16x8_s), reduced to one integer per token, then
 * accumulated as tile_scalar does: sum += (float)isum * (sc * d), groups in order, the min term after.  There
 * is no fused multiply-add in SIMD128, so every output is bit for bit tile_scalar's. */
static void tile_wasm(int64_t n, const unpacked_rows *w, int nr, const act_rows *a, int64_t t0, int nt, float *out,
                      int64_t ldo) {
    const int64_t ng = n / G, nb = n / AB;
    int64_t rows[ROW_TILE], toks[TOK_TILE];
    tile_indices(nr, nt, t0, rows, toks);
    v128_t acc[ROW_TILE];
    for (int r = 0; r < ROW_TILE; r++) acc[r] = wasm_f32x4_splat(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        v128_t av[TOK_TILE][4]; /* per token: group 0 low/high 8, group 1 low/high 8, as int16 */
        for (int t = 0; t < TOK_TILE; t++) {
            const int8_t *src = a->q + toks[t] * n + b * AB;
            const v128_t a0 = wasm_v128_load(src), a1 = wasm_v128_load(src + 16);
            av[t][0] = wasm_i16x8_extend_low_i8x16(a0);
            av[t][1] = wasm_i16x8_extend_high_i8x16(a0);
            av[t][2] = wasm_i16x8_extend_low_i8x16(a1);
            av[t][3] = wasm_i16x8_extend_high_i8x16(a1);
        }
        const v128_t ad = wasm_f32x4_make(a->d[toks[0] * nb + b], a->d[toks[1] * nb + b], a->d[toks[2] * nb + b],
                                          a->d[toks[3] * nb + b]);
        for (int r = 0; r < ROW_TILE; r++) {
            const int8_t *src = w->q + rows[r] * n + b * AB;
            const v128_t w0 = wasm_v128_load(src), w1 = wasm_v128_load(src + 16);
            const v128_t w0l = wasm_i16x8_extend_low_i8x16(w0), w0h = wasm_i16x8_extend_high_i8x16(w0);
            const v128_t w1l = wasm_i16x8_extend_low_i8x16(w1), w1h = wasm_i16x8_extend_high_i8x16(w1);
            v128_t p0[TOK_TILE], p1[TOK_TILE];
            for (int t = 0; t < TOK_TILE; t++) {
                p0[t] = wasm_i32x4_add(wasm_i32x4_dot_i16x8(w0l, av[t][0]), wasm_i32x4_dot_i16x8(w0h, av[t][1]));
                p1[t] = wasm_i32x4_add(wasm_i32x4_dot_i16x8(w1l, av[t][2]), wasm_i32x4_dot_i16x8(w1h, av[t][3]));
            }
            const v128_t i0 = hsum4_i32x4(p0[0], p0[1], p0[2], p0[3]);
            const v128_t i1 = hsum4_i32x4(p1[0], p1[1], p1[2], p1[3]);
            const float *ws = w->sc + rows[r] * ng + 2 * b;
            acc[r] = wasm_f32x4_add(acc[r], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i0),
                                                           wasm_f32x4_mul(wasm_f32x4_splat(ws[0]), ad)));
            acc[r] = wasm_f32x4_add(acc[r], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i1),
                                                           wasm_f32x4_mul(wasm_f32x4_splat(ws[1]), ad)));
        }
    }
    if (w->mn) {
        const float *ds[TOK_TILE];
        for (int t = 0; t < TOK_TILE; t++) ds[t] = a->dsum + toks[t] * ng;
        for (int r = 0; r < ROW_TILE; r++) {
            const float *mn = w->mn + rows[r] * ng;
            for (int64_t g = 0; g < ng; g++) {
                const v128_t d = wasm_f32x4_make(ds[0][g], ds[1][g], ds[2][g], ds[3][g]);
                acc[r] = wasm_f32x4_sub(acc[r], wasm_f32x4_mul(wasm_f32x4_splat(mn[g]), d));
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        float tmp[TOK_TILE];
        wasm_v128_store(tmp, acc[r]);
        for (int t = 0; t < nt; t++) out[r * ldo + t] = tmp[t];
    }
}
#endif

static tile_fn pick_tile(int level) {
#if EMB_X86
    if (level == EMB_LEVEL_AVX512) return tile_avx512;
    if (level == EMB_LEVEL_AVX2) return tile_avx2;
#endif
#if EMB_WASM_SIMD
    if (level == EMB_LEVEL_WASM_SIMD128 || level == EMB_LEVEL_WASM_RELAXED) return tile_wasm;
#endif
    (void)level;
    return tile_scalar;
}

/* ---------------------------------------------------------------------------------------------- */

typedef struct {
    unpack_fn unpack;
    int has_min;
    tile_fn tile;
    const char *w;
    size_t w_row_bytes;
    act_rows act;
    float *y;
    int64_t n_out, n_in, n_tok;
    char *scratch;
    size_t scratch_per_thread;
    emb_counter next;
} gemm_task;

static void gemm_worker(void *p, int ith, int nth) {
    (void)nth;
    gemm_task *t = (gemm_task *)p;
    const int64_t n = t->n_in, ng = n / G;
    char *mem = t->scratch + (size_t)ith * t->scratch_per_thread;
    int8_t *wq = (int8_t *)mem;
    float *wsc = (float *)(mem + ROW_TILE * n);
    float *wmn = wsc + ROW_TILE * ng;
    float *tile_out = wmn + ROW_TILE * ng;
    unpacked_rows rows = {wq, wsc, t->has_min ? wmn : NULL};
    for (;;) {
        const int64_t r0 = (int64_t)EMB_COUNTER_NEXT(t->next, ROW_TILE);
        if (r0 >= t->n_out) break;
        const int nr = (int)(r0 + ROW_TILE <= t->n_out ? ROW_TILE : t->n_out - r0);
        for (int r = 0; r < nr; r++) {
            t->unpack(t->w + (r0 + r) * t->w_row_bytes, n, wq + r * n, wsc + r * ng, wmn + r * ng);
        }
        for (int64_t t0 = 0; t0 < t->n_tok; t0 += TOK_TILE) {
            const int nt = (int)(t0 + TOK_TILE <= t->n_tok ? TOK_TILE : t->n_tok - t0);
            t->tile(n, &rows, nr, &t->act, t0, nt, tile_out, TOK_TILE);
            for (int r = 0; r < nr; r++) {
                for (int k = 0; k < nt; k++) t->y[(t0 + k) * t->n_out + r0 + r] = tile_out[r * TOK_TILE + k];
            }
        }
    }
}

typedef struct {
    const float *x;
    act_rows act;
    int64_t n, n_tok;
    const emb_type_traits *act_traits; /* Q8_0 or Q8_K at the context's level */
    char *tmp;                         /* one quantized row per thread */
    size_t tmp_stride;
} act_task;

static void act_worker(void *p, int ith, int nth) {
    act_task *t = (act_task *)p;
    void *row = t->tmp + (size_t)ith * t->tmp_stride;
    for (int64_t tok = ith; tok < t->n_tok; tok += nth) {
        int8_t *q = (int8_t *)t->act.q + tok * t->n;
        float *d = (float *)t->act.d + tok * (t->n / AB);
        float *dsum = (float *)t->act.dsum + tok * (t->n / G);
        t->act_traits->from_float(t->x + tok * t->n, row, t->n);
        if (t->act_traits->block_size == QK_K) {
            layout_from_q8_K((const block_q8_K *)row, t->n, q, d, dsum);
        } else {
            layout_from_q8_0((const block_q8_0 *)row, t->n, q, d, dsum);
        }
    }
}

int emb_gemm_unpacked(emb_ctx *ctx, const void *w, int type, int64_t n_out, int64_t n_in, const float *x, int64_t n_tok,
                      float *y) {
    int has_min = 0;
    const unpack_fn unpack = unpack_for(type, emb_ctx_level(ctx), &has_min);
    if (!unpack) return -1;
    const emb_type_traits *tr = emb_get_type_traits(type, EMB_LEVEL_SCALAR);
    if (!tr || n_in % tr->block_size != 0 || n_in % AB != 0) return -1;
    const int nth = emb_ctx_threads(ctx);
    const int64_t ng = n_in / G, nb = n_in / AB;
    const size_t act_bytes = (size_t)n_tok * ((size_t)n_in + sizeof(float) * (size_t)(nb + ng));
    const size_t per_thread = (size_t)ROW_TILE * ((size_t)n_in + 2 * sizeof(float) * (size_t)ng) +
                              sizeof(float) * ROW_TILE * TOK_TILE + 64;
    const size_t per_thread_aligned = (per_thread + 63) & ~(size_t)63;
    char *mem = (char *)emb_ctx_scratch(ctx, act_bytes + 64 + per_thread_aligned * (size_t)nth);
    if (!mem) return -2;
    float *ad = (float *)mem;
    float *dsum = ad + n_tok * nb;
    int8_t *aq = (int8_t *)(dsum + n_tok * ng);

    const emb_type_traits *act_tr = emb_get_type_traits(tr->vec_dot_type, emb_ctx_level(ctx));
    if (!act_tr || !act_tr->from_float || (tr->vec_dot_type != EMB_TYPE_Q8_0 && tr->vec_dot_type != EMB_TYPE_Q8_K))
        return -1;
    /* the quantized rows borrow the per-thread tile memory, which is not in use yet */
    char *tiles = (char *)(((uintptr_t)(mem + act_bytes) + 63) & ~(uintptr_t)63);
    act_task at = {x, {aq, ad, dsum}, n_in, n_tok, act_tr, tiles, per_thread_aligned};
    emb_parallel(ctx, act_worker, &at);

    gemm_task t;
    t.unpack = unpack;
    t.has_min = has_min;
    t.tile = pick_tile(emb_ctx_level(ctx));
    t.w = (const char *)w;
    t.w_row_bytes = (size_t)(n_in / tr->block_size * tr->block_bytes);
    t.act = at.act;
    t.y = y;
    t.n_out = n_out;
    t.n_in = n_in;
    t.n_tok = n_tok;
    t.scratch = (char *)(((uintptr_t)(mem + act_bytes) + 63) & ~(uintptr_t)63);
    t.scratch_per_thread = per_thread_aligned;
    EMB_COUNTER_INIT(t.next, 0);
    emb_parallel(ctx, gemm_worker, &t);
    return 0;
}
