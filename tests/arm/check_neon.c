/*
 * check_neon.c - every NEON kernel level against the scalar twin, bit for bit, on ARM64 (run under qemu-aarch64 by
 * tests/test_arm_neon.py; natively on a Raspberry Pi with `cc -O2 -I core/wasm_kernels core/wasm_kernels/\*.c
 * tests/arm/check_neon.c -lm -lpthread`).
 *
 * Random rows of every tensor type: quantizers of the activation types and dequantization (bit for bit), vec_dot
 * and matmuls of 1 to 3 tokens (row by row) and of 8 tokens (the int8 GEMM) within 1e-5 of the sum of |products|
 * (the legacy-type NEON dots accumulate in float lanes like llama.cpp's, so their rounding differs; the count of
 * bit-identical results is printed too); attention bit for bit on the float path (the NEON default) and on the
 * half path, over random half keys/values with subnormals, a sliding window and head sizes that leave a tail; KV
 * caches of other types (q8_0, q4_0, f32 and mixes) stored and shifted bit for bit, attended within tolerance.
 * The grid I-quants (random blocks with sane f16 scales: every byte pattern is a valid block) dot bit for bit.
 * Prints one FAIL line per mismatch and `SUMMARY levels=... checked=N failed=M identical=K`.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

typedef struct {
    uint64_t s;
} rng_t;

static uint32_t next_u32(rng_t *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)(r->s >> 11);
}

static float uniform(rng_t *r) { return (float)next_u32(r) / 4294967296.0f; }

static float gauss(rng_t *r) {
    const float u = uniform(r) + 1e-7f, v = uniform(r);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static int checked = 0, failed = 0, identical = 0;

static void check(int ok, const char *what, int level, int type, int extra) {
    checked++;
    if (!ok) {
        failed++;
        printf("FAIL %s level=%s type=%d extra=%d\n", what, emb_kernel_level_name(level), type, extra);
    }
}

/* a == b within 1e-5 of scale (the sum of |products|); counts the bit-identical ones */
static int close_to(float a, float b, double scale) {
    if (memcmp(&a, &b, sizeof a) == 0) {
        identical++;
        return 1;
    }
    return fabs((double)a - (double)b) <= 1e-5 * scale;
}

static float *floats(rng_t *r, int64_t n, float scale) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = gauss(r) * scale;
    return x;
}

static uint16_t f16_bits(float f) {
    /* emb_f32_to_f16 is internal: go through a row conversion of the F16 type at the scalar level */
    uint16_t h;
    emb_quantize_row(EMB_LEVEL_SCALAR, EMB_TYPE_F16, &f, &h, 1);
    return h;
}

static int is_iq_grid(int type) {
    return type == EMB_TYPE_IQ2_XXS || type == EMB_TYPE_IQ2_XS || type == EMB_TYPE_IQ2_S || type == EMB_TYPE_IQ3_XXS ||
           type == EMB_TYPE_IQ3_S || type == EMB_TYPE_IQ1_S || type == EMB_TYPE_IQ1_M;
}

/* A row of `type`: scalar-quantized random floats, or random K-quant / I-quant / ternary blocks with sane half
 * scales. */
