/*
 * ember.h - the one header of emberllm's C kernels.
 *
 * The same sources build natively (bound with cffi) and as a WebAssembly side module (bound with ctypes
 * in Pyodide).  The block between EMB_API_BEGIN and EMB_API_END is the public API: the Python binding
 * reads it to build both the cffi cdef and the ctypes signatures, so it must hold only plain C
 * declarations (no macros, no preprocessor lines), one declaration per statement.
 *
 * Conventions
 *  - Tensors are row-major.  A weight matrix of n_out rows and n_in columns is n_out rows of
 *    emb_row_size(type, n_in) bytes each (GGUF's ne0 = n_in, ne1 = n_out).
 *  - Activations are float32, row i of a batch at x + i * row_stride (in floats).
 *  - Every function taking an emb_ctx may use its thread pool and scratch memory; nothing else is shared.
 *  - There is no global mutable state: the chosen SIMD level and the thread pool live in emb_ctx.
 */
#ifndef EMBER_H
#define EMBER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* GGML tensor type ids (same numbers as GGUF files use). */
#define EMB_TYPE_F32 0
#define EMB_TYPE_F16 1
#define EMB_TYPE_Q4_0 2
#define EMB_TYPE_Q4_1 3
#define EMB_TYPE_Q5_0 6
#define EMB_TYPE_Q5_1 7
#define EMB_TYPE_Q8_0 8
#define EMB_TYPE_Q8_1 9
#define EMB_TYPE_Q2_K 10
#define EMB_TYPE_Q3_K 11
#define EMB_TYPE_Q4_K 12
#define EMB_TYPE_Q5_K 13
#define EMB_TYPE_Q6_K 14
#define EMB_TYPE_Q8_K 15
#define EMB_TYPE_IQ4_NL 20
#define EMB_TYPE_IQ4_XS 23
#define EMB_TYPE_TQ1_0 34
#define EMB_TYPE_TQ2_0 35
#define EMB_TYPE_BF16 30
/* Grid-based I-quants (quants_iq_grid.c; weights only, no quantizer: llama.cpp needs an importance matrix). */
#define EMB_TYPE_IQ2_XXS 16
#define EMB_TYPE_IQ2_XS 17
#define EMB_TYPE_IQ3_XXS 18
#define EMB_TYPE_IQ1_S 19
#define EMB_TYPE_IQ3_S 21
#define EMB_TYPE_IQ2_S 22
#define EMB_TYPE_IQ1_M 29
#define EMB_TYPE_COUNT 40

/* Kernel levels: which SIMD implementation a context uses.  Every level has the scalar twin as reference. */
#define EMB_LEVEL_SCALAR 0
#define EMB_LEVEL_AVX2 1          /* x86-64: AVX2 + FMA + F16C */
#define EMB_LEVEL_AVX512 2        /* x86-64: AVX-512 F/BW/VL/VNNI */
#define EMB_LEVEL_NEON 3          /* ARM64 baseline */
#define EMB_LEVEL_NEON_DOTPROD 4  /* ARMv8.2 dotprod */
#define EMB_LEVEL_WASM_SIMD128 5
#define EMB_LEVEL_WASM_RELAXED 6  /* relaxed SIMD (i32x4.relaxed_dot_i8x16_i7x16_add_s) */
#define EMB_LEVEL_COUNT 7

/* Rope modes. */
#define EMB_ROPE_NORMAL 0 /* pairs (2i, 2i+1): Llama */
#define EMB_ROPE_NEOX 2   /* pairs (i, i + d/2): Gemma, Qwen, Phi-3 */

#pragma GCC visibility push(default)
/* EMB_API_BEGIN */
typedef struct emb_ctx emb_ctx;

/* ---- kernel levels and type facts ---- */
int emb_kernel_level_best(void);
int emb_kernel_level_supported(int level);
const char *emb_kernel_level_name(int level);
int emb_type_supported(int type);
int emb_weight_type_supported(int type); /* a model's weights may have this type: it has a dot product */
int64_t emb_type_block_size(int type);
int64_t emb_type_block_bytes(int type);
int64_t emb_row_size(int type, int64_t n);
int emb_type_vec_dot_type(int type);

/* ---- rows: conversion and dot products (single-threaded, level chosen by the caller) ---- */
int emb_dequantize_row(int level, int type, const void *src, float *dst, int64_t n);
int emb_quantize_row(int level, int type, const float *src, void *dst, int64_t n);
int emb_vec_dot(int level, int type, int64_t n, const void *x, const void *y, float *out);

