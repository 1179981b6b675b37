/*
 * sampling.c - whole-vocabulary helpers for the token sampler chain (emberllm/sampling.py).
 *
 * The Python sampler works on short candidate lists; whatever has to look at every logit lives here:
 * exact (sorted) top-k selection, the k logits nearest a value (locally typical sampling), counts above a
 * threshold, log-sum-exp and entropy for exact normalisation, logit statistics (top-n-sigma), a draw from
 * the softmax of the whole vocabulary, and the repeat scan of the DRY sampler.
 *
 * Everything is single-threaded, allocation-free and stateless.  Where a function takes `scale`, the
 * logits it works on are scale * x (scale = 1 / temperature, > 0).  NaN logits count as -inf.
 */
#define EMB_INTERNAL
#include "ember.h"

#include <math.h>

/* Selection skips blocks of SEL_BLOCK logits that cannot enter the heap; sums add SUM_BLOCK terms in
 * float lanes before adding the block to a double. */
#define SEL_BLOCK 64
#define SUM_BLOCK 256
#define LANES 16

/* Below this exp() is under 1.7e-38 of the largest term: such terms (-inf and NaN logits among them)
 * count as exactly 0. */
#define EXP_FLOOR (-87.0f)

/* On x86-64 Linux with GCC the whole-vocabulary loops get AVX-512 and AVX2 clones picked at load time
 * (ifunc); elsewhere (WebAssembly, other compilers) the portable loops are what the compiler vectorizes. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(EMB_NO_CLONES)
#define EMB_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EMB_SIMD_CLONES
#endif

/* Helpers are forced inline so that every clone gets its own SIMD copy of them. */
#if defined(__GNUC__)
#define EMB_HOT static inline __attribute__((always_inline))
#else
#define EMB_HOT static inline
#endif

/* exp(d) for d <= 0, about 2 ulp, branch-free so that the loops using it vectorize (Cephes expf). */
EMB_HOT float exp_nonpos(float d) {
    d = d < EXP_FLOOR ? EXP_FLOOR : d;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer in the low bits */
    const float t = d * 1.44269504088896341f + magic;
    union {
        float f;
        int32_t i;
    } k = {t};
    const int32_t n = k.i - 0x4B400000;
    const float nf = t - magic;
    const float r = (d - nf * 0.693359375f) - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } s = {(n + 127) * (1 << 23)};
    return p * s.f;
}

/* The largest element (NaN ignored); -inf when there is none. */
EMB_HOT float max_f32(const float *x, int64_t n) {
    float m[LANES];
    for (int l = 0; l < LANES; l++) m[l] = -INFINITY;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
    }
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float best = m[0];
    for (int l = 1; l < LANES; l++) best = m[l] > best ? m[l] : best;
    return best;
}

/* Whether any key of a block beats `bar`: a key is the logit itself, or minus its distance to `center`. */
EMB_HOT int block_beats(const float *x, int64_t n, int near, float center, float bar) {
    int any = 0;
    if (near) {
        const float dist = -bar; /* key > bar  <=>  |x - center| < -bar */
        for (int64_t i = 0; i < n; i++) any |= fabsf(x[i] - center) < dist;
    } else {
        for (int64_t i = 0; i < n; i++) any |= x[i] > bar;
    }
    return any;
}

/* exp(scale * x[i] - m) for one block into e[] (terms below EXP_FLOOR are 0). */
EMB_HOT void block_exp(const float *x, int64_t n, float scale, float m, float *e) {
    for (int64_t i = 0; i < n; i++) {
        const float d = scale * x[i] - m;
        e[i] = d >= EXP_FLOOR ? exp_nonpos(d) : 0.0f;
    }
}

/* Sum of a block in float lanes (callers add blocks in double). */
EMB_HOT float block_sum(const float *v, int64_t n) {
    float s[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) s[l] += v[i + l];
    }
    for (; i < n; i++) s[0] += v[i];
    float total = 0.0f;
    for (int l = 0; l < LANES; l++) total += s[l];
    return total;
}