static uint8_t *random_row(rng_t *r, int type, int64_t n) {
    const int64_t bytes = emb_row_size(type, n);
    uint8_t *row = malloc((size_t)bytes);
    int offs[2] = {-1, -1};
    switch (type) {
    case EMB_TYPE_Q2_K: offs[0] = 80; offs[1] = 82; break;
    case EMB_TYPE_Q3_K: offs[0] = 108; break;
    case EMB_TYPE_Q4_K: case EMB_TYPE_Q5_K: offs[0] = 0; offs[1] = 2; break;
    case EMB_TYPE_Q6_K: offs[0] = 208; break;
    case EMB_TYPE_IQ2_XXS: case EMB_TYPE_IQ2_XS: case EMB_TYPE_IQ2_S: case EMB_TYPE_IQ3_XXS: case EMB_TYPE_IQ3_S:
    case EMB_TYPE_IQ1_S: offs[0] = 0; break;
    case EMB_TYPE_IQ4_NL: case EMB_TYPE_IQ4_XS: offs[0] = 0; break;
    case EMB_TYPE_TQ1_0: offs[0] = 52; break;
    case EMB_TYPE_TQ2_0: offs[0] = 64; break;
    default: break;
    }
    if (type == EMB_TYPE_IQ1_M) { /* random bytes; the f16 scale is the top nibbles of the u16 at bytes 48..55 */
        for (int64_t i = 0; i < bytes; i++) row[i] = (uint8_t)next_u32(r);
        for (int64_t b = 0; b < n / 256; b++) {
            const uint16_t h = f16_bits(1e-3f + uniform(r) * 0.049f);
            for (int k = 0; k < 4; k++) {
                uint8_t *p = row + b * 56 + 48 + 2 * k;
                p[1] = (uint8_t)((p[1] & 0x0f) | (((h >> (4 * k)) & 0xf) << 4));
            }
        }
        return row;
    }
    if (offs[0] >= 0) {
        const int64_t bb = emb_type_block_bytes(type);
        for (int64_t i = 0; i < bytes; i++) row[i] = (uint8_t)next_u32(r);
        for (int64_t b = 0; b < n / emb_type_block_size(type); b++) {
            for (int k = 0; k < 2 && offs[k] >= 0; k++) {
                const uint16_t h = f16_bits(1e-3f + uniform(r) * 0.049f);
                memcpy(row + b * bb + offs[k], &h, 2);
            }
        }
        return row;
    }
    float *x = floats(r, n, 1.0f);
    emb_quantize_row(EMB_LEVEL_SCALAR, type, x, row, n);
    free(x);
    return row;
}

/* Scalar and `level` matmuls of n_tok rows of x agree (close_to, with each output's sum of |w x|). */
static int matmul_close(int level, int type, const uint8_t *w, int64_t n_out, int64_t n, const float *x, int64_t n_tok) {
    float *ys[2];
    for (int k = 0; k < 2; k++) {
        ys[k] = calloc((size_t)(n_out * n_tok), sizeof(float));
        emb_ctx *ctx = emb_ctx_new(1, k == 0 ? EMB_LEVEL_SCALAR : level);
        if (emb_matmul(ctx, w, type, n_out, n, x, n_tok, ys[k]) != 0) ys[k][0] = NAN;
        emb_ctx_free(ctx);
    }
    float *wf = malloc(sizeof(float) * (size_t)n);
    int ok = 1;
    for (int64_t o = 0; o < n_out; o++) {
        emb_dequantize_row(EMB_LEVEL_SCALAR, type, w + o * emb_row_size(type, n), wf, n);
        for (int64_t t = 0; t < n_tok; t++) {
            double scale = 0.0;
            for (int64_t i = 0; i < n; i++) scale += fabs((double)wf[i] * x[t * n + i]);
            ok &= close_to(ys[0][t * n_out + o], ys[1][t * n_out + o], scale);
        }
    }
    free(wf), free(ys[0]), free(ys[1]);
    return ok;
}