/* ---- context: SIMD level, thread pool, scratch ---- */
emb_ctx *emb_ctx_new(int n_threads, int level);
void emb_ctx_free(emb_ctx *ctx);
int emb_ctx_level(const emb_ctx *ctx);
int64_t emb_ctx_calls(const emb_ctx *ctx);
/* Batches of at least n tokens take the int8 GEMM (default EMB_GEMM_MIN_TOKENS); smaller ones run the vec_dot
 * kernels row by row, whose per-token results do not depend on the batch (batched decoding of several
 * sequences raises it so each sequence gets exactly its single-sequence logits).  Returns the previous value. */
int64_t emb_ctx_set_gemm_min_tokens(emb_ctx *ctx, int64_t n);
/* Attention of fewer than n query rows takes the half-precision path (llama.cpp's small-batch flash attention
 * numerics); n rows and more the float path.  Default: 64 on x86 and the scalar level; 0 on the WebAssembly levels
 * (no half conversion or fused multiply-add instructions to emulate the half path cheaply: the float path is about
 * 8x faster there at 500 cached positions) and on NEON (whose SIMD twins cover the float path).  Returns the
 * previous value. */
int64_t emb_ctx_set_attn_half_rows(emb_ctx *ctx, int64_t n);

/* ---- ops (all may use the thread pool) ---- */
int emb_matmul(emb_ctx *ctx, const void *w, int type, int64_t n_out, int64_t n_in, const float *x, int64_t n_tok, float *y);
int emb_matmul_multi(emb_ctx *ctx, int n_mats, void **ws, int *types, int64_t *n_outs, int64_t n_in, const float *x, int64_t n_tok, float **ys);
int emb_get_rows(emb_ctx *ctx, const void *table, int type, int64_t n_cols, const int32_t *ids, int64_t n_ids, float scale, float *out);
void emb_rmsnorm(emb_ctx *ctx, const float *x, const float *w, float *out, int64_t n_rows, int64_t dim, float eps);
void emb_rmsnorm_add(emb_ctx *ctx, const float *x, const float *w, float *acc, int64_t n_rows, int64_t dim, float eps);
void emb_add(emb_ctx *ctx, const float *x, float *acc, int64_t n);
void emb_rope(emb_ctx *ctx, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t *pos, float freq_base, float freq_scale, int mode);
void emb_rope_ff(emb_ctx *ctx, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t *pos, float freq_base, float freq_scale, int mode, const float *freq_factors);
void emb_add_rows(emb_ctx *ctx, const float *bias, float *x, int64_t n_rows, int64_t dim);
/* acc[rows[i]] += scales[i] * x[i] for n_rows rows of dim floats (a mixture of experts' weighted outputs). */
void emb_add_rows_scaled(emb_ctx *ctx, const float *x, const int32_t *rows, const float *scales, float *acc, int64_t n_rows, int64_t dim);
/* x = tanh(x / cap) * cap over n floats (Gemma 2's final logit soft-capping). */
void emb_softcap(emb_ctx *ctx, float *x, int64_t n, float cap);
void emb_glu(emb_ctx *ctx, const float *gate, const float *up, float *out, int64_t n_tok, int64_t n, int64_t gate_stride, int64_t up_stride, int kind);
void emb_kv_shift(emb_ctx *ctx, uint16_t *k_cache, uint16_t *v_cache, int64_t n_past, int64_t n_keep, int64_t n_discard, int64_t n_kv_head, int64_t head_dim, int64_t n_rot, float freq_base, float freq_scale, int mode);
void emb_kv_shift_ff(emb_ctx *ctx, uint16_t *k_cache, uint16_t *v_cache, int64_t n_past, int64_t n_keep, int64_t n_discard, int64_t n_kv_head, int64_t head_dim, int64_t n_rot, float freq_base, float freq_scale, int mode, const float *freq_factors);
void emb_kv_store(emb_ctx *ctx, const float *k, const float *v, uint16_t *k_cache, uint16_t *v_cache, int64_t n_tok, int64_t kv_dim, int64_t k_stride, int64_t v_stride, int64_t pos0);
int emb_attention(emb_ctx *ctx, const float *q, const uint16_t *k_cache, const uint16_t *v_cache, float *out, int64_t n_tok, int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t q_stride, int64_t pos0, int64_t window, float scale, float softcap);
/* KV caches of other types (llama.cpp's -ctk/-ctv): rows of EMB_TYPE_F32, F16, Q8_0 or Q4_0, one row of
 * emb_row_size(type, n_kv_head * head_dim) bytes per position.  Quantized rows follow llama.cpp: a quantized K
 * (with head_dim % 64 == 0) stores K and reads Q rotated by a Walsh-Hadamard transform, a quantized V stores V
 * rotated and rotates the attention output back; the query is converted to the K type's vec_dot type and
 * dotted with the level's vec_dot; non-F16 V accumulates in float (llama.cpp's one-chunk flash attention, at
 * every batch size).  F16/F16 is emb_attention's path exactly; an F32 K or V is stored as float and read as half
 * (llama.cpp casts an F32 cache to F16 for flash attention).  Return 0, or -1 for an unsupported type or a
 * head size that is not whole blocks, -2 when scratch memory cannot be had. */