/* Sum of e[i] * (scale * x[i] - m) over a block (the entropy's cross term). */
EMB_HOT float block_weighted_sum(const float *x, const float *e, int64_t n, float scale, float m) {
    float s[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) s[l] += e[i + l] > 0.0f ? e[i + l] * (scale * x[i + l] - m) : 0.0f;
    }
    for (; i < n; i++) s[0] += e[i] > 0.0f ? e[i] * (scale * x[i] - m) : 0.0f;
    float total = 0.0f;
    for (int l = 0; l < LANES; l++) total += s[l];
    return total;
}

/* Heap order: a is worse than b when its key is smaller, or equal with a larger id (lower ids win ties). */
static inline int worse(float ka, int32_t ia, float kb, int32_t ib) {
    return ka < kb || (ka == kb && ia > ib);
}

static inline void swap_at(float *key, int32_t *id, int64_t a, int64_t b) {
    const float tk = key[a];
    key[a] = key[b];
    key[b] = tk;
    const int32_t ti = id[a];
    id[a] = id[b];
    id[b] = ti;
}

static void sift_down(float *key, int32_t *id, int64_t n, int64_t i) {
    for (;;) {
        const int64_t l = 2 * i + 1, r = l + 1;
        int64_t w = i;
        if (l < n && worse(key[l], id[l], key[w], id[w])) w = l;
        if (r < n && worse(key[r], id[r], key[w], id[w])) w = r;
        if (w == i) return;
        swap_at(key, id, i, w);
        i = w;
    }
}

static void sift_up(float *key, int32_t *id, int64_t i) {
    while (i > 0) {
        const int64_t parent = (i - 1) / 2;
        if (!worse(key[i], id[i], key[parent], id[parent])) return;
        swap_at(key, id, i, parent);
        i = parent;
    }
}

/* The k elements of largest key, sorted by key descending (ties: lower id first).  A min-heap of the k
 * best so far (root: the worst of them) lives in the output arrays: one pass over x, O(log k) per accepted
 * element, and blocks with nothing above the root are skipped after one vectorized compare. */
EMB_HOT int64_t select_best(const float *x, int64_t n, int64_t k, int near, float center, int32_t *ids,
                            float *keys) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    int64_t have = 0;
    for (int64_t i0 = 0; i0 < n; i0 += SEL_BLOCK) {
        const int64_t i1 = i0 + SEL_BLOCK < n ? i0 + SEL_BLOCK : n;
        if (have == k && !block_beats(x + i0, i1 - i0, near, center, keys[0])) continue;
        for (int64_t i = i0; i < i1; i++) {
            const float key = near ? -fabsf(x[i] - center) : x[i];
            if (key != key) continue;
            if (have < k) {
                keys[have] = key;
                ids[have] = (int32_t)i;
                sift_up(keys, ids, have);
                have++;
            } else if (key > keys[0]) {
                keys[0] = key;
                ids[0] = (int32_t)i;
                sift_down(keys, ids, k, 0);
            }
        }
    }
    for (int64_t end = have - 1; end > 0; end--) {
        swap_at(keys, ids, 0, end);
        sift_down(keys, ids, end, 0);
    }
    return have;
}

/* The k largest logits (NaN skipped): ids and values, descending, ties by lower id; returns how many. */
EMB_SIMD_CLONES int64_t emb_top_k_sorted(const float *x, int64_t n, int64_t k, int32_t *out_ids, float *out_vals) {
    return select_best(x, n, k, 0, 0.0f, out_ids, out_vals);
}

/* The k logits nearest `center` (locally typical order), nearest first; values are the logits. */
EMB_SIMD_CLONES int64_t emb_nearest_k(const float *x, int64_t n, float center, int64_t k, int32_t *out_ids,
                                      float *out_vals) {
    const int64_t got = select_best(x, n, k, 1, center, out_ids, out_vals);
    for (int64_t i = 0; i < got; i++) out_vals[i] = x[out_ids[i]];
    return got;
}