static void check_types(rng_t *r, int level) {
    static const int types[] = {EMB_TYPE_F32,  EMB_TYPE_F16,  EMB_TYPE_BF16, EMB_TYPE_Q4_0, EMB_TYPE_Q4_1,
                                EMB_TYPE_Q5_0, EMB_TYPE_Q5_1, EMB_TYPE_Q8_0, EMB_TYPE_Q2_K, EMB_TYPE_Q3_K,
                                EMB_TYPE_Q4_K, EMB_TYPE_Q5_K, EMB_TYPE_Q6_K, EMB_TYPE_IQ2_XXS, EMB_TYPE_IQ2_XS,
                                EMB_TYPE_IQ2_S, EMB_TYPE_IQ3_XXS, EMB_TYPE_IQ3_S, EMB_TYPE_IQ1_S, EMB_TYPE_IQ1_M,
                                EMB_TYPE_IQ4_NL, EMB_TYPE_IQ4_XS, EMB_TYPE_TQ1_0, EMB_TYPE_TQ2_0};
    const int64_t n = 1024;
    static const int act_types[] = {EMB_TYPE_Q8_0, EMB_TYPE_Q8_K};
    for (size_t a_i = 0; a_i < 2; a_i++) {
        const int q = act_types[a_i];
        float *x = floats(r, n, 3.0f);
        uint8_t *a = malloc((size_t)emb_row_size(q, n)), *b = malloc((size_t)emb_row_size(q, n));
        emb_quantize_row(EMB_LEVEL_SCALAR, q, x, a, n);
        emb_quantize_row(level, q, x, b, n);
        check(memcmp(a, b, (size_t)emb_row_size(q, n)) == 0, "quantize", level, q, 0);
        free(x), free(a), free(b);
    }
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const int type = types[t], vdt = emb_type_vec_dot_type(type);
        for (int trial = 0; trial < 3; trial++) {
            uint8_t *row = random_row(r, type, n);
            float *d0 = malloc(sizeof(float) * n), *d1 = malloc(sizeof(float) * n);
            emb_dequantize_row(EMB_LEVEL_SCALAR, type, row, d0, n);
            emb_dequantize_row(level, type, row, d1, n);
            check(memcmp(d0, d1, sizeof(float) * n) == 0, "dequantize", level, type, trial);
            float *x = floats(r, n, 1.0f);
            uint8_t *y = malloc((size_t)emb_row_size(vdt, n));
            emb_quantize_row(EMB_LEVEL_SCALAR, vdt, x, y, n);
            float s0 = 0.0f, s1 = 1.0f, *yf = malloc(sizeof(float) * n);
            emb_vec_dot(EMB_LEVEL_SCALAR, type, n, row, y, &s0);
            emb_vec_dot(level, type, n, row, y, &s1);
            emb_dequantize_row(EMB_LEVEL_SCALAR, vdt, y, yf, n);
            double scale = 0.0;
            for (int64_t i = 0; i < n; i++) scale += fabs((double)d0[i] * yf[i]);
            check(close_to(s0, s1, scale), "vec_dot", level, type, trial);
            if (is_iq_grid(type)) {
                /* the grid I-quants: exact integer sums and the scalar float arithmetic, bit for bit */
                check(memcmp(&s0, &s1, sizeof s0) == 0, "vec_dot bit-identical", level, type, trial);
            }
            free(yf);
            free(row), free(d0), free(d1), free(x), free(y);
        }
        /* matmuls: 37 rows (a partial tile), 1..3 tokens row by row, 8 tokens through the GEMM */
        const int64_t n_out = 37, nm = 512;
        uint8_t *w = malloc((size_t)(emb_row_size(type, nm) * n_out));
        for (int64_t o = 0; o < n_out; o++) {
            uint8_t *row = random_row(r, type, nm);
            memcpy(w + o * emb_row_size(type, nm), row, (size_t)emb_row_size(type, nm));
            free(row);
        }
        static const int64_t toks[] = {1, 2, 3, 8};
        for (size_t k = 0; k < 4; k++) {
            float *x = floats(r, nm * toks[k], 1.0f);
            check(matmul_close(level, type, w, n_out, nm, x, toks[k]), "matmul", level, type, (int)toks[k]);
            free(x);
        }
        free(w);
    }
}

