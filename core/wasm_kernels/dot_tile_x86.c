/*
 * dot_tile_x86.c - 2 weight rows x 4 tokens at a time for the row-by-row matmul (batched decoding).
 *
 * When several sequences decode together, every weight row meets several activation rows.  A tile loads and
 * offsets each weight block once for four tokens and each activation block once for two rows, instead of
 * once per (row, token) pair as separate vec_dot calls do.
 *
 * Each (row, token) result is computed with exactly the float operations, in exactly the order, of the
 * single-row kernel it stands in for (vd_q8_0_512 in quants_x86.c: per 4 blocks the same scale products,
 * the same two fused multiply-add chains, the same final reduction), and the integer parts are exact, so a
 * tile's results are bit-identical to its twin's: a sequence decoded in a batch gets its single-sequence
 * logits.  tests/test_ops.py checks that against the vec_dot kernels.
 */
#define EMB_INTERNAL
#include "ember.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#include <immintrin.h>
#include <string.h>

#define EMB_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

static inline EMB_TARGET_AVX512 __m128 tile_f16x4(const block_q8_0 *b) {
    return _mm_cvtph_ps(_mm_setr_epi16((short)b[0].d, (short)b[1].d, (short)b[2].d, (short)b[3].d, 0, 0, 0, 0));
}

static inline EMB_TARGET_AVX512 __m512i tile_load2(const void *p, const void *q) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)),
                              _mm256_loadu_si256((const __m256i *)q), 1);
}

#define TILE_R 2

/* The scale of block j of a group of 4 for lanes 8j'..8j'+7: (d[0] x8, d[1] x8) or (d[2] x8, d[3] x8). */
static inline EMB_TARGET_AVX512 __m512 tile_spread(__m128 d, __m512i idx) {
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(d));
}

/* The weight side of 4 blocks for the two 512-bit halves: bytes to feed vpdpbusd as its unsigned operand
 * (offset weights) and their 4 scales.  The offset is undone by subtracting off * sum(y) per group of 4. */
#define KIND_Q8_0 0 /* w + 128, off = 128 */
#define KIND_Q5_0 1 /* 5-bit u = w + 16, off = 16 */

static inline EMB_TARGET_AVX512 __attribute__((always_inline)) void tile_weights(
    const int kind, const char *row, int64_t i, __m512i *w01, __m512i *w23, __m128 *dw) {
    if (kind == KIND_Q8_0) {
        const block_q8_0 *x = (const block_q8_0 *)row + i;
        const __m512i k80 = _mm512_set1_epi8((char)0x80);
        *dw = tile_f16x4(x);
        *w01 = _mm512_xor_si512(tile_load2(x[0].qs, x[1].qs), k80);
        *w23 = _mm512_xor_si512(tile_load2(x[2].qs, x[3].qs), k80);
    } else {
        const block_q5_0 *x = (const block_q5_0 *)row + i;
        const __m512i shifts = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
        const __m512i m0f = _mm512_set1_epi8(0x0f);
        const __m512i k10 = _mm512_set1_epi8(0x10);
        *dw = _mm_cvtph_ps(_mm_setr_epi16((short)x[0].d, (short)x[1].d, (short)x[2].d, (short)x[3].d, 0, 0, 0, 0));
        __m512i *out[2] = {w01, w23};
        for (int k = 0; k < 2; k++) {
            const block_q5_0 *b0 = &x[2 * k], *b1 = &x[2 * k + 1];
            const __m512i q = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b0->qs))),
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b1->qs)), 1);
            __m512i u = _mm512_and_si512(_mm512_srlv_epi64(q, shifts), m0f);
            uint32_t h0, h1;
            memcpy(&h0, b0->qh, 4);
            memcpy(&h1, b1->qh, 4);
            *out[k] = _mm512_mask_add_epi8(u, (__mmask64)h0 | ((__mmask64)h1 << 32), u, k10);
        }
    }
}

