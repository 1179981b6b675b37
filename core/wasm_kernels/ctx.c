/*
 * ctx.c - the kernel context: chosen SIMD level, a small thread pool and scratch memory.
 *
 * The pool keeps n_threads - 1 workers; the calling thread is worker 0.  Workers spin briefly on a
 * generation counter after each task (ops come back to back during a forward pass) and then sleep on a
 * condition variable, so an idle server does not burn a core.  Builds without pthreads (WebAssembly in
 * Pyodide) run everything on the calling thread.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__EMSCRIPTEN__) && !defined(__wasm__) && !defined(EMB_NO_THREADS)
#define EMB_HAVE_THREADS 1
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#else
#define EMB_HAVE_THREADS 0
#endif

#define EMB_MAX_THREADS 64
#define EMB_SPIN_ROUNDS 200000

#if EMB_HAVE_THREADS
typedef struct {
    emb_ctx *ctx;
    int ith;
} emb_worker;
#endif

struct emb_ctx {
    int level;
    int n_threads;
    int64_t calls;
    int64_t gemm_min_tokens;
    int64_t attn_half_rows;
    emb_f16 *gelu_table;
    void *scratch;
    size_t scratch_size;
#if EMB_HAVE_THREADS
    pthread_t threads[EMB_MAX_THREADS];
    emb_worker workers[EMB_MAX_THREADS];
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_int generation;
    atomic_int pending;
    atomic_int sleeping;
    atomic_int stop;
    emb_task_fn fn;
    void *arg;
#endif
};

static inline void emb_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#if EMB_HAVE_THREADS
/* Spin, but give the core away now and then: on a loaded machine the thread we wait for may need it. */
static inline void emb_backoff(int spin) {
    if ((spin & 255) == 255) {
        sched_yield();
    } else {
        emb_cpu_relax();
    }
}

static void *emb_worker_main(void *p) {
    emb_worker *w = (emb_worker *)p;
    emb_ctx *ctx = w->ctx;
    int seen = 0; /* the generation at creation: a task may already be posted before this thread runs */
    for (;;) {
        int gen = atomic_load(&ctx->generation);
        for (int spin = 0; gen == seen && spin < EMB_SPIN_ROUNDS && !atomic_load(&ctx->stop); spin++) {
            emb_backoff(spin);
            gen = atomic_load(&ctx->generation);
        }
        if (gen == seen) {
            pthread_mutex_lock(&ctx->mutex);
            atomic_fetch_add(&ctx->sleeping, 1);
            while ((gen = atomic_load(&ctx->generation)) == seen && !atomic_load(&ctx->stop)) {
                pthread_cond_wait(&ctx->wake, &ctx->mutex);
            }
            atomic_fetch_sub(&ctx->sleeping, 1);
            pthread_mutex_unlock(&ctx->mutex);
        }
        if (atomic_load(&ctx->stop)) break;
        seen = gen;
        ctx->fn(ctx->arg, w->ith, ctx->n_threads);
        atomic_fetch_sub(&ctx->pending, 1);
    }
    return NULL;
}
#endif

emb_ctx *emb_ctx_new(int n_threads, int level) {
    if (level < 0 || level >= EMB_LEVEL_COUNT || !emb_kernel_level_supported(level)) return NULL;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > EMB_MAX_THREADS) n_threads = EMB_MAX_THREADS;
#if !EMB_HAVE_THREADS
    n_threads = 1;
