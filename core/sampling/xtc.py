"""llama.cpp's XTC ("exclude top choices") sampler, with its own random number generator."""

from __future__ import annotations

from collections.abc import Sequence

from .candidates import Candidates
from .params import SamplingParams
from .rng import mt19937, uniform_float
from .stage import Stage


class Xtc(Stage):
    """With probability ``xtc_probability``, drop every token at least ``xtc_threshold`` likely except the
    least likely of them (unless fewer than ``min_keep`` would be left)."""

    name = "xtc"

    def __init__(self, params: SamplingParams, seed: int) -> None:
        self.params = params
        self.seed = seed
        self.rng = mt19937(seed)

    def reset(self) -> None:
        self.rng = mt19937(self.seed)

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        p = self.params
        if c.size() < 2 or uniform_float(self.rng) > p.xtc_probability:
            return c
        c = c.sort_if_small()
        last = max(c.count_likely(p.xtc_threshold) - 1, 0)
        if c.size() - last >= p.min_keep and last > 0:
            c = c.drop_top(last)
        return c