static void check_attention(rng_t *r, int level) {
    static const int64_t cases[][6] = {/* n_tok, pos0, n_head, head_dim, window, value exponent top */
                                       {1, 40, 4, 256, 0, 24}, {3, 9, 2, 36, 5, 24}, {2, 20, 2, 64, 0, 2},
                                       {66, 3, 2, 64, 0, 24}, {1, 500, 4, 256, 512, 24}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t n_tok = cases[c][0], pos0 = cases[c][1], n_head = cases[c][2], hd = cases[c][3];
        const int64_t window = cases[c][4], n_pos = pos0 + n_tok;
        uint16_t *kv[2];
        for (int k = 0; k < 2; k++) {
            const int top = k == 0 ? 16 : (int)cases[c][5];
            kv[k] = malloc(sizeof(uint16_t) * (size_t)(n_pos * hd));
            for (int64_t j = 0; j < n_pos * hd; j++) {
                kv[k][j] = (uint16_t)((next_u32(r) & 1u) << 15 | (next_u32(r) % (uint32_t)(top + 1)) << 10 |
                                      (next_u32(r) & 0x3ffu));
            }
        }
        float *q = floats(r, n_tok * n_head * hd, 1.0f);
        for (int half_rows = 0; half_rows <= 64; half_rows += 64) {
            float *outs[2];
            for (int k = 0; k < 2; k++) {
                outs[k] = calloc((size_t)(n_tok * n_head * hd), sizeof(float));
                emb_ctx *ctx = emb_ctx_new(1, k == 0 ? EMB_LEVEL_SCALAR : level);
                const int64_t old = emb_ctx_set_attn_half_rows(ctx, half_rows);
                if (k == 1) check(old == 0, "attention default is the float path", level, 0, (int)c);
                check(emb_attention(ctx, q, kv[0], kv[1], outs[k], n_tok, n_head, 1, hd, n_head * hd, pos0, window,
                                    1.0f / 16, 0.0f) == 0,
                      "attention rc", level, 0, (int)c);
                emb_ctx_free(ctx);
            }
            check(memcmp(outs[0], outs[1], sizeof(float) * (size_t)(n_tok * n_head * hd)) == 0, "attention", level,
                  half_rows, (int)c);
            free(outs[0]), free(outs[1]);
        }
        free(q), free(kv[0]), free(kv[1]);
    }
}

/* Caches of other types (emb_kv_store_typed / emb_attention_typed / emb_kv_shift_typed): stored rows and shifted
 * keys bit for bit (the quantizers and the Hadamard rotation are the same code on every level), attention within
 * a step of the half accumulator near 1 (2e-3) and 2e-6 on average: the NEON q8_0/q4_0 dots sum in another order,
 * the float V accumulation (vfmaq_f32) is fma like the scalar fmaf; an F32 cache (read as half) bit for bit on the
 * float and the half path (half_rows 0 and 64). */
