/*
 * quants_iq4_tq_x86.c - IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 dot products on x86-64: AVX2 and AVX-512 (VNNI).
 *
 * Like quants_x86.c the file has no -m flag: every function carries a target attribute.  The kernels below the
 * "template" marker are compiled twice by including this file into itself: pass 1 for the AVX2 level
 * (vpmaddubsw/vpmaddwd), pass 2 for the AVX-512 level (the same 256-bit kernels through vpdpbusd/vpdpwssd).
 *
 *  - IQ4_NL / IQ4_XS: the 4-bit indices become int8 values through vpshufb on the 16-entry table; signed x
 *    signed products as |x| times sign(y, x).  IQ4_XS multiplies the 16-bit pair sums by the sub-block scale
 *    (vpmaddwd / vpdpwssd) so a 256-block's integer sum stays exact.
 *  - TQ2_0 / TQ1_0: the digits (0, 1, 2) are dotted unsigned and the block sum of the activations (Q8_K's bsums)
 *    subtracted.  TQ1_0's base-3 digits: byte q times 3^k (byte arithmetic, wrapping) then the high byte of
 *    3 * that byte, taken with vpmulhuw on the byte moved to the top of a 16-bit lane.
 * Integer sums are exact; each block's sum times its float scale is accumulated in float vectors, so results
 * differ from the scalar twins (quants_iq4_tq.c) only in float summation order.
 */
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)

#ifndef EMB_IQX_PASS
#define EMB_INTERNAL
#include "ember.h"

#include <immintrin.h>
#include <string.h>

#define IQX_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define IQX_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

static const int8_t iqx_values[16] = EMB_IQ4NL_VALUES;

#define EMB_IQX_PASS 1
#include "quants_iq4_tq_x86.c"
#undef EMB_IQX_PASS
#define EMB_IQX_PASS 2
#include "quants_iq4_tq_x86.c"
#undef EMB_IQX_PASS

#else /* EMB_IQX_PASS: the template */

#if EMB_IQX_PASS == 1
#define T IQX_TARGET_AVX2
#define S(name) name##_avx2
#else
#define T IQX_TARGET_AVX512
#define S(name) name##_avx512
#endif

/* int32 sums of groups of 4 of x[i] * y[i] for signed x (|x| <= 127) and signed y. */
static inline T __m256i S(iqx_dot_ss)(__m256i x, __m256i y) {
#if EMB_IQX_PASS == 1
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)),
                             _mm256_set1_epi16(1));
#else
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
#endif
}

/* acc + the int32 sums of groups of 4 of x[i] * y[i] * scale (signed x, |x| <= 127, |scale| <= 32). */
static inline T __m256i S(iqx_dot_ss_scaled)(__m256i acc, __m256i x, __m256i y, __m256i scale16) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
#if EMB_IQX_PASS == 1
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, scale16));
#else
    return _mm256_dpwssd_epi32(acc, p16, scale16);
#endif
}

/* acc + the int32 sums of groups of 4 of u[i] * y[i] (unsigned u <= 2, signed y). */
static inline T __m256i S(iqx_dot_us)(__m256i acc, __m256i u, __m256i y) {
#if EMB_IQX_PASS == 1
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1)));
#else
    return _mm256_dpbusd_epi32(acc, u, y);
#endif
}

static inline T float S(iqx_hsum)(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

/* 16 index bytes -> the 32 int8 values of an IQ4 block (low nibbles = elements 0..15, high = 16..31). */
static inline T __m256i S(iqx_iq4_values)(__m128i q, __m256i table) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
    return _mm256_shuffle_epi8(table, _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}

T void S(emb_vec_dot_iq4_nl_q8_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_nl *x = (const block_iq4_nl *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK4_NL;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iqx_values));
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i p0 = S(iqx_dot_ss)(S(iqx_iq4_values)(_mm_loadu_si128((const __m128i *)x[i].qs), table),
                                         _mm256_loadu_si256((const __m256i *)y[i].qs));
        const __m256i p1 = S(iqx_dot_ss)(S(iqx_iq4_values)(_mm_loadu_si128((const __m128i *)x[i + 1].qs), table),
                                         _mm256_loadu_si256((const __m256i *)y[i + 1].qs));
        const float d0 = _cvtsh_ss(x[i].d) * _cvtsh_ss(y[i].d), d1 = _cvtsh_ss(x[i + 1].d) * _cvtsh_ss(y[i + 1].d);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d1), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        const __m256i p = S(iqx_dot_ss)(S(iqx_iq4_values)(_mm_loadu_si128((const __m128i *)x[i].qs), table),
                                        _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[i].d) * _cvtsh_ss(y[i].d)), _mm256_cvtepi32_ps(p), acc0);
    }
    *s = S(iqx_hsum)(_mm256_add_ps(acc0, acc1));
}

