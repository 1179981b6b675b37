"""Samplers that change the logits of a few ids: logit bias (and banned EOG tokens) and repetition penalties."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .candidates import Candidates
from .floats import INF
from .params import SamplingParams
from .stage import Stage
from .vocab import VocabInfo


def merged_bias(params: SamplingParams, vocab: VocabInfo) -> dict[int, float]:
    """The request's logit bias within the vocabulary, with -inf on the EOG tokens under ``ignore_eos``."""
    n_vocab = vocab.n_vocab
    bias = {tok: b for tok, b in params.logit_bias.items() if 0 <= tok < n_vocab}
    if params.ignore_eos:
        for tok in vocab.eog_ids:
            if 0 <= tok < n_vocab:
                bias[tok] = bias.get(tok, 0.0) - INF
    return bias


def penalties_enabled(p: SamplingParams) -> bool:
    """Whether the repetition penalties' settings can change anything."""
    neutral = p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0
    return p.repeat_last_n != 0 and not neutral


class LogitBias(Stage):
    """llama.cpp's ``logit_bias``: add each token's bias to its logit."""

    name = "logit_bias"

    def __init__(self, bias: dict[int, float]) -> None:
        self.bias = bias

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        c.modify(self.bias, lambda logit, bias: logit + bias)
        return c


class Penalties(Stage):
    """llama.cpp's ``penalties``: repeat penalty (scale), then frequency and presence penalties (subtract)
    on the tokens of the last ``repeat_last_n``."""

    name = "penalties"

    def __init__(self, params: SamplingParams, n_vocab: int) -> None:
        self.params = params
        self.n_vocab = n_vocab

    def __call__(self, c: Candidates, prev: Sequence[int]) -> Candidates:
        p = self.params
        n = p.repeat_last_n
        window = prev if n < 0 else prev[-n:]
        counts = Counter(tok for tok in window if 0 <= tok < self.n_vocab)
        if not counts:
            return c
        rep, freq, present = p.repeat_penalty, p.frequency_penalty, p.presence_penalty

        def penalize(logit: float, count: int) -> float:
            logit = logit * rep if logit <= 0.0 else logit / rep
            return logit - (count * freq + present)

        c.modify(counts, penalize)
        return c