#endif
    emb_ctx *ctx = (emb_ctx *)calloc(1, sizeof(emb_ctx));
    if (!ctx) return NULL;
    ctx->level = level;
    ctx->gemm_min_tokens = EMB_GEMM_MIN_TOKENS;
    /* the float path where the half path has no fast twin (ops.c) */
    ctx->attn_half_rows = (level == EMB_LEVEL_WASM_SIMD128 || level == EMB_LEVEL_WASM_RELAXED ||
                           level == EMB_LEVEL_NEON || level == EMB_LEVEL_NEON_DOTPROD)
                              ? 0
                              : EMB_ATTN_HALF_ROWS;
    ctx->n_threads = n_threads;
    ctx->gelu_table = (emb_f16 *)malloc(sizeof(emb_f16) * 65536);
    if (!ctx->gelu_table) {
        free(ctx);
        return NULL;
    }
    for (int i = 0; i < 65536; i++) {
        const float x = emb_f16_to_f32((emb_f16)i);
        const float g = 0.5f * x * (1.0f + tanhf(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
        ctx->gelu_table[i] = emb_f32_to_f16(g);
    }
#if EMB_HAVE_THREADS
    pthread_mutex_init(&ctx->mutex, NULL);
    pthread_cond_init(&ctx->wake, NULL);
    atomic_init(&ctx->generation, 0);
    atomic_init(&ctx->pending, 0);
    atomic_init(&ctx->sleeping, 0);
    atomic_init(&ctx->stop, 0);
    for (int i = 1; i < n_threads; i++) {
        ctx->workers[i].ctx = ctx;
        ctx->workers[i].ith = i;
        if (pthread_create(&ctx->threads[i], NULL, emb_worker_main, &ctx->workers[i]) != 0) {
            ctx->n_threads = i; /* run with the workers we got */
            break;
        }
    }
#endif
    return ctx;
}

void emb_ctx_free(emb_ctx *ctx) {
    if (!ctx) return;
#if EMB_HAVE_THREADS
    pthread_mutex_lock(&ctx->mutex);
    atomic_store(&ctx->stop, 1);
    pthread_cond_broadcast(&ctx->wake);
    pthread_mutex_unlock(&ctx->mutex);
    for (int i = 1; i < ctx->n_threads; i++) pthread_join(ctx->threads[i], NULL);
    pthread_cond_destroy(&ctx->wake);
    pthread_mutex_destroy(&ctx->mutex);
#endif
    free(ctx->scratch);
    free(ctx->gelu_table);
    free(ctx);
}

int emb_ctx_level(const emb_ctx *ctx) { return ctx->level; }
int emb_ctx_threads(const emb_ctx *ctx) { return ctx->n_threads; }
int64_t emb_ctx_calls(const emb_ctx *ctx) { return ctx->calls; }
void emb_ctx_count_call(emb_ctx *ctx) { ctx->calls++; }
int64_t emb_ctx_gemm_min_tokens(const emb_ctx *ctx) { return ctx->gemm_min_tokens; }
int64_t emb_ctx_set_gemm_min_tokens(emb_ctx *ctx, int64_t n) {
    const int64_t old = ctx->gemm_min_tokens;
    ctx->gemm_min_tokens = n < 1 ? 1 : n;
    return old;
}
int64_t emb_ctx_attn_half_rows(const emb_ctx *ctx) { return ctx->attn_half_rows; }
int64_t emb_ctx_set_attn_half_rows(emb_ctx *ctx, int64_t n) {
    const int64_t old = ctx->attn_half_rows;
    ctx->attn_half_rows = n < 0 ? 0 : n;
    return old;
}
const emb_f16 *emb_ctx_gelu_table(const emb_ctx *ctx) { return ctx->gelu_table; }

void emb_parallel(emb_ctx *ctx, emb_task_fn fn, void *arg) {
#if EMB_HAVE_THREADS
    if (ctx->n_threads > 1) {
        ctx->fn = fn;
        ctx->arg = arg;
        atomic_store(&ctx->pending, ctx->n_threads - 1);
        atomic_fetch_add(&ctx->generation, 1);
        if (atomic_load(&ctx->sleeping) > 0) {
            pthread_mutex_lock(&ctx->mutex);
            pthread_cond_broadcast(&ctx->wake);
            pthread_mutex_unlock(&ctx->mutex);
        }
        fn(arg, 0, ctx->n_threads);
        for (int spin = 0; atomic_load(&ctx->pending) > 0; spin++) emb_backoff(spin);
        return;
    }
#endif
    fn(arg, 0, 1);
}

void *emb_ctx_scratch(emb_ctx *ctx, size_t nbytes) {
    if (nbytes > ctx->scratch_size) {
        size_t size = nbytes + nbytes / 4 + 64;
        size = (size + 63) & ~(size_t)63;
        void *p = NULL;
#if defined(_WIN32)
        p = _aligned_malloc(size, 64);
#else
        p = aligned_alloc(64, size);
#endif
        if (!p) return NULL;
        free(ctx->scratch);
        ctx->scratch = p;
        ctx->scratch_size = size;
    }
    return ctx->scratch;
}
