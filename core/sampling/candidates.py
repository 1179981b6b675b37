"""The candidate set of one draw: the :class:`Candidates` protocol and the short-list implementation.

Two implementations share these methods, so that every sampler stage is written once:
:class:`~emberllm.sampling.full.FullCands` (the whole vocabulary, held in the logits buffer, worked on by the
C helpers) and :class:`ListCands` (a Python list of ids and logits).  A method that truncates returns the
set to continue with: a :class:`FullCands` turns into a :class:`ListCands` once few enough tokens are left.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .floats import INF, LN2, log0, pick, softmax
from .rng import uniform_double

Pairs = list[tuple[int, float]]


class Candidates(Protocol):
    """What the sampler stages do to a candidate set (llama.cpp's ``llama_token_data_array``)."""

    def size(self) -> int:
        """How many candidates there are."""

    def modify(self, targets: Mapping[int, Any], fn: Callable[[float, Any], float]) -> None:
        """Replace the logit l of every candidate in ``targets`` by ``fn(l, targets[id])``."""

    def keep_top_k(self, k: int) -> Candidates:
        """Top-k: the k best, sorted."""

    def keep_top_p(self, p: float, min_keep: int) -> Candidates:
        """Top-p: the sorted prefix whose probability reaches p (at least min_keep)."""

    def keep_min_p(self, p: float, min_keep: int) -> Candidates:
        """Min-p: the tokens whose probability is at least p times the best one's."""

    def keep_typical(self, p: float, min_keep: int) -> Candidates:
        """Typical-p: the tokens nearest the entropy in surprise, up to mass p, in that order."""

    def keep_sigma(self, n: float) -> Candidates:
        """Top-n-sigma: the logits at least max - n * std."""

    def sort_if_small(self) -> Candidates:
        """Where llama.cpp sorts the candidates: the buffer is sorted when small enough (lists stay as they are)."""

    def count_likely(self, threshold: float) -> int:
        """How many of the best candidates have a probability >= threshold (a list is sorted first)."""

    def drop_top(self, k: int) -> Candidates:
        """Remove the k best candidates."""

    def entropy(self) -> float:
        """Entropy (nats) of the softmax of the candidates."""

    def divide(self, temp: float) -> None:
        """Divide every logit by a temperature > 0."""

    def keep_argmax(self) -> Candidates:
        """Keep only the best candidate (greedy)."""

    def top_logits(self, m: int) -> list[float]:
        """The m highest logits, descending (a list is sorted first)."""

    def keep_surprise(self, mu: float) -> Candidates:
        """Mirostat 2: the sorted tokens whose surprise -log2(p) is at most mu (at least one)."""

    def draw(self, u: float, n_best: int) -> tuple[int, Pairs]:
        """The dist draw with uniform u; the final candidates with their probabilities (the whole-vocabulary
        set gives only its ``n_best`` best and the chosen one)."""

    def draw_discrete(self, rng: random.Random, n_best: int) -> tuple[int, Pairs]:
        """Like :meth:`draw`, as ``std::discrete_distribution`` (no random number for a single listed one)."""


class ListCands:
    """A short candidate list: ``ids`` with their current ``logits`` (``sorted``: descending)."""

    __slots__ = ("ids", "logits", "sorted")

    def __init__(self, ids: list[int], logits: list[float], is_sorted: bool) -> None:
        self.ids = ids
        self.logits = logits
        self.sorted = is_sorted

    def _sort_desc(self) -> None:
        """Sort by logit, descending (stable: equal logits keep their order)."""
        if self.sorted:
            return
        order = sorted(range(len(self.ids)), key=self.logits.__getitem__, reverse=True)
        self.ids = [self.ids[i] for i in order]
        self.logits = [self.logits[i] for i in order]
        self.sorted = True

    def _subset(self, keep: list[int]) -> None:
        """Keep the candidates at the given positions."""
        self.ids = [self.ids[i] for i in keep]
        self.logits = [self.logits[i] for i in keep]

    def _truncate(self, k: int) -> None:
        self.ids, self.logits = self.ids[:k], self.logits[:k]

    def size(self) -> int:
        return len(self.ids)

    def modify(self, targets: Mapping[int, Any], fn: Callable[[float, Any], float]) -> None:
        logits = self.logits
        for i, tok in enumerate(self.ids):
            arg = targets.get(tok)
            if arg is not None:
                logits[i] = fn(logits[i], arg)
        self.sorted = False

    def keep_top_k(self, k: int) -> ListCands:
        if k < len(self.ids):
            self._sort_desc()
            self._truncate(k)
        return self

    def keep_top_p(self, p: float, min_keep: int) -> ListCands:
        self._sort_desc()
        cum = 0.0
        for i, prob in enumerate(softmax(self.logits)):
            cum += prob
            if cum >= p and i + 1 >= min_keep:
                self._truncate(i + 1)
                break
        return self

    def keep_min_p(self, p: float, min_keep: int) -> ListCands:
        if not self.ids:
            return self
        if not self.sorted:
            threshold = max(self.logits) + math.log(p)
            kept = [i for i, v in enumerate(self.logits) if v >= threshold]
            if kept and len(kept) >= min_keep:
                self._subset(kept)
                return self
            self._sort_desc()
        threshold = self.logits[0] + math.log(p)
        i = 1
        while i < len(self.logits) and not (self.logits[i] < threshold and i >= min_keep):
            i += 1
        self._truncate(i)
        return self

    def keep_typical(self, p: float, min_keep: int) -> ListCands:
        self._sort_desc()
        probs = softmax(self.logits)
        entropy = -math.fsum(q * math.log(q) for q in probs if q > 0.0)
        order = sorted(range(len(probs)), key=lambda i: abs(-log0(probs[i]) - entropy))
        cum, last = 0.0, len(order)
        for rank, i in enumerate(order):
            cum += probs[i]
            if cum > p and (min_keep == 0 or rank >= min_keep - 1):
                last = rank + 1
                break
        self._subset(order[:last])
        self.sorted = False
        return self

    def keep_sigma(self, n: float) -> ListCands:
        finite = [v for v in self.logits if v != -INF]
        if not finite:
            return self
        mean = math.fsum(finite) / len(finite)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / len(finite))
        threshold = max(finite) - n * std
        self._subset([i for i, v in enumerate(self.logits) if v >= threshold])
        return self

    def sort_if_small(self) -> ListCands:
        return self

    def count_likely(self, threshold: float) -> int:
        self._sort_desc()
        count = 0
        for q in softmax(self.logits):
            if q < threshold:
                break
            count += 1
        return count

    def drop_top(self, k: int) -> ListCands:
        self._sort_desc()
        self.ids, self.logits = self.ids[k:], self.logits[k:]
        return self

    def entropy(self) -> float:
        return -math.fsum(q * math.log(q) for q in softmax(self.logits) if q > 0.0)

    def divide(self, temp: float) -> None:
        self.logits = [v / temp for v in self.logits]

    def keep_argmax(self) -> ListCands:
        if self.ids:
            best = max(range(len(self.logits)), key=self.logits.__getitem__)
            self.ids, self.logits, self.sorted = [self.ids[best]], [self.logits[best]], True
        return self

    def top_logits(self, m: int) -> list[float]:
        self._sort_desc()
        return self.logits[:m]

    def keep_surprise(self, mu: float) -> ListCands:
        if not self.ids:
            raise RuntimeError("no candidate token left to sample")
        self._sort_desc()
        probs = softmax(self.logits)
        keep = 0
        while keep < len(probs) and not -log0(probs[keep]) / LN2 > mu:
            keep += 1
        self._truncate(max(keep, 1))
        return self

    def draw(self, u: float, n_best: int) -> tuple[int, Pairs]:
        if not self.ids:
            raise RuntimeError("no candidate token left to sample")
        probs = softmax(self.logits)
        idx = pick(probs, u)
        return self.ids[idx], list(zip(self.ids, probs, strict=True))

    def draw_discrete(self, rng: random.Random, n_best: int) -> tuple[int, Pairs]:
        if not self.ids:
            raise RuntimeError("no candidate token left to sample")
        probs = softmax(self.logits)
        idx = pick(probs, uniform_double(rng)) if len(probs) > 1 else 0
        return self.ids[idx], list(zip(self.ids, probs, strict=True))