/* TILE_R rows x T tokens of a Q8_0-activation type; kind and T are compile-time constants in each instance. */
static inline EMB_TARGET_AVX512 __attribute__((always_inline)) void tile_q8_body(
    const int kind, const int T, int64_t n, const void *vw, size_t w_row_bytes, const void *vy, size_t y_row_bytes,
    float *out, int64_t out_stride) {
    const int64_t nb = n / QK8_0;
    const char *w[TILE_R];
    const block_q8_0 *y[4];
    for (int r = 0; r < TILE_R; r++) w[r] = (const char *)vw + (size_t)r * w_row_bytes;
    for (int t = 0; t < T; t++) y[t] = (const block_q8_0 *)((const char *)vy + (size_t)t * y_row_bytes);
    const __m512i idx01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i idx23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m512i koff = _mm512_set1_epi8(kind == KIND_Q8_0 ? (char)0x80 : (char)0x10);
    __m512 acc0[TILE_R][4], acc1[TILE_R][4];
    for (int r = 0; r < TILE_R; r++) {
        for (int t = 0; t < T; t++) acc0[r][t] = acc1[r][t] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i += 4) {
        __m512 dw01[TILE_R], dw23[TILE_R];
        __m512i w01[TILE_R], w23[TILE_R];
        for (int r = 0; r < TILE_R; r++) {
            __m128 dw;
            tile_weights(kind, w[r], i, &w01[r], &w23[r], &dw);
            dw01[r] = tile_spread(dw, idx01);
            dw23[r] = tile_spread(dw, idx23);
        }
        for (int t = 0; t < T; t++) {
            const __m128 dy = tile_f16x4(y[t] + i);
            const __m512 dy01 = tile_spread(dy, idx01), dy23 = tile_spread(dy, idx23);
            const __m512i y01 = tile_load2(y[t][i].qs, y[t][i + 1].qs);
            const __m512i y23 = tile_load2(y[t][i + 2].qs, y[t][i + 3].qs);
            const __m512i b01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), koff, y01);
            const __m512i b23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), koff, y23);
            for (int r = 0; r < TILE_R; r++) {
                /* lane by lane the same products dw * dy as the twin's permuted 4-wide product */
                const __m512i p01 = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w01[r], y01), b01);
                const __m512i p23 = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w23[r], y23), b23);
                acc0[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(dw01[r], dy01), _mm512_cvtepi32_ps(p01), acc0[r][t]);
                acc1[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(dw23[r], dy23), _mm512_cvtepi32_ps(p23), acc1[r][t]);
            }
        }
    }
    for (int r = 0; r < TILE_R; r++) {
        for (int t = 0; t < T; t++) {
            out[t * out_stride + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r][t], acc1[r][t]));
        }
    }
}

#define TILE_Q8(name, kind, T)                                                                                 \
    EMB_TARGET_AVX512 static void name##_t##T(int64_t n, const void *w, size_t wb, const void *y, size_t yb,  \
                                              float *out, int64_t os) {                                       \
        tile_q8_body(kind, T, n, w, wb, y, yb, out, os);                                                      \
    }
TILE_Q8(tile_q8_0, KIND_Q8_0, 1)
TILE_Q8(tile_q8_0, KIND_Q8_0, 2)
TILE_Q8(tile_q8_0, KIND_Q8_0, 3)
TILE_Q8(tile_q8_0, KIND_Q8_0, 4)
TILE_Q8(tile_q5_0, KIND_Q5_0, 1)
TILE_Q8(tile_q5_0, KIND_Q5_0, 2)
TILE_Q8(tile_q5_0, KIND_Q5_0, 3)
TILE_Q8(tile_q5_0, KIND_Q5_0, 4)

/* ---- K-quants against Q8_K: one super-block (256 elements) per step ---- */

/* Q4_K / Q5_K: the eight 6-bit scales and mins as bytes (the same decoding as quants_x86.c). */
static inline void tile_k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t w0, w1, w2;
    memcpy(&w0, s, 4);
    memcpy(&w1, s + 4, 4);
    memcpy(&w2, s + 8, 4);
    const uint32_t sc_lo = w0 & 0x3f3f3f3fu;
    const uint32_t mn_lo = w1 & 0x3f3f3f3fu;
    const uint32_t sc_hi = (w2 & 0x0f0f0f0fu) | ((w0 >> 2) & 0x30303030u);
    const uint32_t mn_hi = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 2) & 0x30303030u);
    *sc = (uint64_t)sc_lo | ((uint64_t)sc_hi << 32);
    *mn = (uint64_t)mn_lo | ((uint64_t)mn_hi << 32);
}