static void check_attention_typed(rng_t *r, int level, int64_t half_rows) {
    static const int pairs[][2] = {{EMB_TYPE_Q8_0, EMB_TYPE_Q8_0}, {EMB_TYPE_Q4_0, EMB_TYPE_Q4_0},
                                   {EMB_TYPE_Q8_0, EMB_TYPE_F16},  {EMB_TYPE_F16, EMB_TYPE_Q4_0},
                                   {EMB_TYPE_F32, EMB_TYPE_F32},   {EMB_TYPE_Q4_0, EMB_TYPE_F32}};
    static const int64_t cases[][4] = {/* n_tok, pos0, head_dim, window */
                                       {1, 40, 256, 0}, {3, 9, 64, 5}, {70, 3, 128, 0}, {2, 20, 96, 0}};
    for (size_t pi = 0; pi < sizeof pairs / sizeof pairs[0]; pi++) {
        const int tk = pairs[pi][0], tv = pairs[pi][1];
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const int64_t n_tok = cases[c][0], pos0 = cases[c][1], hd = cases[c][2], window = cases[c][3];
            const int64_t n_head = 4, n_kv = 2, n_pos = pos0 + n_tok, kv_dim = n_kv * hd;
            const size_t kb = (size_t)(emb_row_size(tk, kv_dim) * n_pos), vb = (size_t)(emb_row_size(tv, kv_dim) * n_pos);
            float *k = floats(r, n_pos * kv_dim, 1.0f), *v = floats(r, n_pos * kv_dim, 1.0f);
            float *q = floats(r, n_tok * n_head * hd, 1.0f);
            uint8_t *kc[2], *vc[2];
            float *outs[2];
            for (int i = 0; i < 2; i++) {
                emb_ctx *ctx = emb_ctx_new(1, i == 0 ? EMB_LEVEL_SCALAR : level);
                emb_ctx_set_attn_half_rows(ctx, half_rows); /* an F32 cache takes the F16 paths: the same one */
                kc[i] = calloc(kb, 1), vc[i] = calloc(vb, 1);
                outs[i] = calloc((size_t)(n_tok * n_head * hd), sizeof(float));
                check(emb_kv_store_typed(ctx, k, v, kc[i], vc[i], tk, tv, n_pos, n_kv, hd, kv_dim, kv_dim, 0) == 0,
                      "typed kv_store rc", level, tk, (int)c);
                check(emb_attention_typed(ctx, q, kc[i], vc[i], tk, tv, outs[i], n_tok, n_head, n_kv, hd, n_head * hd,
                                          pos0, window, 1.0f / 16, 0.0f) == 0,
                      "typed attention rc", level, tk, (int)c);
                emb_ctx_free(ctx);
            }
            check(memcmp(kc[0], kc[1], kb) == 0 && memcmp(vc[0], vc[1], vb) == 0, "typed kv_store", level, tk, (int)c);
            double mx = 0.0, sum = 0.0;
            const int64_t n_out = n_tok * n_head * hd;
            for (int64_t i = 0; i < n_out; i++) {
                const double d = fabs((double)outs[0][i] - (double)outs[1][i]);
                mx = d > mx ? d : mx;
                sum += d;
            }
            if (tk == EMB_TYPE_F32 && tv == EMB_TYPE_F32) {
                check(memcmp(outs[0], outs[1], sizeof(float) * (size_t)n_out) == 0, "typed attention f32", level, tk,
                      (int)c);
            } else {
                check(mx <= 2e-3 && sum / (double)n_out <= 2e-6, "typed attention", level, tk * 100 + tv, (int)c);
            }
            /* context shift of the stored keys: the same bytes on both levels */
            for (int i = 0; i < 2; i++) {
                emb_ctx *ctx = emb_ctx_new(1, i == 0 ? EMB_LEVEL_SCALAR : level);
                check(emb_kv_shift_typed(ctx, kc[i], vc[i], tk, tv, n_pos, 1, n_pos / 3 + 1, n_kv, hd, hd, 10000.0f,
                                         1.0f, EMB_ROPE_NEOX, NULL) == 0,
                      "typed kv_shift rc", level, tk, (int)c);
                emb_ctx_free(ctx);
            }
            check(memcmp(kc[0], kc[1], kb) == 0 && memcmp(vc[0], vc[1], vb) == 0, "typed kv_shift", level, tk, (int)c);
            for (int i = 0; i < 2; i++) free(kc[i]), free(vc[i]), free(outs[i]);
            free(k), free(v), free(q);
        }
    }
}

int main(void) {
    rng_t r = {0x9e3779b97f4a7c15ull};
    char names[128] = "";
    for (int level = EMB_LEVEL_NEON; level <= EMB_LEVEL_NEON_DOTPROD; level++) {
        if (!emb_kernel_level_supported(level)) continue;
        strcat(names, names[0] ? "," : "");
        strcat(names, emb_kernel_level_name(level));
        check_types(&r, level);
        check_attention(&r, level);
        check_attention_typed(&r, level, 0);
        check_attention_typed(&r, level, 64);
    }
    printf("SUMMARY levels=%s checked=%d failed=%d identical=%d\n", names[0] ? names : "none", checked, failed,
           identical);
    return failed != 0;
}
