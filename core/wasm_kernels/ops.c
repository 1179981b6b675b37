/*
 * ops.c - the non-matmul operations of a transformer forward pass: norms, RoPE, gated activations, the
 * F16 KV cache, causal attention (GQA, sliding window, softcap) and logit helpers.
 *
 * Numerics follow llama.cpp's CPU backend where it matters for matching its tokens: RMSNorm sums squares
 * in double, GELU goes through a half-precision table, RoPE angles are built by repeated multiplication,
 * attention dots F16 queries with F16 keys.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define EMB_X86 1
#else
#define EMB_X86 0
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

/* ------------------------------------------------------------------------------------------------ */
/* F16 row helpers used by attention: scalar twins and x86 versions.                                  */

static float dot_f16_scalar(const emb_f16 *a, const emb_f16 *b, int64_t n) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += emb_f16_to_f32(a[i]) * emb_f16_to_f32(b[i]);
    return sum;
}



/* acc (half) = half(acc * s): llama.cpp's ggml_vec_scale_f16 */
static void scale_h16_scalar(emb_f16 *acc, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc[i] = emb_f32_to_f16(emb_f16_to_f32(acc[i]) * s);
}

/* acc (half) = half(fma(v, a, acc)): llama.cpp's ggml_vec_mad_f16 */
static void mad_h16_scalar(emb_f16 *acc, const emb_f16 *v, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc[i] = emb_f32_to_f16(fmaf(emb_f16_to_f32(v[i]), a, emb_f16_to_f32(acc[i])));
}

#if EMB_X86

__attribute__((target("avx2,fma,f16c"))) static void scale_h16_avx2(emb_f16 *acc, float s, int64_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc + i)));
        _mm_storeu_si128((__m128i *)(acc + i), _mm256_cvtps_ph(_mm256_mul_ps(x, vs), 0));
    }
    for (; i < n; i++) acc[i] = emb_f32_to_f16(emb_f16_to_f32(acc[i]) * s);
}

__attribute__((target("avx2,fma,f16c"))) static void mad_h16_avx2(emb_f16 *acc, const emb_f16 *v, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i)));
        const __m256 y = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc + i)));
        _mm_storeu_si128((__m128i *)(acc + i), _mm256_cvtps_ph(_mm256_fmadd_ps(x, va, y), 0));
    }
    for (; i < n; i++) acc[i] = emb_f32_to_f16(fmaf(emb_f16_to_f32(v[i]), a, emb_f16_to_f32(acc[i])));
}

__attribute__((target("avx2,fma,f16c"))) static float dot_f16_avx2(const emb_f16 *a, const emb_f16 *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 b0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i)));
        __m256 a1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        __m256 b1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8)));
        s0 = _mm256_fmadd_ps(a0, b0, s0);
        s1 = _mm256_fmadd_ps(a1, b1, s1);
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float sum = _mm_cvtss_f32(h);
    for (; i < n; i++) sum += emb_f16_to_f32(a[i]) * emb_f16_to_f32(b[i]);
    return sum;
}

#endif

typedef float (*dot_f16_fn)(const emb_f16 *, const emb_f16 *, int64_t);
typedef void (*scale_h16_fn)(emb_f16 *, float, int64_t);
typedef void (*mad_h16_fn)(emb_f16 *, const emb_f16 *, float, int64_t);

typedef float (*dot_f32_fn)(const float *, const float *, int64_t);
typedef void (*axpy_f32_fn)(float *, const float *, float, int64_t);
/* q . k[j] for 4 rows k, k + ld, k + 2 ld, k + 3 ld */
typedef void (*dot4_f32_fn)(const float *q, const float *k, int64_t ld, int64_t n, float *out);
/* y += a[0] x + a[1] (x + ld) + a[2] (x + 2 ld) + a[3] (x + 3 ld) */
typedef void (*axpy4_f32_fn)(float *y, const float *x, int64_t ld, const float *a, int64_t n);


typedef void (*cvt_h_fn)(const emb_f16 *, float *, int64_t);

static float dot_f32_scalar(const float *a, const float *b, int64_t n) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static void axpy_f32_scalar(float *y, const float *x, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* y = fma(x, a, y): llama.cpp's ggml_vec_mad_f32 on x86 and ARM (fused multiply-add lanes) */
static void mad_f32_scalar(float *y, const float *x, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = fmaf(x[i], a, y[i]);
}

static void cvt_h_scalar(const emb_f16 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = emb_f16_to_f32(x[i]);
}

static void dot4_f32_scalar(const float *q, const float *k, int64_t ld, int64_t n, float *out) {
    for (int j = 0; j < 4; j++) out[j] = dot_f32_scalar(q, k + j * ld, n);
}

static void axpy4_f32_scalar(float *y, const float *x, int64_t ld, const float *a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a[0] * x[i] + a[1] * x[ld + i] + a[2] * x[2 * ld + i] + a[3] * x[3 * ld + i];
}

#if EMB_X86
__attribute__((target("avx2,fma,f16c"))) static float dot_f32_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float sum = _mm_cvtss_f32(h);
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

__attribute__((target("avx2,fma,f16c"))) static void axpy_f32_avx2(float *y, const float *x, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

__attribute__((target("avx2,fma,f16c"))) static void mad_f32_avx2(float *y, const float *x, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(x[i], a, y[i]);
}

__attribute__((target("avx2,fma,f16c"))) static inline float hsum8(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

__attribute__((target("avx2,fma,f16c"))) static void dot4_f32_avx2(const float *q, const float *k, int64_t ld, int64_t n,
                                                                    float *out) {
    if (n % 8 != 0) {
        dot4_f32_scalar(q, k, ld, n, out);
        return;
    }
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) {
        const __m256 qv = _mm256_loadu_ps(q + i);
        s0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + i), s0);
        s1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + ld + i), s1);
        s2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 2 * ld + i), s2);
        s3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 3 * ld + i), s3);
    }
    out[0] = hsum8(s0);
    out[1] = hsum8(s1);
    out[2] = hsum8(s2);
    out[3] = hsum8(s3);
}

__attribute__((target("avx2,fma,f16c"))) static void axpy4_f32_avx2(float *y, const float *x, int64_t ld, const float *a,
                                                                     int64_t n) {
    if (n % 8 != 0) {
        axpy4_f32_scalar(y, x, ld, a, n);
        return;
    }
    const __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]), a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
    for (int64_t i = 0; i < n; i += 8) {
        __m256 acc = _mm256_loadu_ps(y + i);
        acc = _mm256_fmadd_ps(a0, _mm256_loadu_ps(x + i), acc);
        acc = _mm256_fmadd_ps(a1, _mm256_loadu_ps(x + ld + i), acc);
        acc = _mm256_fmadd_ps(a2, _mm256_loadu_ps(x + 2 * ld + i), acc);
        acc = _mm256_fmadd_ps(a3, _mm256_loadu_ps(x + 3 * ld + i), acc);
        _mm256_storeu_ps(y + i, acc);
    }
}

__attribute__((target("avx2,fma,f16c"))) static void cvt_h_avx2(const emb_f16 *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = emb_f16_to_f32(x[i]);
}
#endif