int emb_kv_type_supported(int type);
int emb_kv_store_typed(emb_ctx *ctx, const float *k, const float *v, void *k_cache, void *v_cache, int type_k, int type_v, int64_t n_tok, int64_t n_kv_head, int64_t head_dim, int64_t k_stride, int64_t v_stride, int64_t pos0);
int emb_attention_typed(emb_ctx *ctx, const float *q, const void *k_cache, const void *v_cache, int type_k, int type_v, float *out, int64_t n_tok, int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t q_stride, int64_t pos0, int64_t window, float scale, float softcap);
int emb_kv_shift_typed(emb_ctx *ctx, void *k_cache, void *v_cache, int type_k, int type_v, int64_t n_past, int64_t n_keep, int64_t n_discard, int64_t n_kv_head, int64_t head_dim, int64_t n_rot, float freq_base, float freq_scale, int mode, const float *freq_factors);
int64_t emb_argmax(const float *x, int64_t n);
int64_t emb_top_k(const float *x, int64_t n, int64_t k, int32_t *out_ids, float *out_vals);
double emb_log_softmax_at(const float *x, int64_t n, int64_t idx);
/* ---- sampling ---- */
int64_t emb_top_k_sorted(const float *x, int64_t n, int64_t k, int32_t *out_ids, float *out_vals);
int64_t emb_nearest_k(const float *x, int64_t n, float center, int64_t k, int32_t *out_ids, float *out_vals);
int64_t emb_count_ge(const float *x, int64_t n, float threshold);
double emb_logsumexp(const float *x, int64_t n, float scale, float *out_entropy);
double emb_sum_exp_between(const float *x, int64_t n, float scale, float shift, float lo, float hi);
int64_t emb_mask_outside(float *x, int64_t n, float lo, float hi);
int emb_logit_stats(const float *x, int64_t n, float *out);
int64_t emb_sample_softmax(const float *x, int64_t n, float scale, double u);
int64_t emb_dry_repeats(const int32_t *tokens, int64_t n, int64_t rep_limit, int64_t min_len, int32_t *out_tokens, int32_t *out_lens);
/* ---- grammar: the vocabulary walk (grammar.c) ---- */
int64_t emb_grammar_walk(const void *keys, const int32_t *key_off, const int32_t *lcp, int64_t n_keys, const int32_t *trans, int64_t n_states, int32_t *states, int32_t *resume, int32_t *ranges);
int64_t emb_grammar_mask(float *x, const int32_t *order, const int32_t *pos_ranges, int64_t n_ranges);
/* EMB_API_END */
#pragma GCC visibility pop

/* Activation kinds for emb_glu. */
#define EMB_ACT_SILU 0
#define EMB_ACT_GELU_TANH 1
#define EMB_ACT_GELU_ERF 2
#define EMB_ACT_RELU 3

/* Softcap = 0 disables softcapping; window <= 0 disables the sliding window. */

/* ============================================================================================
 * Internal declarations shared between the kernel sources (not part of the Python-visible API).
 * ============================================================================================ */
#ifdef EMB_INTERNAL

#define QK_K 256
#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define K_SCALE_SIZE 12

typedef uint16_t emb_f16;

