/*
 * quants_x86.c - x86-64 SIMD kernels: AVX2 (+FMA, F16C) and AVX-512 (F/BW/VL/VNNI).
 *
 * The file is compiled without any -m flag: every function carries a target attribute, and the level is
 * picked at run time (emb_kernel_level_supported), so the extension runs on any x86-64.
 *
 * Layout of this file:
 *  1. The 256-bit kernels, written once below the "template" marker and compiled twice by including
 *     this file into itself: pass 1 for the AVX2 level (u8 x s8 products through vpmaddubsw/vpmaddwd),
 *     pass 2 for the AVX-512 level (the same kernels through the VNNI instructions vpdpbusd/vpdpwssd).
 *  2. 512-bit kernels for the types that carry most of the decode time (Q8_0, Q5_0, Q4_K, Q6_K).
 *  3. The exported functions the level tables of quants.c point at.
 *
 * Integer tricks used throughout:
 *  - signed x signed int8 products: vpmaddubsw/vpdpbusd multiply unsigned by signed bytes, so the
 *    kernels either feed |x| and sign(y, x), or x + 128 and subtract 128 * sum(y).
 *  - weights with an offset (Q4_0 = q - 8, Q6_K = q - 32, ...) are dotted as unsigned q and the offset
 *    times the activation block sum is subtracted (K-quants take that sum from Q8_K's bsums).
 * Every kernel has its scalar twin in quants.c; results differ only in float summation order.
 */
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) /* GCC and clang: target attributes */

#ifndef EMB_X86_PASS
/* ================================================================================================
 * Top of the file: includes, helpers shared by both passes, the two template passes.
 * ================================================================================================ */
#define EMB_INTERNAL
#include "ember.h"

#include <immintrin.h>
#include <string.h>

#define EMB_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define EMB_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

static inline uint32_t x86_load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Q4_K / Q5_K: the eight 6-bit scales (bytes 0..7 of *sc) and mins (bytes 0..7 of *mn). */
static inline void x86_k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    const uint32_t w0 = x86_load_u32(s), w1 = x86_load_u32(s + 4), w2 = x86_load_u32(s + 8);
    const uint32_t sc_lo = w0 & 0x3f3f3f3fu;
    const uint32_t mn_lo = w1 & 0x3f3f3f3fu;
    const uint32_t sc_hi = (w2 & 0x0f0f0f0fu) | ((w0 >> 2) & 0x30303030u);
    const uint32_t mn_hi = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 2) & 0x30303030u);
    *sc = (uint64_t)sc_lo | ((uint64_t)sc_hi << 32);
    *mn = (uint64_t)mn_lo | ((uint64_t)mn_hi << 32);
}

/* Q3_K: the sixteen 6-bit scales, still biased by +32, as bytes. */
static inline void x86_q3k_scales(const uint8_t *s, uint8_t out[16]) {
    const uint32_t a0 = x86_load_u32(s), a1 = x86_load_u32(s + 4), a2 = x86_load_u32(s + 8);
    const uint32_t w[4] = {
        (a0 & 0x0f0f0f0fu) | ((a2 & 0x03030303u) << 4),
        (a1 & 0x0f0f0f0fu) | (((a2 >> 2) & 0x03030303u) << 4),
        ((a0 >> 4) & 0x0f0f0f0fu) | (((a2 >> 4) & 0x03030303u) << 4),
        ((a1 >> 4) & 0x0f0f0f0fu) | (((a2 >> 6) & 0x03030303u) << 4),
    };
    memcpy(out, w, 16);
}

#define EMB_X86_PASS 1
#include "quants_x86.c"
#undef EMB_X86_PASS
#define EMB_X86_PASS 2
#include "quants_x86.c"
#undef EMB_X86_PASS

/* ================================================================================================
 * 512-bit kernels (AVX-512 level).
 * ================================================================================================ */

static inline EMB_TARGET_AVX512 __m128 f16x4_to_f32(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
    return _mm_cvtph_ps(_mm_setr_epi16((short)a, (short)b, (short)c, (short)d, 0, 0, 0, 0));
}

/* Two 32-byte rows at p and q as one zmm (p in the low half). */
static inline EMB_TARGET_AVX512 __m512i load_2x256(const void *p, const void *q) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)),
                              _mm256_loadu_si256((const __m256i *)q), 1);
}

