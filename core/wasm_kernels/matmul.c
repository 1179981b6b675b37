/*
 * matmul.c - y = W x for a quantized weight matrix and a batch of float activations.
 *
 * The activations are first converted to the weight type's vec_dot_type (Q8_0, Q8_K, F16, ...), the way
 * llama.cpp does, then threads take chunks of weight rows from a shared counter.  Within a chunk, a block
 * of weight rows stays hot in L1 while every token of the batch streams past it, so a prompt is one pass
 * over the weights instead of one pass per token.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <string.h>

#define ROW_BLOCK 16
#define PREFETCH_ROWS_AHEAD 8

/* Ask for n_rows rows of row_bytes each starting at p (a hint: no effect on results). */
static inline void prefetch_rows(const char *p, int64_t n_rows, size_t row_bytes) {
    const size_t total = n_rows > 0 ? (size_t)n_rows * row_bytes : 0;
#if defined(__wasm__) || defined(__EMSCRIPTEN__)
    /* WebAssembly has no prefetch instruction: touch one byte per cache line instead (a load whose value is
     * not used; volatile keeps it) */
    for (size_t off = 0; off < total; off += 64) (void)((const volatile char *)p)[off];
#else
    for (size_t off = 0; off < total; off += 64) __builtin_prefetch(p + off, 0, 3);
#endif
}

/* Rows [rb, re) of one matrix against all tokens: tokens in groups of up to 4, a tile kernel taking
 * EMB_DOT_TILE_ROWS rows x the group where there is one (tiles[g]), vec_dot for the rest.  y is token-major with
 * row stride y_stride. */
static void rows_x_tokens(emb_vec_dot_fn dot, emb_dot_tile_fn const *tiles, const char *w, size_t w_row_bytes,
                          int64_t n_rows, int64_t rb, int64_t re, const char *xq, size_t xq_row_bytes, float *y,
                          int64_t y_stride, int64_t n_in, int64_t n_tok) {
    for (int64_t tok0 = 0; tok0 < n_tok;) {
        const int g = n_tok - tok0 >= 4 ? 4 : (int)(n_tok - tok0);
        const emb_dot_tile_fn tile = tiles[g];
        int64_t r = rb;
        if (tile) {
            for (; r + EMB_DOT_TILE_ROWS <= re; r += EMB_DOT_TILE_ROWS) {
                /* a tile reads several rows at once, which the hardware prefetchers follow less well than one
                 * row: ask for the tile's rows PREFETCH_ROWS_AHEAD further on (the next block's rows included) */
                const int64_t ahead = r + PREFETCH_ROWS_AHEAD;
                if (tok0 == 0 && ahead + EMB_DOT_TILE_ROWS <= n_rows) {
                    prefetch_rows(w + ahead * w_row_bytes, EMB_DOT_TILE_ROWS, w_row_bytes);
                }
                tile(n_in, w + r * w_row_bytes, w_row_bytes, xq + tok0 * xq_row_bytes, xq_row_bytes,
                     y + tok0 * y_stride + r, y_stride);
            }
        }
        for (int64_t tok = tok0; tok < tok0 + g; tok++) {
            const char *xrow = xq + tok * xq_row_bytes;
            float *yrow = y + tok * y_stride;
            for (int64_t rr = r; rr < re; rr++) dot(n_in, &yrow[rr], w + rr * w_row_bytes, xrow);
        }
        tok0 += g;
    }
}

emb_dot_tile_fn emb_dot_tile_for(int type, int level, int64_t n, int n_tok) {
    const emb_dot_tile_fn x86 = emb_dot_tile_x86(type, level, n, n_tok);
    return x86 ? x86 : emb_dot_tile_wasm(type, level, n, n_tok);
}

typedef struct {
    const emb_type_traits *traits;
    emb_dot_tile_fn tiles[5]; /* [g]: EMB_DOT_TILE_ROWS rows x g tokens, NULL: vec_dot only */
    const char *w;
    size_t w_row_bytes;
    const char *xq;
    size_t xq_row_bytes;
    float *y;
    int64_t n_out, n_in, n_tok;
    int64_t chunk_rows;
    emb_counter next_row;
} matmul_task;

static void matmul_worker(void *p, int ith, int nth) {
    (void)ith;
    (void)nth;
    matmul_task *t = (matmul_task *)p;
    const emb_vec_dot_fn dot = t->traits->vec_dot;
    for (;;) {
        int64_t r0 = (int64_t)EMB_COUNTER_NEXT(t->next_row, t->chunk_rows);
        if (r0 >= t->n_out) break;
        int64_t r1 = r0 + t->chunk_rows < t->n_out ? r0 + t->chunk_rows : t->n_out;
        for (int64_t rb = r0; rb < r1; rb += ROW_BLOCK) {
            int64_t re = rb + ROW_BLOCK < r1 ? rb + ROW_BLOCK : r1;
            rows_x_tokens(dot, t->tiles, t->w, t->w_row_bytes, t->n_out, rb, re, t->xq, t->xq_row_bytes, t->y,
                          t->n_out, t->n_in, t->n_tok);
        }
    }
}

