/*
 * quants_iq_grid_x86.c - AVX2 and AVX-512 (VL + VNNI) dot products of the grid I-quants against Q8_K.
 *
 * Like quants_x86.c this file is compiled without -m flags: the 256-bit kernels below the template marker are
 * compiled twice by including the file into itself, pass 1 for the AVX2 level (vpmaddubsw + vpmaddwd), pass 2 for
 * the AVX-512 level (vpdpbusd).  Per group of 32 values the grid points are fetched from the tables (iq_grids.c)
 * into one vector of 32 bytes; the element signs (IQ2/IQ3) are put on the activations instead, as 0/-1 byte masks
 * (x ^ m) - m; IQ1's -1/0/1 points multiply through vpsignb.  The integer sum of a super-block is exact, and the
 * float arithmetic after it is the scalar twin's (quants_iq_grid.c): results are bit-identical to the scalar level.
 */
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)

#ifndef EMB_IQX86_PASS
#define EMB_INTERNAL
#include "ember.h"

#include <immintrin.h>
#include <string.h>

#define IQX_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define IQX_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define IQX_CAT_(a, b) a##b
#define IQX_CAT(a, b) IQX_CAT_(a, b)

static inline uint32_t iqx_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint16_t iqx_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The 32 sign bits of a group of 32 whose four sign bytes come through emb_ksigns_iq2xs from 7-bit fields. */
static inline uint32_t iqx_ksigns4(uint32_t aux) {
    return (uint32_t)emb_ksigns_iq2xs[aux & 127] | (uint32_t)emb_ksigns_iq2xs[(aux >> 7) & 127] << 8 |
           (uint32_t)emb_ksigns_iq2xs[(aux >> 14) & 127] << 16 | (uint32_t)emb_ksigns_iq2xs[(aux >> 21) & 127] << 24;
}

/* The IQ1_M block scale (top nibbles of its four scale words). */
static inline emb_f16 iqx_iq1m_scale(const block_iq1_m *b) {
    const uint16_t s0 = iqx_u16(b->scales), s1 = iqx_u16(b->scales + 2), s2 = iqx_u16(b->scales + 4);
    const uint16_t s3 = iqx_u16(b->scales + 6);
    return (emb_f16)((s0 >> 12) | ((s1 >> 8) & 0x00f0) | ((s2 >> 4) & 0x0f00) | (s3 & 0xf000));
}

#define EMB_IQX86_PASS 1
#include "quants_iq_grid_x86.c"
#undef EMB_IQX86_PASS
#define EMB_IQX86_PASS 2
#include "quants_iq_grid_x86.c"
#undef EMB_IQX86_PASS

#else /* EMB_IQX86_PASS: the template */
#if EMB_IQX86_PASS == 1
#define TGT IQX_TARGET_AVX2
#define SFX(name) name##_t1
#define LV avx2
#else
#define TGT IQX_TARGET_AVX512
#define SFX(name) name##_t2
#define LV avx512
#endif

static inline TGT int SFX(iqx_hsum)(__m256i v) {
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
    return _mm_cvtsi128_si32(r);
}

/* 0xff in byte i where bit i of bits is set, else 0. */
static inline TGT __m256i SFX(iqx_mask)(uint32_t bits) {
#if EMB_IQX86_PASS == 1
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)bits),
        _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i bitsel = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bitsel), bitsel);
#else
    return _mm256_movm_epi8((__mmask32)bits);
#endif
}

/* q with the bytes whose bit is set in bits negated. */
static inline TGT __m256i SFX(iqx_negate)(__m256i q, uint32_t bits) {
    const __m256i m = SFX(iqx_mask)(bits);
    return _mm256_sub_epi8(_mm256_xor_si256(q, m), m);
}

/* Eight int32 lanes: lanes 0..3 = (sums of four u*s over bytes 0..15) * lo, lanes 4..7 = (bytes 16..31) * hi;
 * u unsigned (<= 64), s signed bytes. */
static inline TGT __m256i SFX(iqx_dot)(__m256i u, __m256i s, int lo, int hi) {
#if EMB_IQX86_PASS == 1
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set_m128i(_mm_set1_epi16((short)hi), _mm_set1_epi16((short)lo)));
#else
    return _mm256_mullo_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s),
                              _mm256_set_m128i(_mm_set1_epi32(hi), _mm_set1_epi32(lo)));
#endif
}

static inline TGT __m256i SFX(iqx_q8)(const int8_t *q) { return _mm256_loadu_si256((const __m256i *)q); }