typedef struct {
    dot_f32_fn dot_ff;      /* float . float */
    axpy_f32_fn axpy;       /* float y += a * float x */
    dot4_f32_fn dot4;       /* one float row . four float rows */
    axpy4_f32_fn axpy4;     /* float y += four scaled float rows */
    cvt_h_fn cvt_h;         /* half row -> float row */
    dot_f16_fn dot_h;       /* half query . half key */
    scale_h16_fn scale_h;   /* half acc *= s */
    mad_h16_fn mad_h;       /* half acc += a * half v */
    axpy_f32_fn mad_f;      /* float y = fma(x, a, y) (unfused y += a * x on WebAssembly, as ggml's WASM build) */
} attn_kernels;

#if defined(__aarch64__)
/* NEON twins of the float path's helpers, bit for bit the scalar ones (the same operations in the same order: the
 * hardware half->float conversion is exact, multiplies and adds stay separate as in the scalar C, which is
 * compiled without contraction).  Four rows go side by side in the lanes of dot4/axpy4, as in attn_wasm.c. */
static void cvt_h_neon(const emb_f16 *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
    for (; i < n; i++) y[i] = emb_f16_to_f32(x[i]);
}

static void mad_f32_neon(float *y, const float *x, float a, int64_t n) {
    const float32x4_t va = vdupq_n_f32(a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), vld1q_f32(x + i), va));
    for (; i < n; i++) y[i] = fmaf(x[i], a, y[i]);
}

static void axpy_f32_neon(float *y, const float *x, float a, int64_t n) {
    const float32x4_t va = vdupq_n_f32(a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_f32(va, vld1q_f32(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

static void dot4_f32_neon(const float *q, const float *k, int64_t ld, int64_t n, float *out) {
    float32x4_t acc = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4x4_t rows = {{vld1q_f32(k + i), vld1q_f32(k + ld + i), vld1q_f32(k + 2 * ld + i),
                               vld1q_f32(k + 3 * ld + i)}};
        /* 4x4 transpose: column c holds element i + c of the four rows */
        const float32x4_t t0 = vtrn1q_f32(rows.val[0], rows.val[1]), t1 = vtrn2q_f32(rows.val[0], rows.val[1]);
        const float32x4_t t2 = vtrn1q_f32(rows.val[2], rows.val[3]), t3 = vtrn2q_f32(rows.val[2], rows.val[3]);
        const float32x4_t c0 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
        const float32x4_t c1 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
        const float32x4_t c2 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
        const float32x4_t c3 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
        acc = vaddq_f32(acc, vmulq_f32(vdupq_n_f32(q[i]), c0));
        acc = vaddq_f32(acc, vmulq_f32(vdupq_n_f32(q[i + 1]), c1));
        acc = vaddq_f32(acc, vmulq_f32(vdupq_n_f32(q[i + 2]), c2));
        acc = vaddq_f32(acc, vmulq_f32(vdupq_n_f32(q[i + 3]), c3));
    }
    float s[4];
    vst1q_f32(s, acc);
    for (; i < n; i++) {
        for (int j = 0; j < 4; j++) s[j] += q[i] * k[j * ld + i];
    }
    for (int j = 0; j < 4; j++) out[j] = s[j];
}

static void axpy4_f32_neon(float *y, const float *x, int64_t ld, const float *a, int64_t n) {
    const float32x4_t a0 = vdupq_n_f32(a[0]), a1 = vdupq_n_f32(a[1]), a2 = vdupq_n_f32(a[2]), a3 = vdupq_n_f32(a[3]);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t t = vaddq_f32(vmulq_f32(a0, vld1q_f32(x + i)), vmulq_f32(a1, vld1q_f32(x + ld + i)));
        t = vaddq_f32(t, vmulq_f32(a2, vld1q_f32(x + 2 * ld + i)));
        t = vaddq_f32(t, vmulq_f32(a3, vld1q_f32(x + 3 * ld + i)));
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), t));
    }
    for (; i < n; i++) y[i] += a[0] * x[i] + a[1] * x[ld + i] + a[2] * x[2 * ld + i] + a[3] * x[3 * ld + i];
}
#endif

static attn_kernels pick_attn_kernels(int level) {
#if EMB_X86
    if (level == EMB_LEVEL_AVX2 || level == EMB_LEVEL_AVX512) {
        const attn_kernels k = {dot_f32_avx2, axpy_f32_avx2, dot4_f32_avx2, axpy4_f32_avx2, cvt_h_avx2, dot_f16_avx2,
                                scale_h16_avx2, mad_h16_avx2, mad_f32_avx2};
        return k;
    }
#endif
#if defined(__aarch64__)
    if (level == EMB_LEVEL_NEON || level == EMB_LEVEL_NEON_DOTPROD) { /* the float path's bit-exact twins */
        const attn_kernels k = {dot_f32_scalar, axpy_f32_neon, dot4_f32_neon, axpy4_f32_neon, cvt_h_neon,
                                dot_f16_scalar, scale_h16_scalar, mad_h16_scalar, mad_f32_neon};
        return k;
    }
#endif
#if (defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__)
    if (level == EMB_LEVEL_WASM_SIMD128 || level == EMB_LEVEL_WASM_RELAXED) { /* attn_wasm.c, bit-exact twins */
        const attn_kernels k = {dot_f32_scalar, emb_attn_axpy_f32_simd128, emb_attn_dot4_f32_simd128,
                                emb_attn_axpy4_f32_simd128, emb_attn_cvt_h_simd128, dot_f16_scalar,
                                scale_h16_scalar, mad_h16_scalar, emb_attn_axpy_f32_simd128};
        return k;
    }
#endif
    (void)level;
    const attn_kernels k = {dot_f32_scalar, axpy_f32_scalar, dot4_f32_scalar, axpy4_f32_scalar, cvt_h_scalar, dot_f16_scalar, scale_h16_scalar,
                            mad_h16_scalar, mad_f32_scalar};
    return k;
}

/* ------------------------------------------------------------------------------------------------ */

int emb_get_rows(emb_ctx *ctx, const void *table, int type, int64_t n_cols, const int32_t *ids, int64_t n_ids,
                 float scale, float *out) {
    emb_ctx_count_call(ctx);
    const emb_type_traits *tr = emb_get_type_traits(type, emb_ctx_level(ctx));
    if (!tr || !tr->to_float || n_cols % tr->block_size != 0) return -1;
    const size_t row_bytes = (size_t)(n_cols / tr->block_size * tr->block_bytes);
    for (int64_t i = 0; i < n_ids; i++) {
        float *dst = out + i * n_cols;
        tr->to_float((const char *)table + (size_t)ids[i] * row_bytes, dst, n_cols);
        if (scale != 1.0f) {
            for (int64_t j = 0; j < n_cols; j++) dst[j] *= scale;
        }
    }
    return 0;
}

static float rms_scale(const float *x, int64_t dim, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < dim; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)dim);
    return 1.0f / sqrtf(mean + eps);
}

void emb_rmsnorm(emb_ctx *ctx, const float *x, const float *w, float *out, int64_t n_rows, int64_t dim, float eps) {
    emb_ctx_count_call(ctx);
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * dim;
        float *o = out + r * dim;
        const float s = rms_scale(xr, dim, eps);
        if (w) {
            for (int64_t i = 0; i < dim; i++) o[i] = (xr[i] * s) * w[i];
        } else {
            for (int64_t i = 0; i < dim; i++) o[i] = xr[i] * s;
        }
    }
}