/* sum over groups of 4 of x[i] * y[i], x and y signed bytes: vpdpbusd on (x + 128) minus 128 * sum(y). */
static inline EMB_TARGET_AVX512 __m512i dot_s8s8_512(__m512i x, __m512i y) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    const __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(x, k80), y);
    const __m512i b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, y);
    return _mm512_sub_epi32(a, b);
}

EMB_TARGET_AVX512 static void vd_q8_0_512(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = (const block_q8_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    const __m512i idx01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i idx23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        const __m128 d = _mm_mul_ps(f16x4_to_f32(x[i].d, x[i + 1].d, x[i + 2].d, x[i + 3].d),
                                    f16x4_to_f32(y[i].d, y[i + 1].d, y[i + 2].d, y[i + 3].d));
        const __m512 d512 = _mm512_castps128_ps512(d);
        const __m512i p01 = dot_s8s8_512(load_2x256(x[i].qs, x[i + 1].qs), load_2x256(y[i].qs, y[i + 1].qs));
        const __m512i p23 = dot_s8s8_512(load_2x256(x[i + 2].qs, x[i + 3].qs), load_2x256(y[i + 2].qs, y[i + 3].qs));
        acc0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx01, d512), _mm512_cvtepi32_ps(p01), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx23, d512), _mm512_cvtepi32_ps(p23), acc1);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (i < nb) {
        float tail;
        vd_q8_0_t2(n - i * QK8_0, &tail, x + i, y + i);
        sum += tail;
    }
    *s = sum;
}

/* Q5_0 x Q8_0, two blocks per zmm: the 16 nibble bytes of a block give elements 0..15 (low nibbles)
 * and 16..31 (high nibbles); the 32 high bits come as a mask. */
EMB_TARGET_AVX512 static void vd_q5_0_512(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = (const block_q5_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    const __m512i shifts = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    const __m512i k10 = _mm512_set1_epi8(0x10);
    const __m512i idx01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i idx23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        const __m128 d = _mm_mul_ps(f16x4_to_f32(x[i].d, x[i + 1].d, x[i + 2].d, x[i + 3].d),
                                    f16x4_to_f32(y[i].d, y[i + 1].d, y[i + 2].d, y[i + 3].d));
        const __m512 d512 = _mm512_castps128_ps512(d);
        __m512i p[2];
        for (int k = 0; k < 2; k++) {
            const block_q5_0 *b0 = &x[i + 2 * k], *b1 = &x[i + 2 * k + 1];
            /* [qs0, qs0, qs1, qs1] then the odd 128-bit lanes shifted down by 4 */
            const __m512i q = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b0->qs))),
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b1->qs)), 1);
            __m512i u = _mm512_and_si512(_mm512_srlv_epi64(q, shifts), m0f);
            const __mmask64 hb = (__mmask64)x86_load_u32(b0->qh) | ((__mmask64)x86_load_u32(b1->qh) << 32);
            u = _mm512_mask_add_epi8(u, hb, u, k10);
            /* x = u - 16: dot(u, y) - 16 * sum(y) */
            const __m512i yv = load_2x256(y[i + 2 * k].qs, y[i + 2 * k + 1].qs);
            const __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, yv);
            const __m512i b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), k10, yv);
            p[k] = _mm512_sub_epi32(a, b);
        }
        acc0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx01, d512), _mm512_cvtepi32_ps(p[0]), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx23, d512), _mm512_cvtepi32_ps(p[1]), acc1);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (i < nb) {
        float tail;
        vd_q5_0_t2(n - i * QK8_0, &tail, x + i, y + i);
        sum += tail;
    }
    *s = sum;
}

/* Q4_K x Q8_K: per 64 elements one zmm of weights (32 nibble bytes duplicated, the upper half shifted
 * down by 4) against 64 contiguous activations; vpmaddubsw then vpdpwssd with the sub-block scales. */