/* Twin: vd_q4_k_512. */
static inline EMB_TARGET_AVX512 __attribute__((always_inline)) void tile_q4_k_body(
    const int T, int64_t n, const void *vw, size_t w_row_bytes, const void *vy, size_t y_row_bytes, float *out,
    int64_t out_stride) {
    const int64_t nb = n / QK_K;
    const block_q4_K *x[TILE_R];
    const block_q8_K *y[4];
    for (int r = 0; r < TILE_R; r++) x[r] = (const block_q4_K *)((const char *)vw + (size_t)r * w_row_bytes);
    for (int t = 0; t < T; t++) y[t] = (const block_q8_K *)((const char *)vy + (size_t)t * y_row_bytes);
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    const __m512i shifts = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    __m512i sidx[4];
    for (int j = 0; j < 4; j++) {
        const __m256i lo = _mm256_set1_epi16((short)(2 * j)), hi = _mm256_set1_epi16((short)(2 * j + 1));
        sidx[j] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    __m512 acc[TILE_R][4];
    float summ[TILE_R][4];
    for (int r = 0; r < TILE_R; r++) {
        for (int t = 0; t < T; t++) {
            acc[r][t] = _mm512_setzero_ps();
            summ[r][t] = 0.0f;
        }
    }
    for (int64_t i = 0; i < nb; i++) {
        __m512i u[TILE_R][4], sv[TILE_R][4];
        __m128i mins[TILE_R];
        float dmin[TILE_R], d[TILE_R];
        for (int r = 0; r < TILE_R; r++) {
            uint64_t sc8, mn8;
            tile_k4_scales(x[r][i].scales, &sc8, &mn8);
            const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
            mins[r] = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn8));
            dmin[r] = _cvtsh_ss(x[r][i].dmin);
            d[r] = _cvtsh_ss(x[r][i].d);
            for (int j = 0; j < 4; j++) {
                const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[r][i].qs + 32 * j)));
                u[r][j] = _mm512_and_si512(_mm512_srlv_epi64(q, shifts), m0f);
                sv[r][j] = _mm512_permutexvar_epi16(sidx[j], sc16);
            }
        }
        for (int t = 0; t < T; t++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)y[t][i].bsums);
            const __m128i bs2 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            const float dy = y[t][i].d;
            __m512i yv[4];
            for (int j = 0; j < 4; j++) yv[j] = _mm512_loadu_si512(y[t][i].qs + 64 * j);
            for (int r = 0; r < TILE_R; r++) {
                const __m128i mp = _mm_madd_epi16(mins[r], bs2);
                __m128i ms = _mm_add_epi32(mp, _mm_shuffle_epi32(mp, 0x4e));
                ms = _mm_add_epi32(ms, _mm_shuffle_epi32(ms, 0xb1));
                summ[r][t] += dy * dmin[r] * (float)_mm_cvtsi128_si32(ms);
                __m512i sumi = _mm512_setzero_si512();
                for (int j = 0; j < 4; j++) {
                    sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(u[r][j], yv[j]), sv[r][j]);
                }
                acc[r][t] = _mm512_fmadd_ps(_mm512_set1_ps(dy * d[r]), _mm512_cvtepi32_ps(sumi), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < TILE_R; r++) {
        for (int t = 0; t < T; t++) out[t * out_stride + r] = _mm512_reduce_add_ps(acc[r][t]) - summ[r][t];
    }
}