/* How many logits are >= threshold. */
EMB_SIMD_CLONES int64_t emb_count_ge(const float *x, int64_t n, float threshold) {
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) count += x[i] >= threshold;
    return count;
}

/* Sum of exp(scale * x - shift) over lo <= x <= hi; shift >= scale * max(x) (the log-sum-exp: a mass). */
EMB_SIMD_CLONES double emb_sum_exp_between(const float *x, int64_t n, float scale, float shift, float lo, float hi) {
    float e[SUM_BLOCK];
    double sum = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += SUM_BLOCK) {
        const int64_t len = n - i0 < SUM_BLOCK ? n - i0 : SUM_BLOCK;
        for (int64_t i = 0; i < len; i++) {
            const float v = x[i0 + i];
            const float d = scale * v - shift; /* <= 0 (up to rounding) as shift >= scale * max(x) */
            e[i] = v >= lo && v <= hi && d >= EXP_FLOOR ? exp_nonpos(d) : 0.0f;
        }
        sum += block_sum(e, len);
    }
    return sum;
}

/* Logits outside [lo, hi] become -inf; returns how many finite-or-+inf ones are left. */
EMB_SIMD_CLONES int64_t emb_mask_outside(float *x, int64_t n, float lo, float hi) {
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        const int in = v >= lo && v <= hi && v > -INFINITY;
        x[i] = in ? v : -INFINITY;
        kept += in;
    }
    return kept;
}

/* log(sum(exp(scale * x))); with out_entropy, the entropy (nats) of that softmax too.  -inf if all are -inf. */
EMB_SIMD_CLONES double emb_logsumexp(const float *x, int64_t n, float scale, float *out_entropy) {
    const float mx = max_f32(x, n);
    if (n <= 0 || mx == -INFINITY) {
        if (out_entropy) *out_entropy = 0.0f;
        return -INFINITY;
    }
    const float m = scale * mx;
    float e[SUM_BLOCK];
    double sum = 0.0, wsum = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += SUM_BLOCK) {
        const int64_t len = n - i0 < SUM_BLOCK ? n - i0 : SUM_BLOCK;
        block_exp(x + i0, len, scale, m, e);
        sum += block_sum(e, len);
        if (out_entropy) wsum += block_weighted_sum(x + i0, e, len, scale, m);
    }
    /* entropy = sum p (lse - l) = log(sum) - sum e * (l - m) / sum */
    if (out_entropy) *out_entropy = (float)(log(sum) - wsum / sum);
    return (double)m + log(sum);
}

/* Sum of the finite-or-+inf values of a block and of their squared distances to `mean`, and their count. */
EMB_HOT float block_finite_sum(const float *x, int64_t n, float mean, int squares, int64_t *count) {
    float s[LANES] = {0};
    int32_t c[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) {
            const float v = x[i + l];
            const float d = squares ? (v - mean) * (v - mean) : v;
            s[l] += v > -INFINITY ? d : 0.0f;
            c[l] += v > -INFINITY;
        }
    }
    for (; i < n; i++) {
        const float v = x[i];
        const float d = squares ? (v - mean) * (v - mean) : v;
        s[0] += v > -INFINITY ? d : 0.0f;
        c[0] += v > -INFINITY;
    }
    int64_t ct = 0;
    for (int l = 0; l < LANES; l++) ct += c[l];
    *count += ct;
    return block_sum(s, LANES);
}

/* out[0..2] = max, mean, standard deviation of the logits other than -inf; 0 when there are none. */
EMB_SIMD_CLONES int emb_logit_stats(const float *x, int64_t n, float *out) {
    /* llama.cpp's top-n-sigma statistics: max, mean and standard deviation of the logits other than -inf. */
    double total = 0.0, acc = 0.0;
    int64_t count = 0, unused = 0;
    for (int64_t i0 = 0; i0 < n; i0 += SUM_BLOCK) {
        const int64_t len = n - i0 < SUM_BLOCK ? n - i0 : SUM_BLOCK;
        total += block_finite_sum(x + i0, len, 0.0f, 0, &count);
    }
    const double mean = count > 0 ? total / (double)count : 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += SUM_BLOCK) {
        const int64_t len = n - i0 < SUM_BLOCK ? n - i0 : SUM_BLOCK;
        acc += block_finite_sum(x + i0, len, (float)mean, 1, &unused);
    }
    out[0] = max_f32(x, n);
    out[1] = (float)mean;
    out[2] = count > 0 ? (float)sqrt(acc / (double)count) : 0.0f;
    return count > 0;
}

