"""The interface of one sampler of the chain."""

from __future__ import annotations

from collections.abc import Sequence

from .candidates import Candidates


class Stage:
    """One sampler: ``stage(candidates, prev_tokens)`` returns the candidate set to go on with.

    ``name`` is what :attr:`Sampler.stage_names` reports.  Settings are read from the request's
    :class:`SamplingParams` at every call.
    """

    name = ""

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        """Apply the sampler to ``c``; ``prev``: the token history (prompt included)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Back to the request's start (a sampler with its own random numbers reseeds)."""