EMB_TARGET_AVX512 static void vd_q4_k_512(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = (const block_q4_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    const __m512i shifts = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    __m512i sidx[4];
    for (int j = 0; j < 4; j++) {
        const __m256i lo = _mm256_set1_epi16((short)(2 * j)), hi = _mm256_set1_epi16((short)(2 * j + 1));
        sidx[j] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    __m512 acc = _mm512_setzero_ps();
    float summ = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        uint64_t sc8, mn8;
        x86_k4_scales(x[i].scales, &sc8, &mn8);
        const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
        /* mins: sum over sub-blocks of min * (bsum pair) */
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m128i bs2 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        const __m128i mp = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn8)), bs2);
        __m128i ms = _mm_add_epi32(mp, _mm_shuffle_epi32(mp, 0x4e));
        ms = _mm_add_epi32(ms, _mm_shuffle_epi32(ms, 0xb1));
        const float dy = y[i].d;
        summ += dy * _cvtsh_ss(x[i].dmin) * (float)_mm_cvtsi128_si32(ms);

        __m512i sumi = _mm512_setzero_si512();
        for (int j = 0; j < 4; j++) {
            const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j)));
            const __m512i u = _mm512_and_si512(_mm512_srlv_epi64(q, shifts), m0f);
            const __m512i p = _mm512_maddubs_epi16(u, _mm512_loadu_si512(y[i].qs + 64 * j));
            sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_permutexvar_epi16(sidx[j], sc16));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(dy * _cvtsh_ss(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = _mm512_reduce_add_ps(acc) - summ;
}

/* Q6_K x Q8_K: per 128-element half, 64 ql bytes give elements 0..63 (low nibbles) and 64..127 (high
 * nibbles); the 32 qh bytes, duplicated, give the two high bits of each through per-lane shifts. */
EMB_TARGET_AVX512 static void vd_q6_k_512(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = (const block_q6_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i shl_lo = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
    const __m512i shr_hi = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    __m512i sidx[4];
    for (int g = 0; g < 4; g++) {
        short v[32];
        for (int t = 0; t < 32; t++) v[t] = (short)(4 * g + t / 8);
        sidx[g] = _mm512_loadu_si512(v);
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        const __m512i sc512 = _mm512_castsi256_si512(sc);
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc, bs), 5);
        __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512(x[i].ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h)));
            const __m512i ulo = _mm512_or_si512(_mm512_and_si512(ql, m0f),
                                                _mm512_and_si512(_mm512_sllv_epi64(qh, shl_lo), m30));
            const __m512i uhi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m0f),
                                                _mm512_and_si512(_mm512_srlv_epi64(qh, shr_hi), m30));
            const __m512i plo = _mm512_maddubs_epi16(ulo, _mm512_loadu_si512(y[i].qs + 128 * h));
            const __m512i phi = _mm512_maddubs_epi16(uhi, _mm512_loadu_si512(y[i].qs + 128 * h + 64));
            sumi = _mm512_dpwssd_epi32(sumi, plo, _mm512_permutexvar_epi16(sidx[2 * h], sc512));
            sumi = _mm512_dpwssd_epi32(sumi, phi, _mm512_permutexvar_epi16(sidx[2 * h + 1], sc512));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * _cvtsh_ss(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

/* ================================================================================================
 * Exported kernels: what each level's table in quants.c points at.
 * ================================================================================================ */
#define EXPORT_DOT(TGT, name, impl) \
    TGT void name(int64_t n, float *s, const void *x, const void *y) { impl(n, s, x, y); }
#define EXPORT_QUANT(TGT, name, impl) \
    TGT void name(const float *src, void *dst, int64_t n) { impl(src, dst, n); }

EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_f32_avx2, vd_f32_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_f16_avx2, vd_f16_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_bf16_avx2, vd_bf16_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q4_0_q8_0_avx2, vd_q4_0_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q4_1_q8_0_avx2, vd_q4_1_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q5_0_q8_0_avx2, vd_q5_0_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q5_1_q8_0_avx2, vd_q5_1_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q8_0_q8_0_avx2, vd_q8_0_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q2_k_q8_k_avx2, vd_q2_k_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q3_k_q8_k_avx2, vd_q3_k_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q4_k_q8_k_avx2, vd_q4_k_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q5_k_q8_k_avx2, vd_q5_k_t1)
EXPORT_DOT(EMB_TARGET_AVX2, emb_vec_dot_q6_k_q8_k_avx2, vd_q6_k_t1)
EXPORT_QUANT(EMB_TARGET_AVX2, emb_quantize_q8_0_avx2, quant_q8_0_t1)
EXPORT_QUANT(EMB_TARGET_AVX2, emb_quantize_q8_k_avx2, quant_q8_k_t1)

EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_f32_avx512, vd_f32_t2)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_f16_avx512, vd_f16_t2)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_bf16_avx512, vd_bf16_t2)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q4_0_q8_0_avx512, vd_q4_0_t2)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q4_1_q8_0_avx512, vd_q4_1_t2)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q5_0_q8_0_avx512, vd_q5_0_512)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q5_1_q8_0_avx512, vd_q5_1_t2)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q8_0_q8_0_avx512, vd_q8_0_512)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q2_k_q8_k_avx512, vd_q2_k_t2)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q3_k_q8_k_avx512, vd_q3_k_t2)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q4_k_q8_k_avx512, vd_q4_k_512)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q5_k_q8_k_avx512, vd_q5_k_t2)
EXPORT_DOT(EMB_TARGET_AVX512, emb_vec_dot_q6_k_q8_k_avx512, vd_q6_k_512)
EXPORT_QUANT(EMB_TARGET_AVX512, emb_quantize_q8_0_avx512, quant_q8_0_t2)
EXPORT_QUANT(EMB_TARGET_AVX512, emb_quantize_q8_k_avx512, quant_q8_k_t2)

#else /* EMB_X86_PASS */
/* ================================================================================================
 * Template: the 256-bit kernels.  Pass 1 = AVX2 (names end in _t1), pass 2 = AVX-512 VL + VNNI (_t2).
 * ================================================================================================ */
#if EMB_X86_PASS == 1
#define TGT EMB_TARGET_AVX2
#define SFX(name) name##_t1
#else
#define TGT EMB_TARGET_AVX512
#define SFX(name) name##_t2
#endif

static inline TGT float SFX(hsum_ps)(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static inline TGT int SFX(hsum_epi32)(__m256i v) {
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
    return _mm_cvtsi128_si32(r);
}

/* acc + sums over groups of 4 of u[i] * s[i], u unsigned (<= 128 in pass 1) and s signed bytes. */
static inline TGT __m256i SFX(dot_u8s8)(__m256i acc, __m256i u, __m256i s) {
#if EMB_X86_PASS == 1
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#else
    return _mm256_dpbusd_epi32(acc, u, s);
#endif
}

/* acc + sums over pairs of a[i] * b[i] for int16 a and b. */
static inline TGT __m256i SFX(dot_s16)(__m256i acc, __m256i a, __m256i b) {
#if EMB_X86_PASS == 1
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#else
    return _mm256_dpwssd_epi32(acc, a, b);
#endif
}

/* Signed x signed bytes: |x| times y with x's sign. */
static inline TGT __m256i SFX(dot_s8s8)(__m256i x, __m256i y) {
    return SFX(dot_u8s8)(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* 32 nibbles of 16 bytes: low nibbles in bytes 0..15, high nibbles in 16..31. */
static inline TGT __m256i SFX(nibbles)(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* 0xff in byte i where bit i of bits is set, else 0. */
static inline TGT __m256i SFX(bits_to_bytes)(uint32_t bits) {
#if EMB_X86_PASS == 1
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)bits),
        _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i bitsel = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bitsel), bitsel);
#else
    return _mm256_movm_epi8((__mmask32)bits);
#endif
}

/* Bit `from` of every byte moved to bit `to` (others cleared); from, to in 0..7. */
static inline TGT __m256i SFX(move_bit)(__m256i v, int from, int to) {
    const __m256i t = _mm256_and_si256(v, _mm256_set1_epi8((char)(1 << from)));
    if (from < to) return _mm256_slli_epi16(t, to - from);
    if (from > to) return _mm256_srli_epi16(t, from - to);
    return t;
}

