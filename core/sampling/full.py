"""The whole-vocabulary candidate set: the logits buffer itself, worked on by the C helpers.

A token is a candidate while its logit is not -inf (``masked`` of them are); its current logit is
``scale * buffer[id]`` (``scale``: a temperature not yet applied).  Truncations that leave at most
``MATERIALIZE_LIMIT`` tokens (see :mod:`emberllm.sampling`) turn the set into a :class:`ListCands`; larger
ones mask the buffer's private copy.  ``desc``: llama.cpp would hold the candidates sorted by now (else in
vocabulary order), which decides the order of a list made from them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from emberllm import sampling as _package

from .buffer import LogitsBuffer
from .candidates import Candidates, ListCands, Pairs
from .floats import FLT_MAX, INF, LN2, bisect_floats, log0, next_down, next_up
from .rng import uniform_double

#: The C sums of probability are float-accurate: masses this close to a top-p / typical-p target count as
#: reaching it, as the exact sum would.
MASS_EPS = 1e-6


def _limit() -> int:
    """The largest candidate set that becomes a Python list (read at call time: tests lower it)."""
    return _package.MATERIALIZE_LIMIT


def _growth(least: int) -> tuple[int, ...]:
    """Candidate counts to try before falling back to a bisected threshold: 256, then MATERIALIZE_LIMIT."""
    limit = _limit()
    first = max(1, min(max(256, least), limit))
    return (first,) if first >= limit else (first, limit)


class FullCands:
    """The candidates held in the logits buffer (see the module docstring)."""

    __slots__ = ("buf", "scale", "masked", "desc")

    def __init__(self, buf: LogitsBuffer) -> None:
        self.buf = buf
        self.scale = 1.0
        self.masked = 0
        self.desc = False

    # -- helpers ------------------------------------------------------------------------------------------
    def _top(self, k: int) -> tuple[list[int], list[float]]:
        return self.buf.top(k, self.scale)

    def _mask(self, lo: float, hi: float) -> None:
        """Keep only the logits in [lo, hi]."""
        self.masked = self.buf.n - self.buf.mask(lo, hi)

    def _keep_ge(self, threshold: float, k: int, by_id: bool = False) -> Candidates:
        """Keep the k best tokens, which are those >= threshold.  ``by_id``: in vocabulary order, as
        llama.cpp's unsorted filters leave them (the order the final draw walks)."""
        if k > _limit():
            if k < self.size():
                self._mask(threshold, INF)
            return self
        ids, logits = self._top(k)
        if by_id:
            order = sorted(range(len(ids)), key=ids.__getitem__)
            ids, logits = [ids[i] for i in order], [logits[i] for i in order]
        return ListCands(ids, logits, not by_id)

    def _keep_top(self, k: int) -> Candidates:
        """Keep the k best tokens (all tied with the k-th when there are more than MATERIALIZE_LIMIT)."""
        if k <= _limit():
            return ListCands(*self._top(k), True)
        if k < self.size():
            self._mask(self.buf.kth_value(k), INF)
        return self

    # -- the Candidates methods ---------------------------------------------------------------------------
    def size(self) -> int:
        return self.buf.n - self.masked

    def modify(self, targets: Mapping[int, Any], fn: Callable[[float, Any], float]) -> None:
        buf = self.buf
        for tok, arg in targets.items():
            if buf.view[tok] != -INF:  # -inf stays -inf (and +inf bias on it is no NaN)
                value = fn(buf.view[tok] * self.scale, arg)
                old = buf.patch(tok, value / self.scale)
                if value == -INF and old != -INF:
                    self.masked += 1

    def keep_top_k(self, k: int) -> Candidates:
        out = self._keep_top(k)
        self.desc = True
        return out

    def keep_top_p(self, p: float, min_keep: int) -> Candidates:
        """The sorted prefix reaching mass p: from the top 256 or 1024 logits, else a bisected threshold."""
        buf = self.buf
        lse = buf.lse(self.scale)
        cum, done = 0.0, 0
        for k in _growth(max(min_keep, 1)):
            ids, logits = self._top(k)
            for i in range(done, len(logits)):
                cum += math.exp(logits[i] - lse)
                if cum >= p and i + 1 >= min_keep:
                    return ListCands(ids[: i + 1], logits[: i + 1], True)
            if len(ids) < k:
                return ListCands(ids, logits, True)
            done = len(ids)
        scale = self.scale
        cut = bisect_floats(-FLT_MAX, logits[-1] / scale, lambda t: buf.mass(scale, lse, t, INF) >= p - MASS_EPS)
        if buf.count_ge(cut) < min_keep:
            cut = buf.kth_value(min_keep)
        self._mask(cut, INF)
        self.desc = True
        return self

    def keep_min_p(self, p: float, min_keep: int) -> Candidates:
        _, top = self._top(1)
        threshold = (top[0] + math.log(p)) / self.scale
        count = self.buf.count_ge(threshold)
        if count >= max(min_keep, 1):
            return self._keep_ge(threshold, count, by_id=not self.desc)
        return self._keep_top(max(min_keep, 1))

    def keep_typical(self, p: float, min_keep: int) -> Candidates:
        """|-log p_i - H| = |l_i - (lse - H)|: typical order is nearness of the logit to lse - H.  The
        nearest 256 or 1024 tokens, else a bisected band around that centre."""
        buf = self.buf
        lse, entropy = buf.lse_entropy(self.scale)
        center = lse - entropy
        cum, done = 0.0, 0
        for k in _growth(max(min_keep, 1)):
            ids, logits = buf.nearest(center, k, self.scale)
            for i in range(done, len(logits)):
                cum += math.exp(logits[i] - lse)
                if cum > p and (min_keep == 0 or i >= min_keep - 1):
                    return ListCands(ids[: i + 1], logits[: i + 1], False)
            if len(ids) < k:
                return ListCands(ids, logits, False)
            done = len(ids)
        mid = center / self.scale
        width = bisect_floats(0.0, FLT_MAX, lambda r: buf.mass(self.scale, lse, mid - r, mid + r) <= p + MASS_EPS)
        width = next_up(width)
        self._mask(mid - width, mid + width)
        return self

    def keep_sigma(self, n: float) -> Candidates:
        top, std = self.buf.max_and_std()
        threshold = top - n * std
        return self._keep_ge(threshold, max(self.buf.count_ge(threshold), 1), by_id=not self.desc)

    def sort_if_small(self) -> Candidates:
        """Where llama.cpp sorts the whole candidate array, do so too when it is small enough (so that the
        draw walks the same order); larger sets stay in the buffer, drawn in vocabulary order."""
        self.desc = True
        if self.size() <= _limit():
            return ListCands(*self._top(self.size()), True)
        return self

    def count_likely(self, threshold: float) -> int:
        lse = self.buf.lse(self.scale)
        return self.buf.count_ge((lse + log0(threshold)) / self.scale)

    def drop_top(self, k: int) -> Candidates:
        if k <= _limit():
            ids, _ = self._top(k)
            self.buf.to_work()
            for tok in ids:
                self.buf.view[tok] = -INF
            self.masked += len(ids)
        else:
            self._mask(-INF, next_down(self.buf.kth_value(k)))
        return self

    def entropy(self) -> float:
        return self.buf.lse_entropy(self.scale)[1]

    def divide(self, temp: float) -> None:
        self.scale /= temp

    def keep_argmax(self) -> Candidates:
        return ListCands(*self._top(1), True)

    def top_logits(self, m: int) -> list[float]:
        return self._top(m)[1]

    def keep_surprise(self, mu: float) -> Candidates:
        lse = self.buf.lse(self.scale)
        threshold = (lse - mu * LN2) / self.scale
        return self._keep_ge(threshold, max(self.buf.count_ge(threshold), 1))

    def draw(self, u: float, n_best: int) -> tuple[int, Pairs]:
        token = self.buf.sample_softmax(self.scale, u)
        if token < 0:
            raise RuntimeError("no candidate token left to sample")
        if not n_best:
            return token, []
        lse = self.buf.lse(self.scale)
        ids, logits = self._top(n_best)
        pairs = [(tok, math.exp(v - lse)) for tok, v in zip(ids, logits, strict=True)]
        if token not in ids:
            pairs.append((token, math.exp(self.buf.view[token] * self.scale - lse)))
        return token, pairs

    def draw_discrete(self, rng: random.Random, n_best: int) -> tuple[int, Pairs]:
        """Always takes a random number: a set this large is never a single candidate (but in tests)."""
        return self.draw(uniform_double(rng), n_best)
