/*
 * grammar.c - the vocabulary walk of grammar-constrained sampling (emberllm/grammar/tokens.py).
 *
 * The vocabulary's distinct token texts are sorted; lcp[k] is the length of the prefix key k shares with
 * key k-1.  The grammar's byte-level states are integers and trans[s * 256 + b] is the state after byte b
 * from state s (-1: rejected, -2: not computed yet).  The walk goes through the keys in order, reusing the
 * states of the shared prefix (states[d]: the state after d bytes of the current key); when a prefix is
 * rejected, every key starting with it is skipped by a binary search.  Accepted keys are written as ranges
 * [a, b) of key indices.
 *
 * A transition that is not computed yet stops the walk: it returns -1 with the state and byte in
 * resume[4], resume[5]; the caller computes it (the grammar automaton is in Python), stores it in trans and
 * calls again with the same resume, states and ranges to go on where it stopped.  resume holds
 * {key, depth, open run, ranges so far, need state, need byte, resuming mid-key}; start with
 * {0, 0, -1, 0, 0, 0, 0} and states[0] = the start state.  Stateless otherwise; no allocation.
 *
 * emb_grammar_mask sets x[order[p]] = -inf for the positions p of the ranges [lo, hi) (the tokens the walk
 * rejected, in the index's order) and returns how many were not -inf before.
 */
#include "ember.h"

#include <math.h>

#define GW_UNKNOWN (-2)

/* The first index j in [lo, n) whose key does not start with prefix[0..plen): keys starting with it
 * follow one another from lo on (the keys are sorted and key lo-1 starts with it). */
static int64_t gw_skip(const uint8_t *keys, const int32_t *off, int64_t lo, int64_t n, const uint8_t *prefix,
                       int32_t plen) {
    int64_t hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const uint8_t *key = keys + off[mid];
        int32_t len = off[mid + 1] - off[mid];
        int starts = len >= plen;
        for (int32_t i = 0; starts && i < plen; i++) {
            starts = key[i] == prefix[i];
        }
        if (starts) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int64_t emb_grammar_walk(const void *keys_v, const int32_t *off, const int32_t *lcp, int64_t n_keys,
                         const int32_t *trans, int64_t n_states, int32_t *states, int32_t *resume,
                         int32_t *ranges) {
    const uint8_t *keys = (const uint8_t *)keys_v;
    int64_t k = resume[0];
    int32_t good = resume[1];
    int64_t run = resume[2];
    int64_t nr = resume[3];
    int mid_key = resume[6];
    while (k < n_keys) {
        const uint8_t *key = keys + off[k];
        int32_t len = off[k + 1] - off[k];
        int32_t d = mid_key ? good : (lcp[k] < good ? lcp[k] : good);
        int32_t s = states[d];
        mid_key = 0;
        while (d < len) {
            int32_t t = s < n_states ? trans[(int64_t)s * 256 + key[d]] : GW_UNKNOWN;
            if (t == GW_UNKNOWN) {
                resume[0] = (int32_t)k;
                resume[1] = d;
                resume[2] = (int32_t)run;
                resume[3] = (int32_t)nr;
                resume[4] = s;
                resume[5] = key[d];
                resume[6] = 1;
                return -1;
            }
            if (t < 0) {
                break;
            }
            states[++d] = s = t;
        }
        if (d == len) {
            if (run < 0) {
                run = k;
            }
            good = len;
            k++;
            continue;
        }
        if (run >= 0) {
            ranges[2 * nr] = (int32_t)run;
            ranges[2 * nr + 1] = (int32_t)k;
            nr++;
            run = -1;
        }
        good = d;
        k = gw_skip(keys, off, k + 1, n_keys, key, d + 1);
    }
    if (run >= 0) {
        ranges[2 * nr] = (int32_t)run;
        ranges[2 * nr + 1] = (int32_t)n_keys;
        nr++;
    }
    resume[0] = (int32_t)n_keys;
    resume[3] = (int32_t)nr;
    return nr;
}

int64_t emb_grammar_mask(float *x, const int32_t *order, const int32_t *pos_ranges, int64_t n_ranges) {
    int64_t masked = 0;
    const float neg_inf = -INFINITY;
    for (int64_t r = 0; r < n_ranges; r++) {
        for (int32_t p = pos_ranges[2 * r]; p < pos_ranges[2 * r + 1]; p++) {
            float *v = x + order[p];
            masked += *v != neg_inf;
            *v = neg_inf;
        }
    }
    return masked;
}