typedef struct { emb_f16 d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
typedef struct { emb_f16 d; emb_f16 m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
typedef struct { emb_f16 d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
typedef struct { emb_f16 d; emb_f16 m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
typedef struct { emb_f16 d; int8_t qs[QK8_0]; } block_q8_0;
typedef struct { emb_f16 d; emb_f16 s; int8_t qs[QK8_1]; } block_q8_1;
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; emb_f16 d; emb_f16 dmin; } block_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; emb_f16 d; } block_q3_K;
typedef struct { emb_f16 d; emb_f16 dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { emb_f16 d; emb_f16 dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; emb_f16 d; } block_q6_K;
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;

/* ---- grid-based I-quants (quants_iq_grid.c, SIMD twins in quants_iq_grid_<arch>.c, tables in iq_grids.c) ----
 * Super-blocks of QK_K values in 8 groups of 32; each group of 8 (IQ2/IQ1) or 4 (IQ3) values is one point of a
 * fixed grid (the tables below), with signs from emb_ksigns_iq2xs or sign bytes. */
typedef struct { emb_f16 d; uint16_t qs[QK_K / 8]; } block_iq2_xxs;
typedef struct { emb_f16 d; uint16_t qs[QK_K / 8]; uint8_t scales[QK_K / 32]; } block_iq2_xs;
typedef struct { emb_f16 d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t scales[QK_K / 32]; } block_iq2_s;
typedef struct { emb_f16 d; uint8_t qs[3 * QK_K / 8]; } block_iq3_xxs;
typedef struct { emb_f16 d; uint8_t qs[QK_K / 4]; uint8_t qh[QK_K / 32]; uint8_t signs[QK_K / 8]; uint8_t scales[QK_K / 64]; } block_iq3_s;
typedef struct { emb_f16 d; uint8_t qs[QK_K / 8]; uint16_t qh[QK_K / 32]; } block_iq1_s;
typedef struct { uint8_t qs[QK_K / 8]; uint8_t qh[QK_K / 16]; uint8_t scales[QK_K / 32]; } block_iq1_m;
#define EMB_IQ1_DELTA 0.125f
extern const uint64_t emb_iq2xxs_grid[256];
extern const uint64_t emb_iq2xs_grid[512];
extern const uint64_t emb_iq2s_grid[1024];
extern const uint32_t emb_iq3xxs_grid[256];
extern const uint32_t emb_iq3s_grid[512];
extern const uint64_t emb_iq1s_grid[2048];
extern const uint8_t emb_ksigns_iq2xs[128];
/* ---- IQ4_NL, IQ4_XS (4-bit non-linear) and TQ1_0, TQ2_0 (ternary): quants_iq4_tq*.c ---- */
#define QK4_NL 32
typedef struct { emb_f16 d; uint8_t qs[QK4_NL / 2]; } block_iq4_nl;
typedef struct { emb_f16 d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; } block_iq4_xs;
typedef struct { uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; uint8_t qh[QK_K / 64]; emb_f16 d; } block_tq1_0;
typedef struct { uint8_t qs[QK_K / 4]; emb_f16 d; } block_tq2_0;
/* The 16 values a 4-bit IQ4_NL / IQ4_XS index stands for (ggml's kvalues_iq4nl). */
#define EMB_IQ4NL_VALUES {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
/* Scalar twins (quants_iq4_tq.c): dequantization, dot products, weight quantizers (llama-quantize's without an
 * importance matrix). */
void emb_to_float_iq4_nl(const void *src, float *dst, int64_t n);
void emb_to_float_iq4_xs(const void *src, float *dst, int64_t n);
void emb_to_float_tq1_0(const void *src, float *dst, int64_t n);
void emb_to_float_tq2_0(const void *src, float *dst, int64_t n);
void emb_vec_dot_iq4_nl_q8_0(int64_t n, float *s, const void *x, const void *y);
void emb_vec_dot_iq4_xs_q8_k(int64_t n, float *s, const void *x, const void *y);
void emb_vec_dot_tq1_0_q8_k(int64_t n, float *s, const void *x, const void *y);
void emb_vec_dot_tq2_0_q8_k(int64_t n, float *s, const void *x, const void *y);
void emb_quantize_iq4_nl_ref(const float *src, void *dst, int64_t n);
void emb_quantize_iq4_xs_ref(const float *src, void *dst, int64_t n);
void emb_quantize_tq1_0_ref(const float *src, void *dst, int64_t n);
void emb_quantize_tq2_0_ref(const float *src, void *dst, int64_t n);
/* Unpacked to int8 for the batched matmul (gemm.c): value = q * sc[i / 16] (mn[i / 16] = 0). */
void emb_unpack_iq4_nl(const void *src, int64_t n, int8_t *q, float *sc, float *mn);
void emb_unpack_iq4_xs(const void *src, int64_t n, int8_t *q, float *sc, float *mn);
void emb_unpack_tq1_0(const void *src, int64_t n, int8_t *q, float *sc, float *mn);
void emb_unpack_tq2_0(const void *src, int64_t n, int8_t *q, float *sc, float *mn);
/* SIMD kernels of these types, per level (quants_iq4_tq_x86.c, _arm.c, _wasm.c). */
#define EMB_DECL_IQ4_TQ_LEVEL(L)                    \
    void emb_vec_dot_iq4_nl_q8_0_##L(int64_t n, float *s, const void *x, const void *y); \
    void emb_vec_dot_iq4_xs_q8_k_##L(int64_t n, float *s, const void *x, const void *y); \
    void emb_vec_dot_tq1_0_q8_k_##L(int64_t n, float *s, const void *x, const void *y);  \
    void emb_vec_dot_tq2_0_q8_k_##L(int64_t n, float *s, const void *x, const void *y)

/* n = elements in the row (a multiple of the block size); x = weight row; y = activation row already in
 * the type's vec_dot_type; *s receives the dot product. */
typedef void (*emb_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);
typedef void (*emb_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*emb_from_float_fn)(const float *src, void *dst, int64_t n);

typedef struct {
    const char *name;
    int64_t block_size;
    int64_t block_bytes;
    int vec_dot_type;
    emb_to_float_fn to_float;     /* NULL when the type cannot be dequantized at this level */
    emb_from_float_fn from_float; /* NULL when quantizing to this type is not implemented */
    emb_vec_dot_fn vec_dot;       /* NULL when the type has no dot product at this level */
} emb_type_traits;

/* The traits of a type at a level (falls back to the scalar function where a level has no special one).
 * Returns NULL for unknown types. Tables are const: no mutable globals. */
const emb_type_traits *emb_get_type_traits(int type, int level);

/* SIMD kernels, defined in quants_<arch>.c and put into the const per-level tables by quants.c. */
#define EMB_DECL_VEC_DOT(name) void name(int64_t n, float *s, const void *x, const void *y)
#define EMB_DECL_FROM_FLOAT(name) void name(const float *src, void *dst, int64_t n)
#define EMB_DECL_X86_LEVEL(L)                   \
    EMB_DECL_VEC_DOT(emb_vec_dot_f32_##L);       \
    EMB_DECL_VEC_DOT(emb_vec_dot_f16_##L);       \
    EMB_DECL_VEC_DOT(emb_vec_dot_bf16_##L);      \
    EMB_DECL_VEC_DOT(emb_vec_dot_q4_0_q8_0_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q4_1_q8_0_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q5_0_q8_0_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q5_1_q8_0_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q8_0_q8_0_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q2_k_q8_k_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q3_k_q8_k_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q4_k_q8_k_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q5_k_q8_k_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q6_k_q8_k_##L); \
    EMB_DECL_FROM_FLOAT(emb_quantize_q8_0_##L);  \
    EMB_DECL_FROM_FLOAT(emb_quantize_q8_k_##L)
#define EMB_DECL_ARM_LEVEL(L)                   \
    EMB_DECL_VEC_DOT(emb_vec_dot_q4_0_q8_0_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q5_0_q8_0_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q8_0_q8_0_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q4_k_q8_k_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_q6_k_q8_k_##L)
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
EMB_DECL_X86_LEVEL(avx2);
EMB_DECL_X86_LEVEL(avx512);
EMB_DECL_IQ4_TQ_LEVEL(avx2);
EMB_DECL_IQ4_TQ_LEVEL(avx512);
#endif
#if defined(__aarch64__)
EMB_DECL_ARM_LEVEL(neon);
EMB_DECL_ARM_LEVEL(dotprod);
EMB_DECL_IQ4_TQ_LEVEL(neon);
EMB_DECL_IQ4_TQ_LEVEL(dotprod);
/* A half to float with the core's own conversion (exact), for the NEON kernel files. */
static inline float emb_arm_f16(emb_f16 h) {
    __fp16 v;
    __builtin_memcpy(&v, &h, sizeof v);
    return (float)v;
}
#endif
#if (defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__)
EMB_DECL_VEC_DOT(emb_vec_dot_q4_0_q8_0_simd128);
EMB_DECL_VEC_DOT(emb_vec_dot_q4_1_q8_0_simd128);
EMB_DECL_VEC_DOT(emb_vec_dot_q5_0_q8_0_simd128);
EMB_DECL_VEC_DOT(emb_vec_dot_q5_1_q8_0_simd128);
EMB_DECL_VEC_DOT(emb_vec_dot_q8_0_q8_0_simd128);
EMB_DECL_VEC_DOT(emb_vec_dot_q4_k_q8_k_simd128);
EMB_DECL_VEC_DOT(emb_vec_dot_q5_k_q8_k_simd128);
EMB_DECL_VEC_DOT(emb_vec_dot_q6_k_q8_k_simd128);
EMB_DECL_IQ4_TQ_LEVEL(simd128);
EMB_DECL_FROM_FLOAT(emb_quantize_q8_0_simd128);
EMB_DECL_FROM_FLOAT(emb_quantize_q8_k_simd128);
#if defined(__wasm_relaxed_simd__)
EMB_DECL_VEC_DOT(emb_vec_dot_q8_0_q8_0_relaxed);
EMB_DECL_VEC_DOT(emb_vec_dot_q5_0_q8_0_relaxed);
EMB_DECL_VEC_DOT(emb_vec_dot_q4_k_q8_k_relaxed);
EMB_DECL_VEC_DOT(emb_vec_dot_q6_k_q8_k_relaxed);
#endif
/* Helpers shared by the WebAssembly kernel files (quants_wasm.c, quants_iq4_tq_wasm.c, quants_iq_grid_wasm.c,
 * attn_wasm.c). */
#include <wasm_simd128.h>

/* Four halves (zero-extended in the i32 lanes of h) to floats, exact like emb_f16_to_f32: the half's exponent
 * and mantissa shifted into place are a float 2^-112 times the value (a denormal float for a subnormal half), so
 * one exact multiply by 2^112 rebiases; inf and nan are put together directly. */
static inline v128_t emb_wasm_f16x4_to_f32(v128_t h) {
    const v128_t em = wasm_v128_and(h, wasm_i32x4_splat(0x7fff));
    const v128_t f = wasm_f32x4_mul(wasm_i32x4_shl(em, 13), wasm_f32x4_splat(0x1p112f));
    const v128_t special = wasm_v128_or(wasm_i32x4_splat(0x7f800000),
                                        wasm_i32x4_shl(wasm_v128_and(em, wasm_i32x4_splat(0x3ff)), 13));
    const v128_t mag = wasm_v128_bitselect(special, f, wasm_i32x4_ge(em, wasm_i32x4_splat(0x7c00)));
    return wasm_v128_or(mag, wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16));
}

/* A half to float, exact like emb_f16_to_f32 (inlined: a call per block scale is measurable), so the results are
 * the same bits. */
static inline float emb_wasm_f16_to_f32(emb_f16 h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t em = h & 0x7fffu;
    uint32_t bits;
    if (em >= 0x7c00u) { /* inf / nan */
        bits = sign | 0x7f800000u | ((em & 0x3ffu) << 13);
    } else if (em >= 0x0400u) { /* normal: rebias the exponent by 127 - 15 */
        bits = sign | ((em << 13) + 0x38000000u);
    } else { /* zero or subnormal: em * 2^-24, exact */
        const float f = (float)em * 5.9604644775390625e-8f;
        __builtin_memcpy(&bits, &f, sizeof bits);
        bits |= sign;
    }
    float out;
    __builtin_memcpy(&out, &bits, sizeof out);
    return out;
}

/* Four partial sums of a[i] * b[i] over 16 signed bytes. */
static inline v128_t emb_wasm_dot_i8x16(v128_t a, v128_t b) {
    const v128_t lo = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a), wasm_i16x8_extend_low_i8x16(b));
    const v128_t hi = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a), wasm_i16x8_extend_high_i8x16(b));
    return wasm_i32x4_add(lo, hi);
}

/* The sum of the four i32 lanes. */
static inline int emb_wasm_hsum_i32x4(v128_t v) {
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

/* sum += the four lanes of p, in lane order (a scalar loop's running sum). */
static inline float emb_wasm_add_lanes_f32(float sum, v128_t p) {
    sum += wasm_f32x4_extract_lane(p, 0);
    sum += wasm_f32x4_extract_lane(p, 1);
    sum += wasm_f32x4_extract_lane(p, 2);
    sum += wasm_f32x4_extract_lane(p, 3);
    return sum;
}

/* Attention row helpers (attn_wasm.c), bit-exact twins of ops.c's scalar ones. */
void emb_attn_cvt_h_simd128(const emb_f16 *x, float *y, int64_t n);
void emb_attn_axpy_f32_simd128(float *y, const float *x, float a, int64_t n);
void emb_attn_dot4_f32_simd128(const float *q, const float *k, int64_t ld, int64_t n, float *out);
void emb_attn_axpy4_f32_simd128(float *y, const float *x, int64_t ld, const float *a, int64_t n);
#endif

/* Weight quantizers for the K-quants, ggml's reference algorithms (quants_kquant.c, scalar on every level). */
EMB_DECL_FROM_FLOAT(emb_quantize_q4_k_ref);
EMB_DECL_FROM_FLOAT(emb_quantize_q5_k_ref);
EMB_DECL_FROM_FLOAT(emb_quantize_q6_k_ref);
EMB_DECL_FROM_FLOAT(emb_quantize_q2_k_ref);
EMB_DECL_FROM_FLOAT(emb_quantize_q3_k_ref);

/* Grid-based I-quants: scalar dequantization (every level) and dot products against Q8_K per level (quants_iq_grid.c
 * for the scalar twins, quants_iq_grid_x86.c / _arm.c / _wasm.c for the SIMD ones).  Every level sums the integer
 * products of a super-block exactly and does the float arithmetic of the scalar twin in its order: bit-identical. */
#define EMB_DECL_IQ_GRID_TO_FLOAT(name) void name(const void *src, float *dst, int64_t n)
EMB_DECL_IQ_GRID_TO_FLOAT(emb_to_float_iq2_xxs);
EMB_DECL_IQ_GRID_TO_FLOAT(emb_to_float_iq2_xs);
EMB_DECL_IQ_GRID_TO_FLOAT(emb_to_float_iq2_s);
EMB_DECL_IQ_GRID_TO_FLOAT(emb_to_float_iq3_xxs);
EMB_DECL_IQ_GRID_TO_FLOAT(emb_to_float_iq3_s);
EMB_DECL_IQ_GRID_TO_FLOAT(emb_to_float_iq1_s);
EMB_DECL_IQ_GRID_TO_FLOAT(emb_to_float_iq1_m);
/* Rows unpacked for the batched matmul (gemm.c's unpack_fn): q int8 and a scale per 16 values (no min term). */
#define EMB_DECL_IQ_GRID_UNPACK(name) void name(const void *src, int64_t n, int8_t *q, float *sc, float *mn)
EMB_DECL_IQ_GRID_UNPACK(emb_unpack_iq2_xxs);
EMB_DECL_IQ_GRID_UNPACK(emb_unpack_iq2_xs);
EMB_DECL_IQ_GRID_UNPACK(emb_unpack_iq2_s);
EMB_DECL_IQ_GRID_UNPACK(emb_unpack_iq3_xxs);
EMB_DECL_IQ_GRID_UNPACK(emb_unpack_iq3_s);
EMB_DECL_IQ_GRID_UNPACK(emb_unpack_iq1_s);
EMB_DECL_IQ_GRID_UNPACK(emb_unpack_iq1_m);
#define EMB_DECL_IQ_GRID_LEVEL(L)                   \
    EMB_DECL_VEC_DOT(emb_vec_dot_iq2_xxs_q8_k_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_iq2_xs_q8_k_##L);  \
    EMB_DECL_VEC_DOT(emb_vec_dot_iq2_s_q8_k_##L);   \
    EMB_DECL_VEC_DOT(emb_vec_dot_iq3_xxs_q8_k_##L); \
    EMB_DECL_VEC_DOT(emb_vec_dot_iq3_s_q8_k_##L);   \
    EMB_DECL_VEC_DOT(emb_vec_dot_iq1_s_q8_k_##L);   \
    EMB_DECL_VEC_DOT(emb_vec_dot_iq1_m_q8_k_##L)
EMB_DECL_IQ_GRID_LEVEL(scalar);
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
EMB_DECL_IQ_GRID_LEVEL(avx2);
EMB_DECL_IQ_GRID_LEVEL(avx512);
#endif
#if defined(__aarch64__)
EMB_DECL_IQ_GRID_LEVEL(neon);
EMB_DECL_IQ_GRID_LEVEL(dotprod);
#endif
#if (defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__)
EMB_DECL_IQ_GRID_LEVEL(simd128);
#endif
/* The traits-table rows of the grid I-quants at a level whose kernels end in _L (quants.c's tables). */
#define EMB_IQ_GRID_TRAITS(L)                                                                                         \
    [EMB_TYPE_IQ2_XXS] = {"iq2_xxs", QK_K, sizeof(block_iq2_xxs), EMB_TYPE_Q8_K, emb_to_float_iq2_xxs, NULL,           \
                          emb_vec_dot_iq2_xxs_q8_k_##L},                                                               \
    [EMB_TYPE_IQ2_XS] = {"iq2_xs", QK_K, sizeof(block_iq2_xs), EMB_TYPE_Q8_K, emb_to_float_iq2_xs, NULL,               \
                         emb_vec_dot_iq2_xs_q8_k_##L},                                                                 \
    [EMB_TYPE_IQ2_S] = {"iq2_s", QK_K, sizeof(block_iq2_s), EMB_TYPE_Q8_K, emb_to_float_iq2_s, NULL,                   \
                        emb_vec_dot_iq2_s_q8_k_##L},                                                                   \
    [EMB_TYPE_IQ3_XXS] = {"iq3_xxs", QK_K, sizeof(block_iq3_xxs), EMB_TYPE_Q8_K, emb_to_float_iq3_xxs, NULL,           \
                          emb_vec_dot_iq3_xxs_q8_k_##L},                                                               \
    [EMB_TYPE_IQ3_S] = {"iq3_s", QK_K, sizeof(block_iq3_s), EMB_TYPE_Q8_K, emb_to_float_iq3_s, NULL,                   \
                        emb_vec_dot_iq3_s_q8_k_##L},                                                                   \
    [EMB_TYPE_IQ1_S] = {"iq1_s", QK_K, sizeof(block_iq1_s), EMB_TYPE_Q8_K, emb_to_float_iq1_s, NULL,                   \
                        emb_vec_dot_iq1_s_q8_k_##L},                                                                   \
    [EMB_TYPE_IQ1_M] = {"iq1_m", QK_K, sizeof(block_iq1_m), EMB_TYPE_Q8_K, emb_to_float_iq1_m, NULL,                   \
                        emb_vec_dot_iq1_m_q8_k_##L}

/* EMB_DOT_TILE_ROWS weight rows x n_tok (1..4) activation rows at once: out[t * out_stride + r] = vec_dot(row r,
 * token t), bit-identical to the level's vec_dot.  x86 (dot_tile_x86.c): 2 rows x 1..4 tokens; WebAssembly
 * (quants_wasm.c): 4 rows x 1 token.  emb_dot_tile_for (matmul.c) gives NULL where no tile kernel exists. */
typedef void (*emb_dot_tile_fn)(int64_t n, const void *w, size_t w_row_bytes, const void *y, size_t y_row_bytes,
                                float *out, int64_t out_stride);
emb_dot_tile_fn emb_dot_tile_for(int type, int level, int64_t n, int n_tok);
emb_dot_tile_fn emb_dot_tile_x86(int type, int level, int64_t n, int n_tok);
emb_dot_tile_fn emb_dot_tile_wasm(int type, int level, int64_t n, int n_tok);
#if defined(__wasm__) || defined(__EMSCRIPTEN__)
#define EMB_DOT_TILE_ROWS 4
#else
#define EMB_DOT_TILE_ROWS 2
#endif

/* Batched matmul over weights unpacked to int8 (gemm.c); -1 when the type is not integer-valued. */
int emb_gemm_unpacked(emb_ctx *ctx, const void *w, int type, int64_t n_out, int64_t n_in, const float *x,
                      int64_t n_tok, float *y);
/* Batches at least this large go through emb_gemm_unpacked (llama.cpp too switches to its GEMM kernels for
 * batches: keeping the same split keeps our rounding closest to its). */
#define EMB_GEMM_MIN_TOKENS 4

/* Half and bfloat16 conversions (exact, portable). */
float emb_f16_to_f32(emb_f16 h);
emb_f16 emb_f32_to_f16(float f);
float emb_bf16_to_f32(uint16_t h);
uint16_t emb_f32_to_bf16(float f);

/* Thread pool: run fn(arg, ith, nth) on all nth threads of ctx (the caller is thread 0) and wait. */
typedef void (*emb_task_fn)(void *arg, int ith, int nth);
void emb_parallel(emb_ctx *ctx, emb_task_fn fn, void *arg);
/* Scratch memory owned by ctx, valid until the next call that asks for scratch. */
void *emb_ctx_scratch(emb_ctx *ctx, size_t nbytes);
void emb_ctx_count_call(emb_ctx *ctx);
int emb_ctx_threads(const emb_ctx *ctx);
int64_t emb_ctx_gemm_min_tokens(const emb_ctx *ctx);
int64_t emb_ctx_attn_half_rows(const emb_ctx *ctx);
/* Query rows below which attention takes the half path by default (x86, scalar; 0 on WebAssembly and NEON). */
#define EMB_ATTN_HALF_ROWS 64
/* GELU(tanh) of every half value, rounded to half (llama.cpp's GELU table), owned by ctx. */
const emb_f16 *emb_ctx_gelu_table(const emb_ctx *ctx);

/* A shared work counter for dynamic scheduling inside emb_parallel tasks. */
#if !defined(__EMSCRIPTEN__) && !defined(__wasm__) && !defined(EMB_NO_THREADS)
#include <stdatomic.h>
typedef atomic_llong emb_counter;
#define EMB_COUNTER_INIT(c, v) atomic_init(&(c), (v))
#define EMB_COUNTER_NEXT(c, n) atomic_fetch_add(&(c), (n))
#else
typedef long long emb_counter;
#define EMB_COUNTER_INIT(c, v) ((c) = (v))
#define EMB_COUNTER_NEXT(c, n) (((c) += (n)) - (n))
#endif

#endif /* EMB_INTERNAL */

#ifdef __cplusplus
}
#endif
#endif /* EMBER_H */
