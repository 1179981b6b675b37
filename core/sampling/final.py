"""The chain's last step: the softmax draw (llama.cpp's ``dist``) or Mirostat v1 / v2."""

from __future__ import annotations

import math
import random

from .candidates import Candidates, Pairs
from .floats import INF, LN2, log0
from .params import SamplingParams
from .rng import uniform_double

MIROSTAT_M = 100  # tokens used by Mirostat v1's Zipf estimate (llama.cpp's common sampler)


def dist(c: Candidates, rng: random.Random, n_probs: int) -> tuple[int, Pairs]:
    """Draw from the softmax of the candidates: the token and the final candidates with their probabilities."""
    return c.draw(uniform_double(rng), n_probs)


def mirostat_v1(
    c: Candidates, p: SamplingParams, mu: float, rng: random.Random, n_vocab: int
) -> tuple[int, Pairs, float]:
    """Mirostat 1.0: estimate the Zipf exponent from the best 100, keep the top k that aims at tau.
    Returns the token, the final candidates with their probabilities and the new mu."""
    if c.size() == 0:
        raise RuntimeError("no candidate token left to sample")
    logits = c.top_logits(MIROSTAT_M)
    num = den = 0.0
    for i in range(min(MIROSTAT_M - 1, len(logits) - 1)):
        t_i = math.log((i + 2) / (i + 1))
        b_i = logits[i] - logits[i + 1]
        num += t_i * (b_i if b_i == b_i else INF)
        den += t_i * t_i
    k = mirostat_k(num / den if den > 0.0 else math.nan, mu, n_vocab)
    c = c.keep_top_k(k).sort_if_small()
    return _mirostat_draw(c, p, mu, rng)


def mirostat_v2(c: Candidates, p: SamplingParams, mu: float, rng: random.Random) -> tuple[int, Pairs, float]:
    """Mirostat 2.0: keep the tokens whose surprise -log2(p) is at most mu; returns as :func:`mirostat_v1`."""
    return _mirostat_draw(c.keep_surprise(mu), p, mu, rng)


def _mirostat_draw(c: Candidates, p: SamplingParams, mu: float, rng: random.Random) -> tuple[int, Pairs, float]:
    """Draw from what Mirostat kept and move mu by eta times the surprise's error.  The draw is
    ``std::discrete_distribution``'s, which takes no random number for a single candidate."""
    token, pairs = c.draw_discrete(rng, max(p.n_probs, 1))
    prob = next(q for tok, q in pairs if tok == token)
    mu -= p.mirostat_eta * (-log0(prob) / LN2 - p.mirostat_tau)
    return token, pairs, mu


def mirostat_k(s_hat: float, mu: float, n_vocab: int) -> int:
    """Mirostat v1's k from the Zipf exponent estimate.  llama.cpp's int() of a non-finite or huge value
    is INT_MIN on x86, which its max(k, 1) turns into 1: so here too."""
    try:
        eps = s_hat - 1.0
        k = ((eps * 2.0**mu) / (1.0 - n_vocab ** (-eps))) ** (1.0 / s_hat)
    except (OverflowError, ZeroDivisionError, ValueError):
        return 1
    if isinstance(k, complex) or not math.isfinite(k) or k >= 2**31:
        return 1
    return max(int(k), 1)