void emb_rmsnorm_add(emb_ctx *ctx, const float *x, const float *w, float *acc, int64_t n_rows, int64_t dim, float eps) {
    emb_ctx_count_call(ctx);
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * dim;
        float *a = acc + r * dim;
        const float s = rms_scale(xr, dim, eps);
        if (w) {
            for (int64_t i = 0; i < dim; i++) a[i] += (xr[i] * s) * w[i];
        } else {
            for (int64_t i = 0; i < dim; i++) a[i] += xr[i] * s;
        }
    }
}

void emb_add(emb_ctx *ctx, const float *x, float *acc, int64_t n) {
    emb_ctx_count_call(ctx);
    for (int64_t i = 0; i < n; i++) acc[i] += x[i];
}

/* ------------------------------------------------------------------------------------------------ */

/* Rotary embedding; ``freq_factors`` (n_rot / 2 floats, or NULL) divide each pair's angle (llama.cpp's
 * rope_freqs: Llama 3 rope scaling, Phi-3 long-rope). */
static void rope_rows(float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t *pos,
                      float freq_base, float freq_scale, int mode, const float *freq_factors) {
    if (n_rot > head_dim) n_rot = head_dim;
    const int64_t half = n_rot / 2;
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float cache[2048]; /* cos, sin pairs: head_dim <= 2048 */
    if (n_rot > 2048) return;
    for (int64_t t = 0; t < n_tok; t++) {
        float theta = (float)pos[t];
        for (int64_t i = 0; i < half; i++) {
            const float ff = freq_factors ? freq_factors[i] : 1.0f;
            const float th = (theta / ff) * freq_scale;
            cache[2 * i] = cosf(th);
            cache[2 * i + 1] = sinf(th);
            theta *= theta_scale;
        }
        for (int64_t h = 0; h < n_heads; h++) {
            float *v = x + (t * n_heads + h) * head_dim;
            for (int64_t i = 0; i < half; i++) {
                const float c = cache[2 * i], s = cache[2 * i + 1];
                const int64_t i0 = mode == EMB_ROPE_NEOX ? i : 2 * i;
                const int64_t i1 = mode == EMB_ROPE_NEOX ? i + half : 2 * i + 1;
                const float x0 = v[i0], x1 = v[i1];
                v[i0] = x0 * c - x1 * s;
                v[i1] = x0 * s + x1 * c;
            }
        }
    }
}

void emb_rope(emb_ctx *ctx, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t n_rot,
              const int32_t *pos, float freq_base, float freq_scale, int mode) {
    emb_ctx_count_call(ctx);
    rope_rows(x, n_tok, n_heads, head_dim, n_rot, pos, freq_base, freq_scale, mode, NULL);
}

void emb_rope_ff(emb_ctx *ctx, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                 const int32_t *pos, float freq_base, float freq_scale, int mode, const float *freq_factors) {
    emb_ctx_count_call(ctx);
    rope_rows(x, n_tok, n_heads, head_dim, n_rot, pos, freq_base, freq_scale, mode, freq_factors);
}

void emb_add_rows(emb_ctx *ctx, const float *bias, float *x, int64_t n_rows, int64_t dim) {
    emb_ctx_count_call(ctx);
    for (int64_t r = 0; r < n_rows; r++) {
        float *row = x + r * dim;
        for (int64_t i = 0; i < dim; i++) row[i] += bias[i];
    }
}

void emb_add_rows_scaled(emb_ctx *ctx, const float *x, const int32_t *rows, const float *scales, float *acc,
                         int64_t n_rows, int64_t dim) {
    emb_ctx_count_call(ctx);
    for (int64_t r = 0; r < n_rows; r++) {
        const float *src = x + r * dim;
        float *dst = acc + (int64_t)rows[r] * dim;
        const float s = scales[r];
        for (int64_t i = 0; i < dim; i++) dst[i] += s * src[i];
    }
}

void emb_softcap(emb_ctx *ctx, float *x, int64_t n, float cap) {
    emb_ctx_count_call(ctx);
    const float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i] * inv) * cap; /* ggml: scale, tanh, scale */
}

/* ------------------------------------------------------------------------------------------------ */

static inline float silu_f32(float x) { return x / (1.0f + expf(-x)); }

static inline float gelu_table_f32(const emb_f16 *table, float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return emb_f16_to_f32(table[emb_f32_to_f16(x)]);
}

static inline float gelu_erf_f32(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f)); }

static inline float act_f32(const emb_f16 *gelu_table, float x, int kind) {
    switch (kind) {
    case EMB_ACT_SILU: return silu_f32(x);
    case EMB_ACT_GELU_TANH: return gelu_table_f32(gelu_table, x);
    case EMB_ACT_GELU_ERF: return gelu_erf_f32(x);
    case EMB_ACT_RELU: return x > 0.0f ? x : 0.0f;
    default: return x;
    }
}

typedef struct {
    const float *gate, *up;
    float *out;
    int64_t n_tok, n, gate_stride, up_stride;
    int kind;
    const emb_f16 *table;
    int level;
} glu_task;

static void geglu_row_scalar(const emb_f16 *table, const float *g, const float *u, float *o, int64_t n) {
    for (int64_t i = 0; i < n; i++) o[i] = gelu_table_f32(table, g[i]) * u[i];
}

#if EMB_X86
/* The same table lookups with F16C conversions, 8 at a time (the results are identical to the scalar twin). */
__attribute__((target("avx2,fma,f16c"))) static void geglu_row_avx2(const emb_f16 *table, const float *g, const float *u,
                                                                     float *o, int64_t n) {
    int64_t i = 0;
    const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m128i h = _mm256_cvtps_ph(x, 0);
        uint16_t idx[8], val[8];
        _mm_storeu_si128((__m128i *)idx, h);
        for (int k = 0; k < 8; k++) val[k] = table[idx[k]];
        __m256 y = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)val));
        y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LE_OQ));
        y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
        _mm256_storeu_ps(o + i, _mm256_mul_ps(y, _mm256_loadu_ps(u + i)));
    }
    geglu_row_scalar(table, g + i, u + i, o + i, n - i);
}
#endif

static void glu_worker(void *p, int ith, int nth) {
    glu_task *t = (glu_task *)p;
    for (int64_t r = ith; r < t->n_tok; r += nth) {
        const float *g = t->gate + r * t->gate_stride;
        const float *u = t->up + r * t->up_stride;
        float *o = t->out + r * t->n;
        if (t->kind == EMB_ACT_GELU_TANH) {
#if EMB_X86
            if (t->level == EMB_LEVEL_AVX2 || t->level == EMB_LEVEL_AVX512) {
                geglu_row_avx2(t->table, g, u, o, t->n);
                continue;
            }
#endif
            geglu_row_scalar(t->table, g, u, o, t->n);
            continue;
        }
        for (int64_t i = 0; i < t->n; i++) o[i] = act_f32(t->table, g[i], t->kind) * u[i];
    }
}

void emb_glu(emb_ctx *ctx, const float *gate, const float *up, float *out, int64_t n_tok, int64_t n,
             int64_t gate_stride, int64_t up_stride, int kind) {
    emb_ctx_count_call(ctx);
    glu_task t = {gate, up, out, n_tok, n, gate_stride, up_stride, kind, emb_ctx_gelu_table(ctx), emb_ctx_level(ctx)};
    if (n_tok > 1) {
        emb_parallel(ctx, glu_worker, &t);
    } else {
        glu_worker(&t, 0, 1);
    }
}