/* For the int16 scales sc (16 lanes): sc[2g] in the low 128-bit lane, sc[2g + 1] in the high one. */
static inline TGT __m256i SFX(scale_pair)(__m256i sc, int g) {
    const __m256i t = _mm256_permutevar8x32_epi32(sc, _mm256_set1_epi32(g));
    return _mm256_shuffle_epi8(t, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3,
                                                   2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
}

/* ---- float types ---- */

static TGT void SFX(vd_f32)(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = (const float *)vx, *y = (const float *)vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = SFX(hsum_ps)(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

static inline TGT __m256 SFX(load_f16x8)(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline TGT __m256 SFX(load_bf16x8)(const uint16_t *p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static TGT void SFX(vd_f16)(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = (const uint16_t *)vx, *y = (const uint16_t *)vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(SFX(load_f16x8)(x + i), SFX(load_f16x8)(y + i), a0);
        a1 = _mm256_fmadd_ps(SFX(load_f16x8)(x + i + 8), SFX(load_f16x8)(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(SFX(load_f16x8)(x + i + 16), SFX(load_f16x8)(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(SFX(load_f16x8)(x + i + 24), SFX(load_f16x8)(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(SFX(load_f16x8)(x + i), SFX(load_f16x8)(y + i), a0);
    float sum = SFX(hsum_ps)(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += _cvtsh_ss(x[i]) * _cvtsh_ss(y[i]);
    *s = sum;
}

static TGT void SFX(vd_bf16)(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = (const uint16_t *)vx, *y = (const uint16_t *)vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(SFX(load_bf16x8)(x + i), SFX(load_bf16x8)(y + i), a0);
        a1 = _mm256_fmadd_ps(SFX(load_bf16x8)(x + i + 8), SFX(load_bf16x8)(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(SFX(load_bf16x8)(x + i + 16), SFX(load_bf16x8)(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(SFX(load_bf16x8)(x + i + 24), SFX(load_bf16x8)(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(SFX(load_bf16x8)(x + i), SFX(load_bf16x8)(y + i), a0);
    float sum = SFX(hsum_ps)(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) sum += emb_bf16_to_f32(x[i]) * emb_bf16_to_f32(y[i]);
    *s = sum;
}

/* ---- 32-element block types against Q8_0 ---- */

static inline TGT __m256 SFX(scale)(emb_f16 dx, emb_f16 dy) { return _mm256_set1_ps(_cvtsh_ss(dx) * _cvtsh_ss(dy)); }

static inline TGT __m256i SFX(load_q8)(const int8_t *qs) { return _mm256_loadu_si256((const __m256i *)qs); }

static TGT void SFX(vd_q8_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = (const block_q8_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i p0 = SFX(dot_s8s8)(SFX(load_q8)(x[i].qs), SFX(load_q8)(y[i].qs));
        const __m256i p1 = SFX(dot_s8s8)(SFX(load_q8)(x[i + 1].qs), SFX(load_q8)(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(SFX(scale)(x[i].d, y[i].d), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(SFX(scale)(x[i + 1].d, y[i + 1].d), _mm256_cvtepi32_ps(p1), acc1);
    }
    if (i < nb) {
        const __m256i p0 = SFX(dot_s8s8)(SFX(load_q8)(x[i].qs), SFX(load_q8)(y[i].qs));
        acc0 = _mm256_fmadd_ps(SFX(scale)(x[i].d, y[i].d), _mm256_cvtepi32_ps(p0), acc0);
    }
    *s = SFX(hsum_ps)(_mm256_add_ps(acc0, acc1));
}

static TGT void SFX(vd_q4_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = (const block_q4_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    const __m256i k8 = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i q0 = _mm256_sub_epi8(SFX(nibbles)(x[i].qs), k8);
        const __m256i q1 = _mm256_sub_epi8(SFX(nibbles)(x[i + 1].qs), k8);
        const __m256i p0 = SFX(dot_s8s8)(q0, SFX(load_q8)(y[i].qs));
        const __m256i p1 = SFX(dot_s8s8)(q1, SFX(load_q8)(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(SFX(scale)(x[i].d, y[i].d), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(SFX(scale)(x[i + 1].d, y[i + 1].d), _mm256_cvtepi32_ps(p1), acc1);
    }
    if (i < nb) {
        const __m256i q0 = _mm256_sub_epi8(SFX(nibbles)(x[i].qs), k8);
        const __m256i p0 = SFX(dot_s8s8)(q0, SFX(load_q8)(y[i].qs));
        acc0 = _mm256_fmadd_ps(SFX(scale)(x[i].d, y[i].d), _mm256_cvtepi32_ps(p0), acc0);
    }
    *s = SFX(hsum_ps)(_mm256_add_ps(acc0, acc1));
}

/* Q5_0: x = (nibble | high bit << 4) - 16 = nibble | 0xf0 where the high bit is clear. */
static inline TGT __m256i SFX(q5_0_values)(const block_q5_0 *b) {
    const __m256i hb = SFX(bits_to_bytes)(x86_load_u32(b->qh));
    return _mm256_or_si256(SFX(nibbles)(b->qs), _mm256_andnot_si256(hb, _mm256_set1_epi8((char)0xf0)));
}

static TGT void SFX(vd_q5_0)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = (const block_q5_0 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i p0 = SFX(dot_s8s8)(SFX(q5_0_values)(&x[i]), SFX(load_q8)(y[i].qs));
        const __m256i p1 = SFX(dot_s8s8)(SFX(q5_0_values)(&x[i + 1]), SFX(load_q8)(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(SFX(scale)(x[i].d, y[i].d), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(SFX(scale)(x[i + 1].d, y[i + 1].d), _mm256_cvtepi32_ps(p1), acc1);
    }
    if (i < nb) {
        const __m256i p0 = SFX(dot_s8s8)(SFX(q5_0_values)(&x[i]), SFX(load_q8)(y[i].qs));
        acc0 = _mm256_fmadd_ps(SFX(scale)(x[i].d, y[i].d), _mm256_cvtepi32_ps(p0), acc0);
    }
    *s = SFX(hsum_ps)(_mm256_add_ps(acc0, acc1));
}

/* Q4_1 / Q5_1 (unsigned q with a min): d*dy*sum(q*y) + m*dy*sum(y). */
static inline TGT __m256 SFX(min_block)(__m256 acc, __m256i u, const block_q8_0 *y, emb_f16 d, emb_f16 m) {
    const __m256i yv = SFX(load_q8)(y->qs);
    const __m256i p = SFX(dot_u8s8)(_mm256_setzero_si256(), u, yv);
    const __m256i ys = SFX(dot_u8s8)(_mm256_setzero_si256(), _mm256_set1_epi8(1), yv);
    const float dy = _cvtsh_ss(y->d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(d) * dy), _mm256_cvtepi32_ps(p), acc);
    return _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(m) * dy), _mm256_cvtepi32_ps(ys), acc);
}

static TGT void SFX(vd_q4_1)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = (const block_q4_1 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        acc0 = SFX(min_block)(acc0, SFX(nibbles)(x[i].qs), &y[i], x[i].d, x[i].m);
        acc1 = SFX(min_block)(acc1, SFX(nibbles)(x[i + 1].qs), &y[i + 1], x[i + 1].d, x[i + 1].m);
    }
    if (i < nb) acc0 = SFX(min_block)(acc0, SFX(nibbles)(x[i].qs), &y[i], x[i].d, x[i].m);
    *s = SFX(hsum_ps)(_mm256_add_ps(acc0, acc1));
}

static inline TGT __m256i SFX(q5_1_values)(const block_q5_1 *b) {
    const __m256i hb = SFX(bits_to_bytes)(x86_load_u32(b->qh));
    return _mm256_or_si256(SFX(nibbles)(b->qs), _mm256_and_si256(hb, _mm256_set1_epi8(0x10)));
}

static TGT void SFX(vd_q5_1)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = (const block_q5_1 *)vx;
    const block_q8_0 *y = (const block_q8_0 *)vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        acc0 = SFX(min_block)(acc0, SFX(q5_1_values)(&x[i]), &y[i], x[i].d, x[i].m);
        acc1 = SFX(min_block)(acc1, SFX(q5_1_values)(&x[i + 1]), &y[i + 1], x[i + 1].d, x[i + 1].m);
    }
    if (i < nb) acc0 = SFX(min_block)(acc0, SFX(q5_1_values)(&x[i]), &y[i], x[i].d, x[i].m);
    *s = SFX(hsum_ps)(_mm256_add_ps(acc0, acc1));
}

/* ---- K-quants against Q8_K ---- */

static inline TGT __m256i SFX(load_bsums)(const block_q8_K *y) { return _mm256_loadu_si256((const __m256i *)y->bsums); }

static TGT void SFX(vd_q2_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = (const block_q2_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0f)));
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f)));
        const float dy = y[i].d;
        summ += dy * _cvtsh_ss(x[i].dmin) * (float)SFX(hsum_epi32)(_mm256_madd_epi16(mn, SFX(load_bsums)(&y[i])));
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int j = 0; j < 4; j++) {
                const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                const __m256i p = _mm256_maddubs_epi16(u, SFX(load_q8)(y[i].qs + 128 * h + 32 * j));
                sumi = SFX(dot_s16)(sumi, p, SFX(scale_pair)(sc, 4 * h + j));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy * _cvtsh_ss(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = SFX(hsum_ps)(acc) - summ;
}

static TGT void SFX(vd_q3_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = (const block_q3_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        uint8_t raw[16];
        x86_q3k_scales(x[i].scales, raw);
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_loadu_si128((const __m128i *)raw), _mm_set1_epi8(32)));
        /* value = u - 4 with u = low 2 bits | high bit << 2 */
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(),
                                        _mm256_slli_epi32(_mm256_madd_epi16(sc, SFX(load_bsums)(&y[i])), 2));
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int j = 0; j < 4; j++) {
                const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3),
                                                  SFX(move_bit)(hm, 4 * h + j, 2));
                const __m256i p = _mm256_maddubs_epi16(u, SFX(load_q8)(y[i].qs + 128 * h + 32 * j));
                sumi = SFX(dot_s16)(sumi, p, SFX(scale_pair)(sc, 4 * h + j));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * _cvtsh_ss(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = SFX(hsum_ps)(acc);
}

/* Q4_K / Q5_K mins term: sum over the 8 sub-blocks of min * (sum of its 32 activations). */
static inline TGT int SFX(k4_min_sum)(uint64_t mn8, const block_q8_K *y) {
    const __m256i bs = SFX(load_bsums)(y);
    const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    __m128i p = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn8)), pairs);
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4e));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xb1));
    return _mm_cvtsi128_si32(p);
}

#if EMB_X86_PASS == 1 /* the AVX-512 level has 512-bit Q4_K and Q6_K kernels (vd_q4_k_512, vd_q6_k_512) */
static TGT void SFX(vd_q4_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = (const block_q4_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        uint64_t sc8, mn8;
        x86_k4_scales(x[i].scales, &sc8, &mn8);
        const float dy = y[i].d;
        summ += dy * _cvtsh_ss(x[i].dmin) * (float)SFX(k4_min_sum)(mn8, &y[i]);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            const __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(q, m0f), SFX(load_q8)(y[i].qs + 64 * j));
            const __m256i p1 =
                _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m0f), SFX(load_q8)(y[i].qs + 64 * j + 32));
            sumi = SFX(dot_s16)(sumi, p0, _mm256_set1_epi16((short)((sc8 >> (16 * j)) & 0xff)));
            sumi = SFX(dot_s16)(sumi, p1, _mm256_set1_epi16((short)((sc8 >> (16 * j + 8)) & 0xff)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy * _cvtsh_ss(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = SFX(hsum_ps)(acc) - summ;
}

#endif

static TGT void SFX(vd_q5_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = (const block_q5_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        uint64_t sc8, mn8;
        x86_k4_scales(x[i].scales, &sc8, &mn8);
        const float dy = y[i].d;
        summ += dy * _cvtsh_ss(x[i].dmin) * (float)SFX(k4_min_sum)(mn8, &y[i]);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)x[i].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            const __m256i u0 = _mm256_or_si256(_mm256_and_si256(q, m0f), SFX(move_bit)(qh, 2 * j, 4));
            const __m256i u1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m0f), SFX(move_bit)(qh, 2 * j + 1, 4));
            const __m256i p0 = _mm256_maddubs_epi16(u0, SFX(load_q8)(y[i].qs + 64 * j));
            const __m256i p1 = _mm256_maddubs_epi16(u1, SFX(load_q8)(y[i].qs + 64 * j + 32));
            sumi = SFX(dot_s16)(sumi, p0, _mm256_set1_epi16((short)((sc8 >> (16 * j)) & 0xff)));
            sumi = SFX(dot_s16)(sumi, p1, _mm256_set1_epi16((short)((sc8 >> (16 * j + 8)) & 0xff)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy * _cvtsh_ss(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = SFX(hsum_ps)(acc) - summ;
}

#if EMB_X86_PASS == 1
static TGT void SFX(vd_q6_k)(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = (const block_q6_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    const int64_t nb = n / QK_K;
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        /* values are u - 32 */
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(),
                                        _mm256_slli_epi32(_mm256_madd_epi16(sc, SFX(load_bsums)(&y[i])), 5));
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            const __m256i u[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, m0f), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)),
                _mm256_or_si256(_mm256_and_si256(ql1, m0f), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m0f), _mm256_and_si256(qh, m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m0f),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)),
            };
            for (int k = 0; k < 4; k++) {
                const __m256i p = _mm256_maddubs_epi16(u[k], SFX(load_q8)(y[i].qs + 128 * h + 32 * k));
                sumi = SFX(dot_s16)(sumi, p, SFX(scale_pair)(sc, 4 * h + k));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * _cvtsh_ss(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = SFX(hsum_ps)(acc);
}

#endif

/* ---- activation quantizers (bit-exact with the scalar ones) ---- */

static inline TGT float SFX(hmax_ps)(__m256 v) {
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* 32 int32 (four vectors) to 32 int8 in order (values already in int8 range). */
static inline TGT __m256i SFX(pack_i32_i8)(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i v = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* roundf: trunc, then one step away from zero where the dropped fraction is >= 0.5. */
static inline TGT __m256i SFX(round_away)(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 ge = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 step = _mm256_and_ps(ge, _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f)));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, step));
}

static TGT void SFX(quant_q8_0)(const float *x, void *dst, int64_t n) {
    block_q8_0 *y = (block_q8_0 *)dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                       _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        const float d = SFX(hmax_ps)(m) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = (emb_f16)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        const __m256 vid = _mm256_set1_ps(id);
        const __m256i q = SFX(pack_i32_i8)(SFX(round_away)(_mm256_mul_ps(v0, vid)), SFX(round_away)(_mm256_mul_ps(v1, vid)),
                                           SFX(round_away)(_mm256_mul_ps(v2, vid)), SFX(round_away)(_mm256_mul_ps(v3, vid)));
        _mm256_storeu_si256((__m256i *)y[i].qs, q);
    }
}

static TGT void SFX(quant_q8_k)(const float *x, void *dst, int64_t n) {
    block_q8_K *y = (block_q8_K *)dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        const float amax = SFX(hmax_ps)(m);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* the first value of largest magnitude, with its sign */
        float max = 0.0f;
        const __m256 va = _mm256_set1_ps(amax);
        for (int j = 0; j < QK_K; j += 8) {
            const __m256 v = _mm256_loadu_ps(x + j);
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, v), va, _CMP_EQ_OQ));
            if (hit) {
                max = x[j + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i cap = _mm256_set1_epi32(127);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                /* round half to even, as the scalar nearest_int() */
                q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), vs)), cap);
            }
            const __m256i q8 = SFX(pack_i32_i8)(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), q8);
            /* bsums of the two 16-groups: byte sums of 4, then of 16 */
            const __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q8), _mm256_set1_epi16(1));
            const __m128i s8 = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm_shuffle_epi32(_mm256_castsi256_si128(s4), 0x4e));
            const __m128i t8 = _mm_add_epi32(_mm256_extracti128_si256(s4, 1),
                                             _mm_shuffle_epi32(_mm256_extracti128_si256(s4, 1), 0x4e));
            y[i].bsums[j / 16] = (int16_t)(_mm_cvtsi128_si32(s8) + _mm_extract_epi32(s8, 1));
            y[i].bsums[j / 16 + 1] = (int16_t)(_mm_cvtsi128_si32(t8) + _mm_extract_epi32(t8, 1));
        }
        y[i].d = 1.0f / iscale;
    }
}

#undef TGT
#undef SFX
#endif /* EMB_X86_PASS */

#else /* not x86-64, or a compiler without target attributes: the scalar kernels serve */
#define EMB_INTERNAL
#include "ember.h"
#endif