typedef struct {
    emb_from_float_fn from_float;
    const float *x;
    char *xq;
    int64_t n_in, n_tok;
    size_t xq_row_bytes;
} quantize_task;

static void quantize_worker(void *p, int ith, int nth) {
    quantize_task *t = (quantize_task *)p;
    for (int64_t tok = ith; tok < t->n_tok; tok += nth) {
        t->from_float(t->x + tok * t->n_in, t->xq + tok * t->xq_row_bytes, t->n_in);
    }
}

int emb_matmul(emb_ctx *ctx, const void *w, int type, int64_t n_out, int64_t n_in, const float *x,
               int64_t n_tok, float *y) {
    emb_ctx_count_call(ctx);
    const int level = emb_ctx_level(ctx);
    const emb_type_traits *tr = emb_get_type_traits(type, level);
    if (!tr || !tr->vec_dot || n_in % tr->block_size != 0 || n_out <= 0 || n_tok <= 0) return -1;
    const emb_type_traits *dt = emb_get_type_traits(tr->vec_dot_type, level);
    if (!dt || n_in % dt->block_size != 0) return -1;
    if (n_tok >= emb_ctx_gemm_min_tokens(ctx)) {
        const int rc = emb_gemm_unpacked(ctx, w, type, n_out, n_in, x, n_tok, y);
        if (rc != -1) return rc;
    }

    const char *xq = (const char *)x;
    size_t xq_row_bytes = (size_t)n_in * sizeof(float);
    if (tr->vec_dot_type != EMB_TYPE_F32) {
        if (!dt->from_float) return -1;
        xq_row_bytes = (size_t)(n_in / dt->block_size * dt->block_bytes);
        char *buf = (char *)emb_ctx_scratch(ctx, xq_row_bytes * (size_t)n_tok);
        if (!buf) return -2;
        quantize_task qt = {dt->from_float, x, buf, n_in, n_tok, xq_row_bytes};
        if (n_tok > 1) {
            emb_parallel(ctx, quantize_worker, &qt);
        } else {
            quantize_worker(&qt, 0, 1);
        }
        xq = buf;
    }

    matmul_task t;
    t.traits = tr;
    for (int g = 0; g <= 4; g++) t.tiles[g] = g >= 1 ? emb_dot_tile_for(type, level, n_in, g) : NULL;
    t.w = (const char *)w;
    t.w_row_bytes = (size_t)(n_in / tr->block_size * tr->block_bytes);
    t.xq = xq;
    t.xq_row_bytes = xq_row_bytes;
    t.y = y;
    t.n_out = n_out;
    t.n_in = n_in;
    t.n_tok = n_tok;
    /* Chunks: several per thread so a slow core does not hold the others up, never tiny. */
    const int nth = emb_ctx_threads(ctx);
    int64_t chunk = n_out / (nth * 8);
    if (chunk < ROW_BLOCK) chunk = ROW_BLOCK;
    chunk = (chunk + ROW_BLOCK - 1) / ROW_BLOCK * ROW_BLOCK;
    t.chunk_rows = chunk;
    EMB_COUNTER_INIT(t.next_row, 0);
    if (nth > 1 && n_out > ROW_BLOCK) {
        emb_parallel(ctx, matmul_worker, &t);
    } else {
        matmul_worker(&t, 0, 1);
    }
    return 0;
}

/* Several matrices applied to the same activations (Q/K/V, gate/up).  Small batches convert the activations
 * once per vec_dot type and share one parallel region over all rows; larger ones go matrix by matrix. */
#define EMB_MAX_MULTI 8

typedef struct {
    int n_mats;
    const emb_type_traits *traits[EMB_MAX_MULTI];
    emb_dot_tile_fn tiles[EMB_MAX_MULTI][5];
    const char *w[EMB_MAX_MULTI];
    size_t w_row_bytes[EMB_MAX_MULTI];
    const char *xq[EMB_MAX_MULTI];
    size_t xq_row_bytes[EMB_MAX_MULTI];
    float *y[EMB_MAX_MULTI];
    int64_t n_out[EMB_MAX_MULTI];
    int64_t row_start[EMB_MAX_MULTI + 1]; /* prefix sums of n_out */
    int64_t n_in, n_tok, chunk_rows;
    emb_counter next_row;
} multi_task;

