/*
 * attn_wasm.c - WebAssembly SIMD128 twins of the float-path row helpers attention uses (ops.c's *_scalar
 * functions: half-to-float conversion, dot products and axpy over float rows).
 *
 * Every result equals the scalar twin's bit for bit: half to float is exact, element-wise products and sums are
 * the same operations, and dot products keep each row's running sum in index order, as the scalar loop does.
 * The WebAssembly levels run attention on the float path at every batch size (emb_ctx_set_attn_half_rows), so
 * the half path's helpers stay scalar there.  tests/pyodide/check_kernels.py compares them with the scalar level.
 */
#define EMB_INTERNAL
#include "ember.h"

#if (defined(__wasm__) || defined(__EMSCRIPTEN__)) && defined(__wasm_simd128__)
#include <wasm_simd128.h>

static inline v128_t load_h4(const emb_f16 *p) { return wasm_u32x4_load16x4(p); }

void emb_attn_cvt_h_simd128(const emb_f16 *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, emb_wasm_f16x4_to_f32(load_h4(x + i)));
    for (; i < n; i++) y[i] = emb_f16_to_f32(x[i]);
}

void emb_attn_axpy_f32_simd128(float *y, const float *x, float a, int64_t n) {
    const v128_t va = wasm_f32x4_splat(a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(va, wasm_v128_load(x + i))));
    }
    for (; i < n; i++) y[i] += a * x[i];
}

/* out[j] = q . k[j ld ..]: lane j keeps row j's running sum in index order (4x4 transposes of the rows). */
void emb_attn_dot4_f32_simd128(const float *q, const float *k, int64_t ld, int64_t n, float *out) {
    v128_t acc = wasm_f32x4_splat(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const v128_t r0 = wasm_v128_load(k + i), r1 = wasm_v128_load(k + ld + i);
        const v128_t r2 = wasm_v128_load(k + 2 * ld + i), r3 = wasm_v128_load(k + 3 * ld + i);
        const v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5);
        const v128_t t2 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7), t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
        const v128_t c0 = wasm_i64x2_shuffle(t0, t1, 0, 2), c1 = wasm_i64x2_shuffle(t0, t1, 1, 3);
        const v128_t c2 = wasm_i64x2_shuffle(t2, t3, 0, 2), c3 = wasm_i64x2_shuffle(t2, t3, 1, 3);
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(q[i]), c0));
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(q[i + 1]), c1));
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(q[i + 2]), c2));
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(q[i + 3]), c3));
    }
    float s[4];
    wasm_v128_store(s, acc);
    for (; i < n; i++) {
        for (int j = 0; j < 4; j++) s[j] += q[i] * k[j * ld + i];
    }
    for (int j = 0; j < 4; j++) out[j] = s[j];
}

void emb_attn_axpy4_f32_simd128(float *y, const float *x, int64_t ld, const float *a, int64_t n) {
    const v128_t a0 = wasm_f32x4_splat(a[0]), a1 = wasm_f32x4_splat(a[1]);
    const v128_t a2 = wasm_f32x4_splat(a[2]), a3 = wasm_f32x4_splat(a[3]);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v128_t t = wasm_f32x4_add(wasm_f32x4_mul(a0, wasm_v128_load(x + i)), wasm_f32x4_mul(a1, wasm_v128_load(x + ld + i)));
        t = wasm_f32x4_add(t, wasm_f32x4_mul(a2, wasm_v128_load(x + 2 * ld + i)));
        t = wasm_f32x4_add(t, wasm_f32x4_mul(a3, wasm_v128_load(x + 3 * ld + i)));
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), t));
    }
    for (; i < n; i++) y[i] += a[0] * x[i] + a[1] * x[ld + i] + a[2] * x[2 * ld + i] + a[3] * x[3 * ld + i];
}

#endif