/* In place; -inf entries (masked) become 0. */
static void softmax_row(float *v, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        v[i] = v[i] == -INFINITY ? 0.0f : expf(v[i] - mx);
        sum += v[i];
    }
    const float inv = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
    for (int64_t i = 0; i < n; i++) v[i] *= inv;
}

/* ------------------------------------------------------------------------------------------------ */

/* KV cache types (llama.cpp's -ctk/-ctv): F32, F16, Q8_0, Q4_0. */
static int kv_type_ok(int type) {
    return type == EMB_TYPE_F32 || type == EMB_TYPE_F16 || type == EMB_TYPE_Q8_0 || type == EMB_TYPE_Q4_0;
}

static int kv_type_quantized(int type) { return type == EMB_TYPE_Q8_0 || type == EMB_TYPE_Q4_0; }

int emb_kv_type_supported(int type) { return kv_type_ok(type); }

/* The Walsh-Hadamard rotation llama.cpp applies with a quantized K cache (llama_kv_cache::build_input_k_rot):
 * chunks of the largest power of two >= 64 dividing head_dim (head_dim % 64 == 0), else none (0). */
static int64_t kv_rot_k(int type_k, int64_t head_dim) {
    if (!kv_type_quantized(type_k) || head_dim % 64 != 0) return 0;
    int64_t n = 64;
    do {
        n *= 2;
    } while (head_dim % n == 0);
    return n / 2;
}

/* ... and with a quantized V cache: chunks of 64 (build_input_v_rot). */
static int64_t kv_rot_v(int type_v, int64_t head_dim) {
    return kv_type_quantized(type_v) && head_dim % 64 == 0 ? 64 : 0;
}

/* x (len values) times the orthonormal Walsh-Hadamard matrix of size n, chunk by chunk: ggml's
 * ggml_compute_forward_fwht (scale by 1/sqrt(n) first, then butterflies of width 1, 2, 4, ...; its SIMD passes
 * compute u - v as fma(v, -1, u), which is exact, so every level gives these bits). */
static void fwht_rows(float *x, int64_t len, int64_t n) {
    const float scale = 1.0f / sqrtf((float)n);
    for (int64_t c = 0; c + n <= len; c += n) {
        float *r = x + c;
        for (int64_t j = 0; j < n; j++) r[j] = r[j] * scale;
        for (int64_t h = 1; h < n; h <<= 1) {
            for (int64_t i = 0; i < n; i += 2 * h) {
                for (int64_t j = 0; j < h; j++) {
                    const float u = r[i + j], v = r[i + h + j];
                    r[i + j] = u + v;
                    r[i + h + j] = u - v;
                }
            }
        }
    }
}

/* n floats into a cache row of ``type`` (F16 rounds to nearest even as ggml_cpu_fp32_to_fp16; the quantized
 * types use the level's from_float, bit-exact with the scalar one). */
