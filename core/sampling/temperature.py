"""Temperature: plain (the Mirostat chain), extended with dynamic temperature, and greedy at 0."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .candidates import Candidates
from .params import SamplingParams
from .stage import Stage


def apply_temp(c: Candidates, temp: float) -> Candidates:
    """Divide the logits by ``temp``; a temperature <= 0 keeps only the most likely token (greedy)."""
    if temp <= 0.0:
        return c.keep_argmax()
    c.divide(temp)
    return c


class Temp(Stage):
    """Plain temperature (the Mirostat chain)."""

    name = "temp"

    def __init__(self, params: SamplingParams) -> None:
        self.params = params

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        return apply_temp(c, self.params.temperature)


class TempExt(Stage):
    """Temperature, dynamic (entropy-scaled between temperature -/+ ``dynatemp_range``) when the range is > 0."""

    name = "temp_ext"

    def __init__(self, params: SamplingParams) -> None:
        self.params = params

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        p = self.params
        if p.dynatemp_range <= 0.0:
            return apply_temp(c, p.temperature)
        size = c.size()
        if size <= 1:
            return c
        lo, hi = max(0.0, p.temperature - p.dynatemp_range), p.temperature + p.dynatemp_range
        c = c.sort_if_small()
        entropy = c.entropy()
        try:
            dyn = lo + (hi - lo) * (entropy / math.log(size)) ** p.dynatemp_exponent
        except (OverflowError, ZeroDivisionError):
            dyn = hi
        return apply_temp(c, dyn)