/* The token whose cumulative softmax(scale * x) probability, in vocabulary order, first reaches u (in
 * [0, 1)): llama.cpp's dist draw over an unsorted array.  -1 if every logit is -inf. */
EMB_SIMD_CLONES int64_t emb_sample_softmax(const float *x, int64_t n, float scale, double u) {
    const float mx = max_f32(x, n);
    if (n <= 0 || mx == -INFINITY) return -1;
    const float m = scale * mx;
    float e[SUM_BLOCK];
    double total = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += SUM_BLOCK) {
        const int64_t len = n - i0 < SUM_BLOCK ? n - i0 : SUM_BLOCK;
        block_exp(x + i0, len, scale, m, e);
        total += block_sum(e, len);
    }
    /* Walk whole blocks (the same float block sums as above) to the one holding the target, then its
     * elements; if rounding leaves the target unreached, the last token of non-zero weight. */
    const double target = u * total;
    double run = 0.0;
    int64_t last = -1;
    for (int64_t i0 = 0; i0 < n; i0 += SUM_BLOCK) {
        const int64_t len = n - i0 < SUM_BLOCK ? n - i0 : SUM_BLOCK;
        block_exp(x + i0, len, scale, m, e);
        const float bs = block_sum(e, len);
        if (bs <= 0.0f) continue;
        if (run + bs < target) {
            run += bs;
            continue;
        }
        double within = run;
        for (int64_t i = 0; i < len; i++) {
            if (e[i] <= 0.0f) continue;
            within += e[i];
            last = i0 + i;
            if (within >= target) return last;
        }
        run += bs;
    }
    return last;
}

/* DRY's repeat scan over a token history (oldest first): for every earlier copy of the history's latest
 * tokens (at most rep_limit long) of length >= min_len, the token that followed it and the length.  Writes
 * the pairs to out_tokens / out_lens (room for n each) and returns their number. */
int64_t emb_dry_repeats(const int32_t *tokens, int64_t n, int64_t rep_limit, int64_t min_len, int32_t *out_tokens,
                        int32_t *out_lens) {
    /* Z-array of the history read backwards (r[j] = tokens[n - 1 - j]): z[k] is how many of the latest
     * tokens also appear ending k tokens earlier.  out_lens holds z while it is built. */
    if (n < 2) return 0;
    int32_t *z = out_lens;
    z[0] = 0;
    int64_t lt = 0, rt = 0;
    for (int64_t k = 1; k < n; k++) {
        int64_t len;
        if (k > rt) {
            len = 0;
            while (k + len < n && tokens[n - 1 - len] == tokens[n - 1 - (k + len)]) len++;
            if (len > 0) {
                lt = k;
                rt = k + len - 1;
            }
        } else {
            const int64_t p = k - lt, right = rt - k + 1;
            if (z[p] < right) {
                len = z[p];
            } else {
                int64_t i = rt + 1;
                while (i < n && tokens[n - 1 - i] == tokens[n - 1 - (i - k)]) i++;
                len = i - k;
                lt = k;
                rt = i - 1;
            }
        }
        z[k] = (int32_t)len;
    }
    /* A repeat of length >= min_len would be extended by the token that followed its earlier copy
     * (z is read at k before position k - 1 < k of the outputs is written). */
    int64_t w = 0;
    for (int64_t k = 1; k < n; k++) {
        const int64_t len = z[k] < rep_limit ? z[k] : rep_limit;
        if (len >= min_len) {
            out_tokens[w] = tokens[n - k];
            out_lens[w] = (int32_t)len;
            w++;
        }
    }
    return w;
}