TGT void IQX_CAT(emb_vec_dot_iq2_xxs_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xxs *x = (const block_iq2_xxs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq2xxs_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint32_t idx = iqx_u32(x[i].qs + 4 * ib), aux = iqx_u32(x[i].qs + 4 * ib + 2);
            const __m256i g = _mm256_set_epi64x((long long)grid[idx >> 24], (long long)grid[(idx >> 16) & 255],
                                                (long long)grid[(idx >> 8) & 255], (long long)grid[idx & 255]);
            const int ls = (int)(2 * (aux >> 28) + 1);
            const __m256i q = SFX(iqx_negate)(SFX(iqx_q8)(y[i].qs + 32 * ib), iqx_ksigns4(aux));
            acc = _mm256_add_epi32(acc, SFX(iqx_dot)(g, q, ls, ls));
        }
        sumf += d * (float)SFX(iqx_hsum)(acc);
    }
    *s = 0.125f * sumf;
}

TGT void IQX_CAT(emb_vec_dot_iq2_xs_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_xs *x = (const block_iq2_xs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq2xs_grid;
    const uint8_t *ks = emb_ksigns_iq2xs;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint16_t *q2 = x[i].qs + 4 * ib;
            const __m256i g = _mm256_set_epi64x((long long)grid[q2[3] & 511], (long long)grid[q2[2] & 511],
                                                (long long)grid[q2[1] & 511], (long long)grid[q2[0] & 511]);
            const uint32_t bits = (uint32_t)ks[q2[0] >> 9] | (uint32_t)ks[q2[1] >> 9] << 8 |
                                  (uint32_t)ks[q2[2] >> 9] << 16 | (uint32_t)ks[q2[3] >> 9] << 24;
            const int sc = x[i].scales[ib];
            const __m256i q = SFX(iqx_negate)(SFX(iqx_q8)(y[i].qs + 32 * ib), bits);
            acc = _mm256_add_epi32(acc, SFX(iqx_dot)(g, q, 2 * (sc & 0x0f) + 1, 2 * (sc >> 4) + 1));
        }
        sumf += d * (float)SFX(iqx_hsum)(acc);
    }
    *s = 0.125f * sumf;
}

TGT void IQX_CAT(emb_vec_dot_iq2_s_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq2_s *x = (const block_iq2_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq2s_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + QK_K / 8;
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++, qs += 4) {
            const int qh = x[i].qh[ib];
            const __m256i g = _mm256_set_epi64x(
                (long long)grid[qs[3] | ((qh << 2) & 0x300)], (long long)grid[qs[2] | ((qh << 4) & 0x300)],
                (long long)grid[qs[1] | ((qh << 6) & 0x300)], (long long)grid[qs[0] | ((qh << 8) & 0x300)]);
            const int sc = x[i].scales[ib];
            const __m256i q = SFX(iqx_negate)(SFX(iqx_q8)(y[i].qs + 32 * ib), iqx_u32(signs + 4 * ib));
            acc = _mm256_add_epi32(acc, SFX(iqx_dot)(g, q, 2 * (sc & 0x0f) + 1, 2 * (sc >> 4) + 1));
        }
        sumf += d * (float)SFX(iqx_hsum)(acc);
    }
    *s = 0.125f * sumf;
}

TGT void IQX_CAT(emb_vec_dot_iq3_xxs_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_xxs *x = (const block_iq3_xxs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint32_t *grid = emb_iq3xxs_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *q3 = x[i].qs, *gas = x[i].qs + QK_K / 4;
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++, q3 += 8) {
            const uint32_t aux = iqx_u32(gas + 4 * ib);
            const __m256i g = _mm256_set_epi32((int)grid[q3[7]], (int)grid[q3[6]], (int)grid[q3[5]], (int)grid[q3[4]],
                                               (int)grid[q3[3]], (int)grid[q3[2]], (int)grid[q3[1]], (int)grid[q3[0]]);
            const int ls = (int)(2 * (aux >> 28) + 1);
            const __m256i q = SFX(iqx_negate)(SFX(iqx_q8)(y[i].qs + 32 * ib), iqx_ksigns4(aux));
            acc = _mm256_add_epi32(acc, SFX(iqx_dot)(g, q, ls, ls));
        }
        sumf += d * (float)SFX(iqx_hsum)(acc);
    }
    *s = 0.25f * sumf;
}

