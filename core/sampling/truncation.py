"""The truncating samplers: top-k, top-p, min-p, typical-p and top-n-sigma (llama.cpp's semantics)."""

from __future__ import annotations

from collections.abc import Sequence

from .candidates import Candidates
from .params import SamplingParams
from .stage import Stage


class TopK(Stage):
    """Keep the ``top_k`` most likely tokens, sorted."""

    name = "top_k"

    def __init__(self, params: SamplingParams) -> None:
        self.params = params

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        return c.keep_top_k(self.params.top_k)


class TopP(Stage):
    """Keep the most likely tokens until their probability reaches ``top_p`` (at least ``min_keep``)."""

    name = "top_p"

    def __init__(self, params: SamplingParams) -> None:
        self.params = params

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        return c.keep_top_p(self.params.top_p, self.params.min_keep)


class MinP(Stage):
    """Keep the tokens at least ``min_p`` times as likely as the best one (at least ``min_keep``)."""

    name = "min_p"

    def __init__(self, params: SamplingParams) -> None:
        self.params = params

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        return c.keep_min_p(self.params.min_p, self.params.min_keep)


class Typical(Stage):
    """Locally typical sampling: the tokens whose surprise is nearest the entropy, up to mass ``typical_p``."""

    name = "typical"

    def __init__(self, params: SamplingParams) -> None:
        self.params = params

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        return c.keep_typical(self.params.typical_p, self.params.min_keep)


class TopNSigma(Stage):
    """Keep the logits within ``top_n_sigma`` standard deviations of the best one."""

    name = "top_n_sigma"

    def __init__(self, params: SamplingParams) -> None:
        self.params = params

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        if c.size() <= 1:
            return c
        return c.keep_sigma(self.params.top_n_sigma)
