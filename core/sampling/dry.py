"""llama.cpp's DRY ("don't repeat yourself") sampler: penalize tokens that would extend a repeat."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence

from emberllm.backends.binding import Buffer, Kernels

from .candidates import Candidates
from .params import SamplingParams
from .stage import Stage
from .vocab import VocabInfo

_FLOAT_MAX_LOG = 88.7228391  # log(FLT_MAX): DRY clamps its exponent so base**exp stays finite


def dry_enabled(p: SamplingParams) -> bool:
    """Whether DRY's settings can change anything."""
    return p.dry_multiplier != 0.0 and p.dry_base >= 1.0 and p.dry_penalty_last_n != 0


def resolve_breakers(
    params: SamplingParams, vocab: VocabInfo, given: Mapping[int, Iterable[Sequence[int]]] | None
) -> dict[int, list[tuple[int, ...]]]:
    """DRY's token-level breakers: ``given`` (head token -> tails), else the vocabulary's processing of
    the request's breaker strings (none when DRY is off)."""
    if given is not None:
        return {int(tok): [tuple(t) for t in tails] for tok, tails in given.items()}
    if not dry_enabled(params):
        return {}
    return vocab.dry_breakers(params.dry_sequence_breakers)


class Dry(Stage):
    """DRY: every token that would extend a repeat of at least ``dry_allowed_length`` tokens (since the
    latest sequence breaker) loses ``dry_multiplier * dry_base ** (length - allowed)``."""

    name = "dry"

    def __init__(
        self, params: SamplingParams, breakers: dict[int, list[tuple[int, ...]]], kernels: Kernels, n_vocab: int
    ) -> None:
        self.params = params
        self.breakers = breakers
        self.single = {tok for tok, tails in breakers.items() if () in tails}
        self.kernels = kernels
        self.n_vocab = n_vocab
        self._hist_cap = 0
        self._hist: list[Buffer] = []

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        penalties = self.penalties(prev)
        if penalties:
            c.modify(penalties, lambda logit, pen: logit - pen)
        return c

    def penalties(self, prev: Sequence[int]) -> dict[int, float]:
        """llama.cpp's DRY: token -> penalty for every token that would extend a repeat."""
        p = self.params
        last_n = p.dry_penalty_last_n
        hist = prev if last_n < 0 else prev[-last_n:]
        allowed = p.dry_allowed_length
        if len(hist) <= allowed:
            return {}
        rep_limit = self._rep_limit(hist)
        if rep_limit < allowed:
            return {}
        longest: dict[int, int] = {}
        for tok, length in self._repeats(hist, rep_limit, allowed):
            if length > longest.get(tok, -1):
                longest[tok] = length
        max_exp = int(_FLOAT_MAX_LOG / math.log(p.dry_base)) if p.dry_base > 1.000001 else 0
        out = {}
        for tok, length in longest.items():
            if tok in self.single or not 0 <= tok < self.n_vocab:
                continue
            exponent = min(length - allowed, max_exp) if max_exp > 0 else length - allowed
            out[tok] = p.dry_multiplier * p.dry_base**exponent
        return out

    def _rep_limit(self, hist: Sequence[int]) -> int:
        """Step 1: the latest sequence breaker caps how long a repeat can be."""
        n = len(hist)
        breakers = self.breakers
        if not breakers:
            return n
        for i in range(n):
            tails = breakers.get(hist[n - 1 - i])
            if tails is None:
                continue
            best = -1
            for tail in tails:
                size = len(tail)
                if best < size <= i and all(tail[o] == hist[n - i + o] for o in range(size)):
                    best = size
            if best >= 0:
                return i - best
        return n

    def _repeats(self, hist: Sequence[int], rep_limit: int, min_len: int) -> list[tuple[int, int]]:
        """Steps 2-3 (C): (token that would extend a repeat, repeat length) pairs."""
        n = len(hist)
        if n > self._hist_cap:
            self._hist_cap = max(n, 2 * self._hist_cap, 256)
            self._hist = [self.kernels.i32(self._hist_cap) for _ in range(3)]
        tokens, out_tok, out_len = self._hist
        tokens.view[:n] = array("i", hist)
        got = self.kernels.lib.emb_dry_repeats(tokens.ptr, n, rep_limit, min_len, out_tok.ptr, out_len.ptr)
        return list(zip(out_tok.view[:got].tolist(), out_len.view[:got].tolist(), strict=True))