TGT void IQX_CAT(emb_vec_dot_iq3_s_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq3_s *x = (const block_iq3_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint32_t *grid = emb_iq3s_grid;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = emb_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs;
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            const int qh = x[i].qh[ib];
            const __m256i g = _mm256_set_epi32(
                (int)grid[qs[7] | ((qh << 1) & 256)], (int)grid[qs[6] | ((qh << 2) & 256)],
                (int)grid[qs[5] | ((qh << 3) & 256)], (int)grid[qs[4] | ((qh << 4) & 256)],
                (int)grid[qs[3] | ((qh << 5) & 256)], (int)grid[qs[2] | ((qh << 6) & 256)],
                (int)grid[qs[1] | ((qh << 7) & 256)], (int)grid[qs[0] | ((qh << 8) & 256)]);
            const int sc = ib & 1 ? x[i].scales[ib / 2] >> 4 : x[i].scales[ib / 2] & 0x0f;
            const __m256i q = SFX(iqx_negate)(SFX(iqx_q8)(y[i].qs + 32 * ib), iqx_u32(x[i].signs + 4 * ib));
            acc = _mm256_add_epi32(acc, SFX(iqx_dot)(g, q, 2 * sc + 1, 2 * sc + 1));
        }
        sumf += d * (float)SFX(iqx_hsum)(acc);
    }
    *s = sumf;
}

TGT void IQX_CAT(emb_vec_dot_iq1_s_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_s *x = (const block_iq1_s *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq1s_grid;
    const __m256i ones = _mm256_set1_epi8(1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        int sumi1 = 0;
        for (int ib = 0; ib < 8; ib++) {
            const int qh = x[i].qh[ib];
            const uint8_t *qs = x[i].qs + 4 * ib;
            const __m256i g = _mm256_set_epi64x(
                (long long)grid[qs[3] | ((qh >> 1) & 0x700)], (long long)grid[qs[2] | ((qh << 2) & 0x700)],
                (long long)grid[qs[1] | ((qh << 5) & 0x700)], (long long)grid[qs[0] | ((qh << 8) & 0x700)]);
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            acc = _mm256_add_epi32(acc, SFX(iqx_dot)(ones, _mm256_sign_epi8(SFX(iqx_q8)(y[i].qs + 32 * ib), g), ls, ls));
            sumi1 += ls * (qh & 0x8000 ? -1 : 1) * (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]);
        }
        const int sumi = SFX(iqx_hsum)(acc);
        sumf += emb_f16_to_f32(x[i].d) * y[i].d * ((float)sumi + EMB_IQ1_DELTA * (float)sumi1);
    }
    *s = sumf;
}

TGT void IQX_CAT(emb_vec_dot_iq1_m_q8_k_, LV)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq1_m *x = (const block_iq1_m *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const uint64_t *grid = emb_iq1s_grid;
    const __m256i ones = _mm256_set1_epi8(1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = x[i].qs + 4 * ib;
            const int h0 = x[i].qh[2 * ib], h1 = x[i].qh[2 * ib + 1];
            const __m256i g = _mm256_set_epi64x(
                (long long)grid[qs[3] | ((h1 << 4) & 0x700)], (long long)grid[qs[2] | ((h1 << 8) & 0x700)],
                (long long)grid[qs[1] | ((h0 << 4) & 0x700)], (long long)grid[qs[0] | ((h0 << 8) & 0x700)]);
            const uint16_t sc = iqx_u16(x[i].scales + 2 * (ib / 2));
            const int ls0 = 2 * ((sc >> (6 * (ib % 2))) & 7) + 1, ls1 = 2 * ((sc >> (6 * (ib % 2) + 3)) & 7) + 1;
            /* the delta's sign per group of 8: bit 3 of each nibble of h0, h1 */
            const uint32_t neg = (h0 & 0x08 ? 0xffu : 0u) | (h0 & 0x80 ? 0xff00u : 0u) | (h1 & 0x08 ? 0xff0000u : 0u) |
                                 (h1 & 0x80 ? 0xff000000u : 0u);
            const __m256i q = SFX(iqx_q8)(y[i].qs + 32 * ib);
            acc1 = _mm256_add_epi32(acc1, SFX(iqx_dot)(ones, _mm256_sign_epi8(q, g), ls0, ls1));
            acc2 = _mm256_add_epi32(acc2, SFX(iqx_dot)(ones, SFX(iqx_negate)(q, neg), ls0, ls1));
        }
        const int sumi1 = SFX(iqx_hsum)(acc1), sumi2 = SFX(iqx_hsum)(acc2);
        sumf += emb_f16_to_f32(iqx_iq1m_scale(&x[i])) * y[i].d * ((float)sumi1 + EMB_IQ1_DELTA * (float)sumi2);
    }
    *s = sumf;
}

#undef TGT
#undef SFX
#undef LV
#endif /* EMB_IQX86_PASS */

#else /* not x86-64 with target attributes: the scalar kernels serve */
#define EMB_INTERNAL
#include "ember.h"
#endif