static void multi_worker(void *p, int ith, int nth) {
    (void)ith;
    (void)nth;
    multi_task *t = (multi_task *)p;
    const int64_t total = t->row_start[t->n_mats];
    for (;;) {
        int64_t r0 = (int64_t)EMB_COUNTER_NEXT(t->next_row, t->chunk_rows);
        if (r0 >= total) break;
        const int64_t r1 = r0 + t->chunk_rows < total ? r0 + t->chunk_rows : total;
        for (int m = 0; m < t->n_mats && r0 < r1; m++) {
            if (r0 >= t->row_start[m + 1]) continue;
            const int64_t end = r1 < t->row_start[m + 1] ? r1 : t->row_start[m + 1];
            const int64_t lr0 = r0 - t->row_start[m], lr1 = end - t->row_start[m];
            for (int64_t rb = lr0; rb < lr1; rb += ROW_BLOCK) {
                const int64_t re = rb + ROW_BLOCK < lr1 ? rb + ROW_BLOCK : lr1;
                rows_x_tokens(t->traits[m]->vec_dot, t->tiles[m], t->w[m], t->w_row_bytes[m], t->n_out[m], rb, re,
                              t->xq[m], t->xq_row_bytes[m], t->y[m], t->n_out[m], t->n_in, t->n_tok);
            }
            r0 = end;
        }
    }
}

int emb_matmul_multi(emb_ctx *ctx, int n_mats, void **ws, int *types, int64_t *n_outs, int64_t n_in, const float *x,
                     int64_t n_tok, float **ys) {
    if (n_mats <= 0 || n_mats > EMB_MAX_MULTI || n_tok <= 0) return -1;
    if (n_tok >= emb_ctx_gemm_min_tokens(ctx)) {
        for (int m = 0; m < n_mats; m++) {
            const int rc = emb_matmul(ctx, ws[m], types[m], n_outs[m], n_in, x, n_tok, ys[m]);
            if (rc != 0) return rc;
        }
        return 0;
    }
    emb_ctx_count_call(ctx);
    const int level = emb_ctx_level(ctx);
    multi_task t;
    memset(&t, 0, sizeof t);
    t.n_mats = n_mats;
    t.n_in = n_in;
    t.n_tok = n_tok;
    /* one conversion of x per distinct vec_dot type, packed one after another in scratch */
    size_t need = 0;
    for (int m = 0; m < n_mats; m++) {
        const emb_type_traits *tr = emb_get_type_traits(types[m], level);
        if (!tr || !tr->vec_dot || n_in % tr->block_size != 0 || n_outs[m] <= 0) return -1;
        const emb_type_traits *dt = emb_get_type_traits(tr->vec_dot_type, level);
        if (!dt || n_in % dt->block_size != 0 || (tr->vec_dot_type != EMB_TYPE_F32 && !dt->from_float)) return -1;
        t.traits[m] = tr;
        for (int g = 0; g <= 4; g++) t.tiles[m][g] = g >= 1 ? emb_dot_tile_for(types[m], level, n_in, g) : NULL;
        t.w[m] = (const char *)ws[m];
        t.w_row_bytes[m] = (size_t)(n_in / tr->block_size * tr->block_bytes);
        t.xq_row_bytes[m] = tr->vec_dot_type == EMB_TYPE_F32 ? (size_t)n_in * sizeof(float)
                                                             : (size_t)(n_in / dt->block_size * dt->block_bytes);
        t.y[m] = ys[m];
        t.n_out[m] = n_outs[m];
        t.row_start[m + 1] = t.row_start[m] + n_outs[m];
        need += (t.xq_row_bytes[m] * (size_t)n_tok + 63) & ~(size_t)63;
    }
    char *buf = (char *)emb_ctx_scratch(ctx, need);
    if (!buf) return -2;
    size_t used = 0;
    for (int m = 0; m < n_mats; m++) {
        const int vdt = t.traits[m]->vec_dot_type;
        int same = -1;
        for (int j = 0; j < m; j++) {
            if (t.traits[j]->vec_dot_type == vdt) same = j;
        }
        if (vdt == EMB_TYPE_F32) {
            t.xq[m] = (const char *)x;
        } else if (same >= 0) {
            t.xq[m] = t.xq[same];
        } else {
            char *dst = buf + used;
            const emb_type_traits *dt = emb_get_type_traits(vdt, level);
            for (int64_t tok = 0; tok < n_tok; tok++) dt->from_float(x + tok * n_in, dst + tok * t.xq_row_bytes[m], n_in);
            t.xq[m] = dst;
            used += (t.xq_row_bytes[m] * (size_t)n_tok + 63) & ~(size_t)63;
        }
    }
    const int nth = emb_ctx_threads(ctx);
    const int64_t total = t.row_start[n_mats];
    int64_t chunk = total / (nth * 8);
    if (chunk < ROW_BLOCK) chunk = ROW_BLOCK;
    t.chunk_rows = chunk;
    EMB_COUNTER_INIT(t.next_row, 0);
    if (nth > 1 && total > ROW_BLOCK) {
        emb_parallel(ctx, multi_worker, &t);
    } else {
        multi_worker(&t, 0, 1);
    }
    return 0;
}