/* Twin: vd_q6_k_512. */
static inline EMB_TARGET_AVX512 __attribute__((always_inline)) void tile_q6_k_body(
    const int T, int64_t n, const void *vw, size_t w_row_bytes, const void *vy, size_t y_row_bytes, float *out,
    int64_t out_stride) {
    const int64_t nb = n / QK_K;
    const block_q6_K *x[TILE_R];
    const block_q8_K *y[4];
    for (int r = 0; r < TILE_R; r++) x[r] = (const block_q6_K *)((const char *)vw + (size_t)r * w_row_bytes);
    for (int t = 0; t < T; t++) y[t] = (const block_q8_K *)((const char *)vy + (size_t)t * y_row_bytes);
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i shl_lo = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
    const __m512i shr_hi = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    __m512i sidx[4];
    for (int g = 0; g < 4; g++) {
        short v[32];
        for (int k = 0; k < 32; k++) v[k] = (short)(4 * g + k / 8);
        sidx[g] = _mm512_loadu_si512(v);
    }
    __m512 acc[TILE_R][4];
    for (int r = 0; r < TILE_R; r++) {
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        __m512i ulo[TILE_R][2], uhi[TILE_R][2], sv[TILE_R][4];
        __m256i sc[TILE_R];
        float d[TILE_R];
        for (int r = 0; r < TILE_R; r++) {
            sc[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[r][i].scales));
            const __m512i sc512 = _mm512_castsi256_si512(sc[r]);
            d[r] = _cvtsh_ss(x[r][i].d);
            for (int h = 0; h < 2; h++) {
                const __m512i ql = _mm512_loadu_si512(x[r][i].ql + 64 * h);
                const __m512i qh =
                    _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[r][i].qh + 32 * h)));
                ulo[r][h] = _mm512_or_si512(_mm512_and_si512(ql, m0f),
                                            _mm512_and_si512(_mm512_sllv_epi64(qh, shl_lo), m30));
                uhi[r][h] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m0f),
                                            _mm512_and_si512(_mm512_srlv_epi64(qh, shr_hi), m30));
                sv[r][2 * h] = _mm512_permutexvar_epi16(sidx[2 * h], sc512);
                sv[r][2 * h + 1] = _mm512_permutexvar_epi16(sidx[2 * h + 1], sc512);
            }
        }
        for (int t = 0; t < T; t++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)y[t][i].bsums);
            __m512i yv[4];
            for (int k = 0; k < 4; k++) yv[k] = _mm512_loadu_si512(y[t][i].qs + 64 * k);
            for (int r = 0; r < TILE_R; r++) {
                const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc[r], bs), 5);
                __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
                for (int h = 0; h < 2; h++) {
                    const __m512i plo = _mm512_maddubs_epi16(ulo[r][h], yv[2 * h]);
                    const __m512i phi = _mm512_maddubs_epi16(uhi[r][h], yv[2 * h + 1]);
                    sumi = _mm512_dpwssd_epi32(sumi, plo, sv[r][2 * h]);
                    sumi = _mm512_dpwssd_epi32(sumi, phi, sv[r][2 * h + 1]);
                }
                acc[r][t] = _mm512_fmadd_ps(_mm512_set1_ps(y[t][i].d * d[r]), _mm512_cvtepi32_ps(sumi), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < TILE_R; r++) {
        for (int t = 0; t < T; t++) out[t * out_stride + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

#define TILE_K(name, body, T)                                                                                  \
    EMB_TARGET_AVX512 static void name##_t##T(int64_t n, const void *w, size_t wb, const void *y, size_t yb,  \
                                              float *out, int64_t os) {                                       \
        body(T, n, w, wb, y, yb, out, os);                                                                    \
    }
TILE_K(tile_q4_k, tile_q4_k_body, 1)
TILE_K(tile_q4_k, tile_q4_k_body, 2)
TILE_K(tile_q4_k, tile_q4_k_body, 3)
TILE_K(tile_q4_k, tile_q4_k_body, 4)
TILE_K(tile_q6_k, tile_q6_k_body, 1)
TILE_K(tile_q6_k, tile_q6_k_body, 2)
TILE_K(tile_q6_k, tile_q6_k_body, 3)
TILE_K(tile_q6_k, tile_q6_k_body, 4)
#endif

emb_dot_tile_fn emb_dot_tile_x86(int type, int level, int64_t n, int n_tok) {
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
    if (level != EMB_LEVEL_AVX512 || n_tok < 1 || n_tok > 4) return NULL;
    static const emb_dot_tile_fn q8_0[4] = {tile_q8_0_t1, tile_q8_0_t2, tile_q8_0_t3, tile_q8_0_t4};
    static const emb_dot_tile_fn q5_0[4] = {tile_q5_0_t1, tile_q5_0_t2, tile_q5_0_t3, tile_q5_0_t4};
    static const emb_dot_tile_fn q4_k[4] = {tile_q4_k_t1, tile_q4_k_t2, tile_q4_k_t3, tile_q4_k_t4};
    static const emb_dot_tile_fn q6_k[4] = {tile_q6_k_t1, tile_q6_k_t2, tile_q6_k_t3, tile_q6_k_t4};
    /* the twins of Q8_0/Q5_0 (vd_q8_0_512, vd_q5_0_512) handle a tail of fewer than 4 blocks differently:
     * whole groups only */
    const int whole4 = n % (4 * QK8_0) == 0;
    if (type == EMB_TYPE_Q8_0 && whole4) return q8_0[n_tok - 1];
    if (type == EMB_TYPE_Q5_0 && whole4) return q5_0[n_tok - 1];
    if (type == EMB_TYPE_Q4_K && n % QK_K == 0) return q4_k[n_tok - 1];
    if (type == EMB_TYPE_Q6_K && n % QK_K == 0) return q6_k[n_tok - 1];
#else
    (void)type;
    (void)level;
    (void)n;
    (void)n_tok;
#endif
    return NULL;
}
