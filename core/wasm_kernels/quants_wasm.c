/*
 * quants_wasm.c - WebAssembly SIMD kernels (simd128 and relaxed SIMD).
 *
 * Not written yet: the WASM levels use the scalar kernels of quants.c for every type.
 */
#define EMB_INTERNAL
#include "ember.h"

void emb_traits_wasm(int type, int level, emb_type_traits *t) {
    (void)type;
    (void)level;
    (void)t;
}