T void S(emb_vec_dot_iq4_xs_q8_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = (const block_iq4_xs *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iqx_values));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        uint16_t h;
        memcpy(&h, &x[i].scales_h, sizeof h);
        uint32_t sl;
        memcpy(&sl, x[i].scales_l, sizeof sl);
        __m256i isum0 = _mm256_setzero_si256(), isum1 = _mm256_setzero_si256();
        for (int ib = 0; ib < QK_K / 32; ib += 2) {
            const int ls0 = (int)(((sl >> (4 * ib)) & 0x0f) | (((uint32_t)h >> (2 * ib)) & 3) << 4) - 32;
            const int ls1 = (int)(((sl >> (4 * ib + 4)) & 0x0f) | (((uint32_t)h >> (2 * ib + 2)) & 3) << 4) - 32;
            /* 32 index bytes = sub-blocks ib, ib + 1: low nibbles are their elements 0..15, high ones 16..31 */
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 16 * ib));
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i v0 = _mm256_shuffle_epi8(table, _mm256_permute2x128_si256(lo, hi, 0x20));
            const __m256i v1 = _mm256_shuffle_epi8(table, _mm256_permute2x128_si256(lo, hi, 0x31));
            isum0 = S(iqx_dot_ss_scaled)(isum0, v0, _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib)),
                                         _mm256_set1_epi16((short)ls0));
            isum1 = S(iqx_dot_ss_scaled)(isum1, v1, _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib + 32)),
                                         _mm256_set1_epi16((short)ls1));
        }
        const float d = y[i].d * _cvtsh_ss(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(isum0, isum1)), acc);
    }
    *s = S(iqx_hsum)(acc);
}

T void S(emb_vec_dot_tq2_0_q8_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq2_0 *x = (const block_tq2_0 *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i isum = _mm256_setzero_si256();
        for (int j = 0; j < 64; j += 32) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + j));
            const int8_t *q8 = y[i].qs + 4 * j;
            isum = S(iqx_dot_us)(isum, _mm256_and_si256(q, m3), _mm256_loadu_si256((const __m256i *)q8));
            isum = S(iqx_dot_us)(isum, _mm256_and_si256(_mm256_srli_epi16(q, 2), m3),
                                 _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            isum = S(iqx_dot_us)(isum, _mm256_and_si256(_mm256_srli_epi16(q, 4), m3),
                                 _mm256_loadu_si256((const __m256i *)(q8 + 64)));
            isum = S(iqx_dot_us)(isum, _mm256_and_si256(_mm256_srli_epi16(q, 6), m3),
                                 _mm256_loadu_si256((const __m256i *)(q8 + 96)));
        }
        /* sum (q - 1) y = sum q y - sum y */
        const __m256i ysum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), _mm256_set1_epi16(1));
        const float d = y[i].d * _cvtsh_ss(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, ysum)), acc);
    }
    *s = S(iqx_hsum)(acc);
}

/* Bytes b -> their first base-3 digits ((b * 3) >> 8, each 0..2). */
static inline T __m256i S(iqx_trits)(__m256i b) {
    const __m256i k3 = _mm256_set1_epi16(3);
    const __m256i lo = _mm256_mulhi_epu16(_mm256_slli_epi16(b, 8), k3);
    const __m256i hi = _mm256_mulhi_epu16(_mm256_and_si256(b, _mm256_set1_epi16((short)0xff00)), k3);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 8));
}

/* b * 3 per byte, wrapping. */
static inline T __m256i S(iqx_times3)(__m256i b) { return _mm256_add_epi8(b, _mm256_add_epi8(b, b)); }

T void S(emb_vec_dot_tq1_0_q8_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq1_0 *x = (const block_tq1_0 *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const int8_t *q8 = y[i].qs;
        __m256i isum = _mm256_setzero_si256();
        /* bytes 0..31: digit k of byte m is element m + 32 k */
        __m256i b = _mm256_loadu_si256((const __m256i *)x[i].qs);
        for (int k = 0; k < 5; k++) {
            isum = S(iqx_dot_us)(isum, S(iqx_trits)(b), _mm256_loadu_si256((const __m256i *)(q8 + 32 * k)));
            b = S(iqx_times3)(b);
        }
        /* bytes 32..47: digit k of byte m is element 160 + m + 16 k; digits (0, 1) and (2, 3) side by side */
        const __m128i q16 = _mm_loadu_si128((const __m128i *)(x[i].qs + 32));
        const __m128i q16x3 = _mm_add_epi8(q16, _mm_add_epi8(q16, q16));
        __m256i b01 = _mm256_inserti128_si256(_mm256_castsi128_si256(q16), q16x3, 1);
        isum = S(iqx_dot_us)(isum, S(iqx_trits)(b01), _mm256_loadu_si256((const __m256i *)(q8 + 160)));
        const __m256i b23 = S(iqx_times3)(S(iqx_times3)(b01));
        isum = S(iqx_dot_us)(isum, S(iqx_trits)(b23), _mm256_loadu_si256((const __m256i *)(q8 + 192)));
        /* digit 4 of bytes 32..47 (elements 224..239) beside the qh digits (element 240 + j + 4 k) */
        uint8_t qh[16];
        for (int k = 0, p = 1; k < 4; k++, p *= 3) {
            for (int j = 0; j < 4; j++) qh[4 * k + j] = (uint8_t)(x[i].qh[j] * p);
        }
        const __m128i b4 = _mm256_castsi256_si128(S(iqx_times3)(S(iqx_times3)(b23)));
        const __m256i b4h = _mm256_inserti128_si256(_mm256_castsi128_si256(b4), _mm_loadu_si128((const __m128i *)qh), 1);
        isum = S(iqx_dot_us)(isum, S(iqx_trits)(b4h), _mm256_loadu_si256((const __m256i *)(q8 + 224)));
        const __m256i ysum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), _mm256_set1_epi16(1));
        const float d = y[i].d * _cvtsh_ss(x[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, ysum)), acc);
    }
    *s = S(iqx_hsum)(acc);
}

#undef T
#undef S
#endif /* EMB_IQX_PASS */

#endif /* x86-64 */