static void kv_from_float(const emb_type_traits *tr, int type, const float *src, void *dst, int64_t n) {
    if (type == EMB_TYPE_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
    } else if (type == EMB_TYPE_F16) {
        emb_f16 *d = (emb_f16 *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = emb_f32_to_f16(src[i]);
    } else {
        tr->from_float(src, dst, n);
    }
}

static void kv_to_float(const emb_type_traits *tr, int type, const void *src, float *dst, int64_t n) {
    if (type == EMB_TYPE_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
    } else if (type == EMB_TYPE_F16) {
        const emb_f16 *s = (const emb_f16 *)src;
        for (int64_t i = 0; i < n; i++) dst[i] = emb_f16_to_f32(s[i]);
    } else {
        tr->to_float(src, dst, n);
    }
}

static int kv_shape_ok(int type, int64_t head_dim) {
    return kv_type_ok(type) && head_dim > 0 && head_dim % emb_type_block_size(type) == 0;
}

void emb_kv_store(emb_ctx *ctx, const float *k, const float *v, uint16_t *k_cache, uint16_t *v_cache, int64_t n_tok,
                  int64_t kv_dim, int64_t k_stride, int64_t v_stride, int64_t pos0) {
    emb_ctx_count_call(ctx);
    for (int64_t t = 0; t < n_tok; t++) {
        uint16_t *kd = k_cache + (pos0 + t) * kv_dim;
        uint16_t *vd = v_cache + (pos0 + t) * kv_dim;
        const float *ks = k + t * k_stride;
        const float *vs = v + t * v_stride;
        for (int64_t i = 0; i < kv_dim; i++) {
            kd[i] = emb_f32_to_f16(ks[i]);
            vd[i] = emb_f32_to_f16(vs[i]);
        }
    }
}

int emb_kv_store_typed(emb_ctx *ctx, const float *k, const float *v, void *k_cache, void *v_cache, int type_k,
                       int type_v, int64_t n_tok, int64_t n_kv_head, int64_t head_dim, int64_t k_stride,
                       int64_t v_stride, int64_t pos0) {
    emb_ctx_count_call(ctx);
    if (!kv_shape_ok(type_k, head_dim) || !kv_shape_ok(type_v, head_dim) || n_kv_head <= 0) return -1;
    const int level = emb_ctx_level(ctx);
    const emb_type_traits *tk = emb_get_type_traits(type_k, level), *tv = emb_get_type_traits(type_v, level);
    const int64_t kv_dim = n_kv_head * head_dim;
    const size_t k_row = (size_t)emb_row_size(type_k, kv_dim), v_row = (size_t)emb_row_size(type_v, kv_dim);
    const int64_t rk = kv_rot_k(type_k, head_dim), rv = kv_rot_v(type_v, head_dim);
    float *tmp = NULL;
    if (rk || rv) {
        tmp = (float *)emb_ctx_scratch(ctx, sizeof(float) * (size_t)kv_dim);
        if (!tmp) return -2;
    }
    for (int64_t t = 0; t < n_tok; t++) {
        const float *ks = k + t * k_stride, *vs = v + t * v_stride;
        char *kd = (char *)k_cache + (size_t)(pos0 + t) * k_row, *vd = (char *)v_cache + (size_t)(pos0 + t) * v_row;
        if (rk) {
            memcpy(tmp, ks, sizeof(float) * (size_t)kv_dim);
            fwht_rows(tmp, kv_dim, rk);
            ks = tmp;
        }
        kv_from_float(tk, type_k, ks, kd, kv_dim);
        if (rv) {
            memcpy(tmp, vs, sizeof(float) * (size_t)kv_dim);
            fwht_rows(tmp, kv_dim, rv);
            vs = tmp;
        }
        kv_from_float(tv, type_v, vs, vd, kv_dim);
    }
    return 0;
}

/* Attention follows llama.cpp's CPU flash attention, whose rounding differs by batch size:
 *  - fewer than emb_ctx_attn_half_rows query rows (EMB_ATTN_HALF_ROWS = 64 natively): the query is rounded to
 *    half and the output accumulates in half precision with an online softmax (its "one chunk" path);
 *  - larger batches: float query and float accumulation (its tiled path).
 * The WebAssembly and NEON levels take the float path at every size: WebAssembly has no half conversion or fused
 * multiply-add instructions, so the half path costs about eight times as much there, and on ARM the float path
 * has SIMD twins that are exact copies of the scalar ones (the half path's running sum in index order has none).
 * Caches with a quantized K or V (emb_attention_typed) take the one-chunk path at every size, as llama.cpp does for
 * them; an F32 K or V is read as F16 everywhere (llama.cpp casts an F32 cache to F16 before flash attention). */

/* Context shift: drop cache rows [n_keep, n_keep + n_discard), move the later rows down, and rotate their keys
 * by -n_discard positions so they carry the RoPE of their new positions (computed in float, stored in the cache
 * type: llama.cpp's build_rope_shift, which for a quantized K dequantizes, undoes the Hadamard rotation, ropes,
 * rotates and quantizes again).  ``freq_factors`` (n_rot / 2 floats, or NULL) as in rope_rows. */
static int kv_shift_rows(void *k_cache, void *v_cache, int type_k, int type_v, int64_t n_past, int64_t n_keep,
                         int64_t n_discard, int64_t n_kv_head, int64_t head_dim, int64_t n_rot, float freq_base,
                         float freq_scale, int mode, const float *freq_factors, emb_ctx *ctx) {
    if (n_keep < 0 || n_discard <= 0 || n_keep + n_discard > n_past || head_dim > 2048) return 0;
    const int64_t kv_dim = n_kv_head * head_dim;
    const size_t k_row = (size_t)emb_row_size(type_k, kv_dim), v_row = (size_t)emb_row_size(type_v, kv_dim);
    const int64_t n_move = n_past - n_keep - n_discard;
    memmove((char *)k_cache + (size_t)n_keep * k_row, (char *)k_cache + (size_t)(n_keep + n_discard) * k_row,
            k_row * (size_t)n_move);
    memmove((char *)v_cache + (size_t)n_keep * v_row, (char *)v_cache + (size_t)(n_keep + n_discard) * v_row,
            v_row * (size_t)n_move);
    if (n_rot > head_dim) n_rot = head_dim;
    const int64_t half = n_rot / 2;
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float cs[2048];
    float theta = (float)(-n_discard);
    for (int64_t i = 0; i < half; i++) {
        const float ff = freq_factors ? freq_factors[i] : 1.0f;
        cs[2 * i] = cosf((theta / ff) * freq_scale);
        cs[2 * i + 1] = sinf((theta / ff) * freq_scale);
        theta *= theta_scale;
    }
    if (type_k == EMB_TYPE_F16) {
        for (int64_t r = n_keep; r < n_keep + n_move; r++) {
            for (int64_t h = 0; h < n_kv_head; h++) {
                uint16_t *v = (uint16_t *)k_cache + r * kv_dim + h * head_dim;
                for (int64_t i = 0; i < half; i++) {
                    const int64_t i0 = mode == EMB_ROPE_NEOX ? i : 2 * i;
                    const int64_t i1 = mode == EMB_ROPE_NEOX ? i + half : 2 * i + 1;
                    const float x0 = emb_f16_to_f32(v[i0]), x1 = emb_f16_to_f32(v[i1]);
                    v[i0] = emb_f32_to_f16(x0 * cs[2 * i] - x1 * cs[2 * i + 1]);
                    v[i1] = emb_f32_to_f16(x0 * cs[2 * i + 1] + x1 * cs[2 * i]);
                }
            }
        }
        return 0;
    }
    const emb_type_traits *tk = emb_get_type_traits(type_k, emb_ctx_level(ctx));
    const int64_t rk = kv_rot_k(type_k, head_dim);
    float *row = type_k == EMB_TYPE_F32 ? NULL : (float *)emb_ctx_scratch(ctx, sizeof(float) * (size_t)kv_dim);
    if (type_k != EMB_TYPE_F32 && !row) return -2;
    for (int64_t r = n_keep; r < n_keep + n_move; r++) {
        char *dst = (char *)k_cache + (size_t)r * k_row;
        float *x = type_k == EMB_TYPE_F32 ? (float *)dst : row;
        if (x == row) kv_to_float(tk, type_k, dst, row, kv_dim);
        if (rk) fwht_rows(x, kv_dim, rk);
        for (int64_t h = 0; h < n_kv_head; h++) {
            float *v = x + h * head_dim;
            for (int64_t i = 0; i < half; i++) {
                const int64_t i0 = mode == EMB_ROPE_NEOX ? i : 2 * i;
                const int64_t i1 = mode == EMB_ROPE_NEOX ? i + half : 2 * i + 1;
                const float x0 = v[i0], x1 = v[i1];
                v[i0] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
                v[i1] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
            }
        }
        if (rk) fwht_rows(x, kv_dim, rk);
        if (x == row) kv_from_float(tk, type_k, row, dst, kv_dim);
    }
    return 0;
}

void emb_kv_shift(emb_ctx *ctx, uint16_t *k_cache, uint16_t *v_cache, int64_t n_past, int64_t n_keep, int64_t n_discard,
                  int64_t n_kv_head, int64_t head_dim, int64_t n_rot, float freq_base, float freq_scale, int mode) {
    emb_ctx_count_call(ctx);
    kv_shift_rows(k_cache, v_cache, EMB_TYPE_F16, EMB_TYPE_F16, n_past, n_keep, n_discard, n_kv_head, head_dim, n_rot,
                  freq_base, freq_scale, mode, NULL, ctx);
}

void emb_kv_shift_ff(emb_ctx *ctx, uint16_t *k_cache, uint16_t *v_cache, int64_t n_past, int64_t n_keep,
                     int64_t n_discard, int64_t n_kv_head, int64_t head_dim, int64_t n_rot, float freq_base,
                     float freq_scale, int mode, const float *freq_factors) {
    emb_ctx_count_call(ctx);
    kv_shift_rows(k_cache, v_cache, EMB_TYPE_F16, EMB_TYPE_F16, n_past, n_keep, n_discard, n_kv_head, head_dim, n_rot,
                  freq_base, freq_scale, mode, freq_factors, ctx);
}

int emb_kv_shift_typed(emb_ctx *ctx, void *k_cache, void *v_cache, int type_k, int type_v, int64_t n_past,
                       int64_t n_keep, int64_t n_discard, int64_t n_kv_head, int64_t head_dim, int64_t n_rot,
                       float freq_base, float freq_scale, int mode, const float *freq_factors) {
    emb_ctx_count_call(ctx);
    if (!kv_shape_ok(type_k, head_dim) || !kv_shape_ok(type_v, head_dim) || n_kv_head <= 0) return -1;
    return kv_shift_rows(k_cache, v_cache, type_k, type_v, n_past, n_keep, n_discard, n_kv_head, head_dim, n_rot,
                         freq_base, freq_scale, mode, freq_factors, ctx);
}

/* Attention paths: the half one-chunk and float-tile paths of an F16 (or, for the tiles, F32) cache, and the
 * one-chunk path of any cache type. */
#define ATTN_HALF 0
#define ATTN_FLOAT 1
#define ATTN_TYPED 2

typedef struct {
    const float *q;
    const char *kb, *vb;          /* rows of k_row / v_row bytes, heads k_head / v_head bytes apart */
    size_t k_row, v_row, k_head, v_head;
    int type_k, type_v;           /* F32 rows are read as F16 (llama.cpp casts an F32 cache to F16 for FA) */
    const emb_type_traits *tk, *tv, *tq; /* K, V and K's vec_dot type at the context's level */
    int64_t rot_k, rot_v;
    float *out;
    int64_t n_tok, n_head, n_kv_head, head_dim, q_stride, pos0, window;
    float scale, softcap;
    float *scratch;
    int64_t scratch_per_thread;
    attn_kernels kern;
    int path;
    int64_t parts; /* ATTN_TYPED: a KV group's heads are split into this many work items */
    emb_counter next;
} attn_task;

static inline float attn_score(const attn_task *t, float s) {
    s *= t->scale;
    if (t->softcap > 0.0f) s = t->softcap * tanhf(s / t->softcap);
    return s;
}

/* Row p of head kvh of the K (is_v 0) or V cache as halves: the F16 row itself, or an F32 row rounded into tmp. */
static inline const emb_f16 *attn_half_row(const attn_task *t, int is_v, int64_t p, int64_t kvh, emb_f16 *tmp) {
    const char *row = is_v ? t->vb + (size_t)p * t->v_row + (size_t)kvh * t->v_head
                           : t->kb + (size_t)p * t->k_row + (size_t)kvh * t->k_head;
    if ((is_v ? t->type_v : t->type_k) == EMB_TYPE_F16) return (const emb_f16 *)row;
    const float *f = (const float *)row;
    for (int64_t i = 0; i < t->head_dim; i++) tmp[i] = emb_f32_to_f16(f[i]);
    return tmp;
}

static void attention_one_half(const attn_task *t, int64_t tok, int64_t h, emb_f16 *qh, emb_f16 *acc_h, emb_f16 *tmp) {
    const int64_t hd = t->head_dim;
    const int64_t kvh = h / (t->n_head / t->n_kv_head);
    const float *q = t->q + tok * t->q_stride + h * hd;
    for (int64_t i = 0; i < hd; i++) qh[i] = emb_f32_to_f16(q[i]);
    const int64_t p_hi = t->pos0 + tok;
    const int64_t p_lo = (t->window > 0 && p_hi - t->window + 1 > 0) ? p_hi - t->window + 1 : 0;
    memset(acc_h, 0, sizeof(emb_f16) * (size_t)hd);
    float S = 0.0f, M = -INFINITY;
    for (int64_t p = p_lo; p <= p_hi; p++) {
        const float s = attn_score(t, t->kern.dot_h(qh, attn_half_row(t, 0, p, kvh, tmp), hd));
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            const float old = M;
            M = s;
            ms = expf(old - M);
            t->kern.scale_h(acc_h, ms, hd);
        } else {
            vs = expf(s - M);
        }
        t->kern.mad_h(acc_h, attn_half_row(t, 1, p, kvh, tmp), vs, hd);
        S = S * ms + vs;
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    float *o = t->out + tok * (t->n_head * hd) + h * hd;
    for (int64_t i = 0; i < hd; i++) o[i] = emb_f16_to_f32(acc_h[i]) * inv;
}

/* Query rows of heads h0 .. h1 - 1 (one KV group) of one token over a cache of any type, each head exactly as
 * ggml_compute_forward_flash_attn_ext_f16_one_chunk computes its row: the query (rotated with a quantized K) is
 * converted to K's vec_dot type (Q8_0 for Q8_0/Q4_0 keys, half for F16 and F32) and dotted with the level's vec_dot;
 * an F16 V accumulates in half as attention_one_half does, any other V in float (rows dequantized, fused
 * multiply-add); the output is rotated back with a quantized V.  An F32 K or V is read as F16 (llama.cpp casts
 * it).  The heads of a group share each position's K and V row: it is converted or dequantized once for all of
 * them (per head the operations and their order are the same as one head alone).  mem: typed_scratch floats. */
static int64_t typed_scratch(int64_t hd, int64_t n_heads) { return 2 * hd + n_heads * (4 * hd + 2) + 16; }

static void attention_group_typed(const attn_task *t, int64_t tok, int64_t h0, int64_t h1, float *mem) {
    const int64_t hd = t->head_dim, nh = h1 - h0;
    const int64_t kvh = h0 / (t->n_head / t->n_kv_head);
    float *v32 = mem;
    emb_f16 *ktmp = (emb_f16 *)(v32 + hd), *vtmp = ktmp + hd; /* F32 rows rounded to half */
    float *SM = v32 + 2 * hd;                                 /* S, M of each head */
    float *heads = SM + 2 * nh;                               /* per head: qf, qq, acc (hd each), acc_h (hd / 2) */
    const int k_half = t->type_k == EMB_TYPE_F16 || t->type_k == EMB_TYPE_F32;
    const int v_half = t->type_v == EMB_TYPE_F16 || t->type_v == EMB_TYPE_F32;
    for (int64_t j = 0; j < nh; j++) {
        float *qf = heads + j * 4 * hd, *acc = qf + 2 * hd;
        void *qq = qf + hd;
        emb_f16 *acc_h = (emb_f16 *)(acc + hd);
        memcpy(qf, t->q + tok * t->q_stride + (h0 + j) * hd, sizeof(float) * (size_t)hd);
        if (t->rot_k) fwht_rows(qf, hd, t->rot_k);
        if (k_half) {
            for (int64_t i = 0; i < hd; i++) ((emb_f16 *)qq)[i] = emb_f32_to_f16(qf[i]);
        } else {
            t->tq->from_float(qf, qq, hd);
        }
        if (v_half) {
            memset(acc_h, 0, sizeof(emb_f16) * (size_t)hd);
        } else {
            memset(acc, 0, sizeof(float) * (size_t)hd);
        }
        SM[2 * j] = 0.0f;
        SM[2 * j + 1] = -INFINITY;
    }
    const int64_t p_hi = t->pos0 + tok;
    const int64_t p_lo = (t->window > 0 && p_hi - t->window + 1 > 0) ? p_hi - t->window + 1 : 0;
    for (int64_t p = p_lo; p <= p_hi; p++) {
        const char *krow = t->kb + (size_t)p * t->k_row + (size_t)kvh * t->k_head;
        const emb_f16 *kh = k_half ? attn_half_row(t, 0, p, kvh, ktmp) : NULL;
        const emb_f16 *vh = v_half ? attn_half_row(t, 1, p, kvh, vtmp) : NULL;
        if (!v_half) t->tv->to_float(t->vb + (size_t)p * t->v_row + (size_t)kvh * t->v_head, v32, hd);
        for (int64_t j = 0; j < nh; j++) {
            float *qf = heads + j * 4 * hd, *acc = qf + 2 * hd;
            const void *qq = qf + hd;
            emb_f16 *acc_h = (emb_f16 *)(acc + hd);
            float s;
            if (k_half) {
                s = t->kern.dot_h((const emb_f16 *)qq, kh, hd);
            } else {
                t->tk->vec_dot(hd, &s, krow, qq);
            }
            s = attn_score(t, s);
            float ms = 1.0f, vs = 1.0f;
            const float M = SM[2 * j + 1];
            if (s > M) {
                SM[2 * j + 1] = s;
                ms = expf(M - s);
                if (v_half) {
                    t->kern.scale_h(acc_h, ms, hd);
                } else {
                    for (int64_t i = 0; i < hd; i++) acc[i] *= ms;
                }
            } else {
                vs = expf(s - M);
            }
            if (v_half) {
                t->kern.mad_h(acc_h, vh, vs, hd);
            } else {
                t->kern.mad_f(acc, v32, vs, hd);
            }
            SM[2 * j] = SM[2 * j] * ms + vs;
        }
    }
    for (int64_t j = 0; j < nh; j++) {
        float *acc = heads + j * 4 * hd + 2 * hd;
        const emb_f16 *acc_h = (const emb_f16 *)(acc + hd);
        if (v_half) {
            for (int64_t i = 0; i < hd; i++) acc[i] = emb_f16_to_f32(acc_h[i]);
        }
        const float S = SM[2 * j];
        const float inv = S == 0.0f ? 0.0f : 1.0f / S;
        float *o = t->out + tok * (t->n_head * hd) + (h0 + j) * hd;
        for (int64_t i = 0; i < hd; i++) o[i] = acc[i] * inv;
        if (t->rot_v) fwht_rows(o, hd, t->rot_v);
    }
}

/* Large batches: a block of ATTN_QB query tokens times the heads of one KV group against key/value tiles
 * converted to float once per tile (llama.cpp's tiled path: float query, float accumulation). */
#define ATTN_QB 16
#define ATTN_KT 64

/* Row p of head kvh of the K (is_v 0) or V cache as floats (an F32 row rounded through half, as llama.cpp's cast). */
static inline void attn_tile_row(const attn_task *t, int is_v, int64_t p, int64_t kvh, float *dst) {
    const char *row = is_v ? t->vb + (size_t)p * t->v_row + (size_t)kvh * t->v_head
                           : t->kb + (size_t)p * t->k_row + (size_t)kvh * t->k_head;
    if ((is_v ? t->type_v : t->type_k) == EMB_TYPE_F16) {
        t->kern.cvt_h((const emb_f16 *)row, dst, t->head_dim);
    } else {
        const float *f = (const float *)row;
        for (int64_t i = 0; i < t->head_dim; i++) dst[i] = emb_f16_to_f32(emb_f32_to_f16(f[i]));
    }
}

static void attention_block_float(const attn_task *t, int64_t tok0, int64_t kvh, float *mem) {
    const int64_t hd = t->head_dim, grp = t->n_head / t->n_kv_head;
    const int64_t ntok = tok0 + ATTN_QB <= t->n_tok ? ATTN_QB : t->n_tok - tok0;
    const int64_t rows = ntok * grp;
    const int64_t p_max = t->pos0 + tok0 + ntok - 1;
    int64_t p_min = t->pos0 + tok0;
    p_min = (t->window > 0 && p_min - t->window + 1 > 0) ? p_min - t->window + 1 : 0;
    const int64_t span = p_max - p_min + 1;
    float *tile = mem;                          /* ATTN_KT x hd */
    float *acc = tile + ATTN_KT * hd;           /* rows x hd */
    float *scores = acc + ATTN_QB * grp * hd;   /* rows x span */
    /* scores */
    for (int64_t k0 = 0; k0 < span; k0 += ATTN_KT) {
        const int64_t kn = k0 + ATTN_KT <= span ? ATTN_KT : span - k0;
        for (int64_t j = 0; j < kn; j++) attn_tile_row(t, 0, p_min + k0 + j, kvh, tile + j * hd);
        for (int64_t r = 0; r < rows; r++) {
            const int64_t tok = tok0 + r / grp, h = kvh * grp + r % grp;
            const float *q = t->q + tok * t->q_stride + h * hd;
            const int64_t hi = t->pos0 + tok;
            const int64_t lo = (t->window > 0 && hi - t->window + 1 > 0) ? hi - t->window + 1 : 0;
            float *sr = scores + r * span;
            int64_t j = 0;
            for (; j + 4 <= kn; j += 4) {
                const int64_t p = p_min + k0 + j;
                if (p + 3 < lo || p > hi) {
                    sr[k0 + j] = sr[k0 + j + 1] = sr[k0 + j + 2] = sr[k0 + j + 3] = -INFINITY;
                    continue;
                }
                t->kern.dot4(q, tile + j * hd, hd, hd, sr + k0 + j);
                for (int u = 0; u < 4; u++) {
                    sr[k0 + j + u] = (p + u < lo || p + u > hi) ? -INFINITY : attn_score(t, sr[k0 + j + u]);
                }
            }
            for (; j < kn; j++) {
                const int64_t p = p_min + k0 + j;
                sr[k0 + j] = (p < lo || p > hi) ? -INFINITY : attn_score(t, t->kern.dot_ff(q, tile + j * hd, hd));
            }
        }
    }
    for (int64_t r = 0; r < rows; r++) softmax_row(scores + r * span, span);
    /* weighted values */
    memset(acc, 0, sizeof(float) * (size_t)(rows * hd));
    for (int64_t k0 = 0; k0 < span; k0 += ATTN_KT) {
        const int64_t kn = k0 + ATTN_KT <= span ? ATTN_KT : span - k0;
        for (int64_t j = 0; j < kn; j++) attn_tile_row(t, 1, p_min + k0 + j, kvh, tile + j * hd);
        for (int64_t r = 0; r < rows; r++) {
            const float *sr = scores + r * span + k0;
            float *ar = acc + r * hd;
            int64_t j = 0;
            for (; j + 4 <= kn; j += 4) {
                if (sr[j] != 0.0f || sr[j + 1] != 0.0f || sr[j + 2] != 0.0f || sr[j + 3] != 0.0f) {
                    t->kern.axpy4(ar, tile + j * hd, hd, sr + j, hd);
                }
            }
            for (; j < kn; j++) {
                if (sr[j] != 0.0f) t->kern.axpy(ar, tile + j * hd, sr[j], hd);
            }
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        const int64_t tok = tok0 + r / grp, h = kvh * grp + r % grp;
        memcpy(t->out + tok * (t->n_head * hd) + h * hd, acc + r * hd, sizeof(float) * (size_t)hd);
    }
}

static void attention_worker(void *p, int ith, int nth) {
    (void)nth;
    attn_task *t = (attn_task *)p;
    float *mem = t->scratch + (int64_t)ith * t->scratch_per_thread;
    if (t->path == ATTN_TYPED) { /* items: (token, KV group, part of the group's heads) */
        const int64_t grp = t->n_head / t->n_kv_head, per = (grp + t->parts - 1) / t->parts;
        const int64_t total = t->n_tok * t->n_kv_head * t->parts;
        for (;;) {
            const int64_t i = (int64_t)EMB_COUNTER_NEXT(t->next, 1);
            if (i >= total) break;
            const int64_t tok = i / (t->n_kv_head * t->parts), g = i % (t->n_kv_head * t->parts);
            const int64_t h0 = (g / t->parts) * grp + (g % t->parts) * per;
            const int64_t h1 = h0 + per < (g / t->parts + 1) * grp ? h0 + per : (g / t->parts + 1) * grp;
            if (h0 < h1) attention_group_typed(t, tok, h0, h1, mem);
        }
        return;
    }
    if (t->path == ATTN_HALF) {
        emb_f16 *half_a = (emb_f16 *)mem;
        emb_f16 *half_b = half_a + t->head_dim, *half_c = half_b + t->head_dim;
        const int64_t total = t->n_tok * t->n_head;
        for (;;) {
            const int64_t i = (int64_t)EMB_COUNTER_NEXT(t->next, 1);
            if (i >= total) break;
            attention_one_half(t, i / t->n_head, i % t->n_head, half_a, half_b, half_c);
        }
        return;
    }
    const int64_t n_blocks = (t->n_tok + ATTN_QB - 1) / ATTN_QB;
    const int64_t total = n_blocks * t->n_kv_head;
    for (;;) {
        /* hand out the last (longest) blocks first so the tail of the work is short */
        const int64_t i = (int64_t)EMB_COUNTER_NEXT(t->next, 1);
        if (i >= total) break;
        const int64_t blk = n_blocks - 1 - i / t->n_kv_head;
        attention_block_float(t, blk * ATTN_QB, i % t->n_kv_head, mem);
    }
}

static int attention_run(emb_ctx *ctx, attn_task *t, const float *q, float *out, int64_t n_tok, int64_t n_head,
                         int64_t n_kv_head, int64_t head_dim, int64_t q_stride, int64_t pos0, int64_t window,
                         float scale, float softcap) {
    t->q = q;
    t->out = out;
    t->n_tok = n_tok;
    t->n_head = n_head;
    t->n_kv_head = n_kv_head;
    t->head_dim = head_dim;
    t->q_stride = q_stride;
    t->pos0 = pos0;
    t->window = window;
    t->scale = scale;
    t->softcap = softcap;
    t->kern = pick_attn_kernels(emb_ctx_level(ctx));
    /* per thread: the small-batch path needs three half rows (the typed one typed_scratch); the blocked path a
     * key/value tile, the block's accumulators and its score rows */
    const int64_t grp = n_head / n_kv_head;
    int64_t span = pos0 + n_tok;
    if (window > 0 && window + ATTN_QB < span) span = window + ATTN_QB;
    const int nth = emb_ctx_threads(ctx);
    /* the typed path shares each K/V row among a group's heads; a group is split only to give every thread work */
    t->parts = 1;
    while (t->parts < grp && n_tok * n_kv_head * t->parts < nth) t->parts++;
    const int64_t per = (grp + t->parts - 1) / t->parts;
    t->scratch_per_thread = t->path == ATTN_HALF    ? 2 * head_dim + 16
                            : t->path == ATTN_TYPED ? typed_scratch(head_dim, per)
                                                    : ATTN_KT * head_dim + ATTN_QB * grp * (head_dim + span) + 16;
    t->scratch_per_thread = (t->scratch_per_thread + 15) & ~(int64_t)15;
    t->scratch = (float *)emb_ctx_scratch(ctx, sizeof(float) * (size_t)(t->scratch_per_thread * nth));
    if (!t->scratch) return -2;
    EMB_COUNTER_INIT(t->next, 0);
    if (nth > 1 && n_tok * n_head > 1) {
        emb_parallel(ctx, attention_worker, t);
    } else {
        attention_worker(t, 0, 1);
    }
    return 0;
}

int emb_attention(emb_ctx *ctx, const float *q, const uint16_t *k_cache, const uint16_t *v_cache, float *out,
                  int64_t n_tok, int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t q_stride, int64_t pos0,
                  int64_t window, float scale, float softcap) {
    emb_ctx_count_call(ctx);
    if (n_kv_head <= 0 || n_head % n_kv_head != 0 || head_dim <= 0) return -1;
    attn_task t;
    memset(&t, 0, sizeof t);
    t.kb = (const char *)k_cache;
    t.vb = (const char *)v_cache;
    t.type_k = t.type_v = EMB_TYPE_F16;
    t.k_head = t.v_head = sizeof(emb_f16) * (size_t)head_dim;
    t.k_row = t.v_row = t.k_head * (size_t)n_kv_head;
    t.path = n_tok < emb_ctx_attn_half_rows(ctx) ? ATTN_HALF : ATTN_FLOAT;
    return attention_run(ctx, &t, q, out, n_tok, n_head, n_kv_head, head_dim, q_stride, pos0, window, scale, softcap);
}

int emb_attention_typed(emb_ctx *ctx, const float *q, const void *k_cache, const void *v_cache, int type_k,
                        int type_v, float *out, int64_t n_tok, int64_t n_head, int64_t n_kv_head, int64_t head_dim,
                        int64_t q_stride, int64_t pos0, int64_t window, float scale, float softcap) {
    if (type_k == EMB_TYPE_F16 && type_v == EMB_TYPE_F16) {
        return emb_attention(ctx, q, (const uint16_t *)k_cache, (const uint16_t *)v_cache, out, n_tok, n_head,
                             n_kv_head, head_dim, q_stride, pos0, window, scale, softcap);
    }
    emb_ctx_count_call(ctx);
    if (n_kv_head <= 0 || n_head % n_kv_head != 0 || !kv_shape_ok(type_k, head_dim) ||
        !kv_shape_ok(type_v, head_dim)) {
        return -1;
    }
    const int level = emb_ctx_level(ctx);
    attn_task t;
    memset(&t, 0, sizeof t);
    t.kb = (const char *)k_cache;
    t.vb = (const char *)v_cache;
    t.type_k = type_k;
    t.type_v = type_v;
    t.k_head = (size_t)emb_row_size(type_k, head_dim);
    t.v_head = (size_t)emb_row_size(type_v, head_dim);
    t.k_row = t.k_head * (size_t)n_kv_head;
    t.v_row = t.v_head * (size_t)n_kv_head;
    t.tk = emb_get_type_traits(type_k, level);
    t.tv = emb_get_type_traits(type_v, level);
    t.tq = emb_get_type_traits(t.tk->vec_dot_type, level);
    t.rot_k = kv_rot_k(type_k, head_dim);
    t.rot_v = kv_rot_v(type_v, head_dim);
    if (!kv_type_quantized(type_k) && !kv_type_quantized(type_v)) { /* F16 and F32 (read as F16) */
        t.path = n_tok < emb_ctx_attn_half_rows(ctx) ? ATTN_HALF : ATTN_FLOAT;
    } else {
        t.path = ATTN_TYPED;
    }
    return attention_run(ctx, &t, q, out, n_tok, n_head, n_kv_head, head_dim, q_stride, pos0, window, scale, softcap);
}

/* ------------------------------------------------------------------------------------------------ */

int64_t emb_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    float bv = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] > bv) {
            bv = x[i];
            best = i;
        }
    }
    return best;
}

int64_t emb_top_k(const float *x, int64_t n, int64_t k, int32_t *out_ids, float *out_vals) {
    /* Sorted insertion into the k best so far (descending); ties keep the lower id first. */
    if (k > n) k = n;
    int64_t have = 0;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        if (have == k && !(v > out_vals[k - 1])) continue;
        int64_t j = have < k ? have++ : k - 1;
        while (j > 0 && out_vals[j - 1] < v) {
            out_vals[j] = out_vals[j - 1];
            out_ids[j] = out_ids[j - 1];
            j--;
        }
        out_vals[j] = v;
        out_ids[j] = (int32_t)i;
    }
    return have;
}

double emb_log_softmax_at(const float *x, int64_t n, int64_t idx) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)(x[i] - mx));
    return (double)(x[idx] - mx) - log(sum);
}
